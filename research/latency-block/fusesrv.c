// The FUSE server side of the block-mode prototype: one executable file, /sleep (a copy of
// busybox, so that `/mnt/chaos/sleep 1000` runs as the helper), whose GETXATTR answer is
// held for CHAOS_DELAY_MS milliseconds. Runs multi-threaded so that concurrent delayed
// calls each wait for their own delay.
#define FUSE_USE_VERSION 31
#include <fuse3/fuse.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char *content;
static size_t content_len;
static long delay_ms;
static long getxattr_calls;

static int fs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	(void)fi;
	memset(st, 0, sizeof *st);
	if (strcmp(path, "/") == 0) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return 0;
	}
	if (strcmp(path, "/sleep") == 0) {
		st->st_mode = S_IFREG | 0755;
		st->st_nlink = 1;
		st->st_size = content_len;
		return 0;
	}
	return -ENOENT;
}

static int fs_open(const char *path, struct fuse_file_info *fi)
{
	(void)fi;
	return strcmp(path, "/sleep") == 0 ? 0 : -ENOENT;
}

static int fs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)path; (void)fi;
	if ((size_t)off >= content_len)
		return 0;
	if (off + size > content_len)
		size = content_len - off;
	memcpy(buf, content + off, size);
	return size;
}

static int fs_getxattr(const char *path, const char *name, char *value, size_t size)
{
	(void)path;
	if (strcmp(name, "user.chaos.delay") != 0)
		return -ENODATA;
	__sync_fetch_and_add(&getxattr_calls, 1);
	struct timespec ts = { delay_ms / 1000, (delay_ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
	if (size == 0)
		return 1;
	value[0] = '1';
	return 1;
}

static const struct fuse_operations ops = {
	.getattr = fs_getattr,
	.open = fs_open,
	.read = fs_read,
	.getxattr = fs_getxattr,
};

int main(int argc, char **argv)
{
	const char *src = getenv("CHAOS_EXE_SOURCE");
	delay_ms = atol(getenv("CHAOS_DELAY_MS") ? getenv("CHAOS_DELAY_MS") : "100");
	FILE *f = fopen(src ? src : "/bin/busybox", "rb");
	if (!f) { perror("source"); return 1; }
	fseek(f, 0, SEEK_END);
	content_len = ftell(f);
	fseek(f, 0, SEEK_SET);
	content = malloc(content_len);
	if (fread(content, 1, content_len, f) != content_len) { perror("read"); return 1; }
	fclose(f);
	int rc = fuse_main(argc, argv, &ops, NULL);
	fprintf(stderr, "fusesrv: %ld getxattr calls\n", getxattr_calls);
	return rc;
}
