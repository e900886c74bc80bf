//! Socket syscalls through cgroup socket hooks. These run only for sockets of tasks in the
//! cgroups they are attached to, and on kernels without BPF LSM too.
use aya_ebpf::{helpers::bpf_set_retval, macros::cgroup_sock_addr, programs::SockAddrContext};
use chaos_common::{ANY_SYSCALL, Hook};

use crate::rule;

/// cgroup sock_addr verdicts: 1 lets the call go on, 0 fails it with the retval set.
const ALLOW: i32 = 1;
const DENY: i32 = 0;

#[inline(always)]
fn connect() -> i32 {
    // connect4/6 only run inside connect(2) (and its TCP Fast Open form), so the hook itself
    // names the syscall.
    match rule::apply(Hook::Connect, ANY_SYSCALL) {
        Some(errno) => {
            // SAFETY: a plain helper call; the kernel takes -errno as the syscall's result.
            unsafe { bpf_set_retval(-(errno as i32)) };
            DENY
        }
        None => ALLOW,
    }
}

#[cgroup_sock_addr(connect4)]
pub fn chaos_connect4(_ctx: SockAddrContext) -> i32 {
    connect()
}

#[cgroup_sock_addr(connect6)]
pub fn chaos_connect6(_ctx: SockAddrContext) -> i32 {
    connect()
}
