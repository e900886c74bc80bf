// SPDX-License-Identifier: GPL-2.0
// Prototype of latency "block" mode (idea B): a sleepable LSM program makes the calling
// thread wait in a FUSE GETXATTR request that chaos's FUSE server answers after the delay.
// The trusted `struct file *` on the FUSE mount is the executable of a chaos-owned helper
// process started from that mount: bpf_task_from_pid -> bpf_get_task_exe_file.
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

// Full (if empty) definitions rather than forward declarations: libbpf 1.1 refuses a kfunc
// extern whose prototype has a FWD where the kernel's BTF has a STRUCT.
struct task_struct { char unused; };
struct file { char unused; };
struct socket { char unused; };
struct sockaddr { char unused; };

extern struct task_struct *bpf_task_from_pid(__s32 pid) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;
extern struct file *bpf_get_task_exe_file(struct task_struct *task) __ksym;
extern void bpf_put_file(struct file *file) __ksym;
extern int bpf_get_file_xattr(struct file *file, const char *name__str,
			      struct bpf_dynptr *value_p) __ksym;

const volatile __u32 target_tgid = 0;
const volatile __s32 helper_pid = 0;

// 0: hits, 1: getxattr ok, 2: getxattr error, 3: no task, 4: no file, 5: last error
__u64 counters[8];
// Where the xattr value lands: bpf_dynptr_from_mem refuses stack memory ("Unsupported reg
// type fp for bpf_dynptr_from_mem data"); the value itself is not used, so threads sharing
// it does not matter.
char value[16];

static __always_inline int block_here(void)
{
	__u64 id = bpf_get_current_pid_tgid();
	if ((__u32)(id >> 32) != target_tgid)
		return 0;
	__sync_fetch_and_add(&counters[0], 1);
	struct task_struct *task = bpf_task_from_pid(helper_pid);
	if (!task) {
		__sync_fetch_and_add(&counters[3], 1);
		return 0;
	}
	struct file *exe = bpf_get_task_exe_file(task);
	bpf_task_release(task);
	if (!exe) {
		__sync_fetch_and_add(&counters[4], 1);
		return 0;
	}
	struct bpf_dynptr ptr;
	bpf_dynptr_from_mem(value, sizeof(value), 0, &ptr);
	int err = bpf_get_file_xattr(exe, "user.chaos.delay", &ptr);
	bpf_put_file(exe);
	if (err < 0) {
		__sync_fetch_and_add(&counters[2], 1);
		counters[5] = -err;
	} else {
		__sync_fetch_and_add(&counters[1], 1);
	}
	return 0;
}

SEC("lsm.s/file_open")
int BPF_PROG(block_file_open, struct file *file)
{
	return block_here();
}

SEC("lsm.s/socket_connect")
int BPF_PROG(block_socket_connect, struct socket *sock, struct sockaddr *address, int addrlen)
{
	return block_here();
}

char _license[] SEC("license") = "GPL";
