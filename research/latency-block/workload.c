// Workload of the block-mode prototype.
//   workload target N: waits for /tmp/go, then thread A times N open() and N connect()
//     calls (wall and CLOCK_THREAD_CPUTIME_ID), while thread B spins on getppid() and
//     records its largest gap between iterations and its rate (alone, then beside A).
//   workload outside N: times N open() calls (a process outside the target).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6; // ms
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void report(const char *what, double *v, int n, double *cpu)
{
	qsort(v, n, sizeof *v, cmp);
	double cpu_max = 0, cpu_sum = 0;
	for (int i = 0; cpu && i < n; i++) {
		cpu_sum += cpu[i];
		if (cpu[i] > cpu_max) cpu_max = cpu[i];
	}
	printf("RESULT %s n=%d min_ms=%.3f p50_ms=%.3f max_ms=%.3f", what, n, v[0], v[n / 2], v[n - 1]);
	if (cpu)
		printf(" thread_cpu_mean_ms=%.3f thread_cpu_max_ms=%.3f", cpu_sum / n, cpu_max);
	printf("\n");
	fflush(stdout);
}

static int n_calls;
static volatile int a_done, b_phase;

static void *thread_a(void *arg)
{
	(void)arg;
	double *wall = calloc(n_calls, sizeof(double)), *cpu = calloc(n_calls, sizeof(double));
	for (int i = 0; i < n_calls; i++) {
		double c0 = now(CLOCK_THREAD_CPUTIME_ID), t0 = now(CLOCK_MONOTONIC);
		int fd = open("/etc/hosts", O_RDONLY);
		wall[i] = now(CLOCK_MONOTONIC) - t0;
		cpu[i] = now(CLOCK_THREAD_CPUTIME_ID) - c0;
		if (fd < 0) { perror("open"); exit(1); }
		close(fd);
	}
	report("A_open", wall, n_calls, cpu);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(9) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int i = 0; i < n_calls; i++) {
		int s = socket(AF_INET, SOCK_DGRAM, 0);
		double c0 = now(CLOCK_THREAD_CPUTIME_ID), t0 = now(CLOCK_MONOTONIC);
		int rc = connect(s, (struct sockaddr *)&sa, sizeof sa);
		wall[i] = now(CLOCK_MONOTONIC) - t0;
		cpu[i] = now(CLOCK_THREAD_CPUTIME_ID) - c0;
		if (rc < 0) { perror("connect"); exit(1); }
		close(s);
	}
	report("A_connect", wall, n_calls, cpu);
	a_done = 1;
	return NULL;
}

static void run_b(double until_ms, int stop_on_a, const char *what)
{
	double start = now(CLOCK_MONOTONIC), last = start, max_gap = 0;
	long iters = 0;
	for (;;) {
		getppid();
		double t = now(CLOCK_MONOTONIC);
		if (t - last > max_gap) max_gap = t - last;
		last = t;
		iters++;
		if (stop_on_a ? a_done : t - start >= until_ms)
			break;
	}
	printf("RESULT %s iters_per_ms=%.1f max_gap_ms=%.3f elapsed_ms=%.0f\n", what,
	       iters / (last - start), max_gap, last - start);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	if (argc < 3) return 2;
	n_calls = atoi(argv[2]);
	if (strcmp(argv[1], "outside") == 0) {
		double *wall = calloc(n_calls, sizeof(double));
		for (int i = 0; i < n_calls; i++) {
			double t0 = now(CLOCK_MONOTONIC);
			int fd = open("/etc/hosts", O_RDONLY);
			wall[i] = now(CLOCK_MONOTONIC) - t0;
			close(fd);
			usleep(20000);
		}
		report("outside_open", wall, n_calls, NULL);
		return 0;
	}
	printf("PID %d\n", getpid());
	fflush(stdout);
	while (access("/tmp/go", F_OK) != 0)
		usleep(10000);
	run_b(1000, 0, "B_alone");
	pthread_t a;
	pthread_create(&a, NULL, thread_a, NULL);
	run_b(0, 1, "B_beside_A");
	pthread_join(a, NULL);
	return 0;
}
