// Loads block.bpf.o with the target tgid and helper pid, attaches, and prints the counters
// when stdin closes or on SIGTERM/SIGINT.
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }
static int print_all(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)level;
	return vfprintf(stderr, fmt, ap);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s OBJ TARGET_TGID HELPER_PID\n", argv[0]);
		return 2;
	}
	libbpf_set_print(print_all);
	struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
	if (!obj) { perror("open"); return 1; }
	struct bpf_map *rodata = bpf_object__find_map_by_name(obj, ".rodata");
	struct { __u32 tgid; __s32 helper; } ro = { atoi(argv[2]), atoi(argv[3]) };
	if (!rodata || bpf_map__set_initial_value(rodata, &ro, sizeof ro)) {
		fprintf(stderr, "rodata\n");
		return 1;
	}
	int err = bpf_object__load(obj);
	if (err) { fprintf(stderr, "LOAD FAILED %d\n", err); return 1; }
	struct bpf_program *prog;
	bpf_object__for_each_program(prog, obj) {
		if (!bpf_program__attach(prog)) {
			fprintf(stderr, "ATTACH FAILED %s\n", bpf_program__name(prog));
			return 1;
		}
	}
	printf("ATTACHED\n");
	fflush(stdout);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	while (!stop)
		pause();
	struct bpf_map *bss = bpf_object__find_map_by_name(obj, ".bss");
	__u64 c[8];
	int key = 0;
	if (bpf_map_lookup_elem(bpf_map__fd(bss), &key, c) == 0)
		printf("COUNTERS hits=%llu xattr_ok=%llu xattr_err=%llu no_task=%llu no_file=%llu last_errno=%llu\n",
		       c[0], c[1], c[2], c[3], c[4], c[5]);
	fflush(stdout);
	return 0;
}
