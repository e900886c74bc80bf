//! Socket syscalls. The cgroup socket hooks run only for sockets of tasks in the cgroups they
//! are attached to, on kernels without BPF LSM too; the rest needs BPF LSM.
use aya_ebpf::{
    helpers::bpf_set_retval,
    macros::{cgroup_sock, cgroup_sock_addr, cgroup_sockopt, lsm},
    programs::{LsmContext, SockAddrContext, SockContext, SockoptContext},
};
use chaos_common::{
    ANY_SYSCALL, Action, Hook,
    filter::{AF_INET, AF_INET6},
};

use crate::{
    lsm::{call, decide},
    rule::targets_current_task,
    rule::{self, Call, SockAddr},
};

/// cgroup verdicts: 1 lets the call go on, 0 fails it with the retval set.
const ALLOW: i32 = 1;
const DENY: i32 = 0;

/// The cgroup verdict for `call`; the errno goes through `bpf_set_retval`.
#[inline(always)]
fn cgroup_decide(call: Call) -> i32 {
    match rule::apply(&call) {
        Some(rule) if rule.action == Action::Errno as u32 => {
            // SAFETY: a plain helper call; the kernel takes -errno as the syscall's result.
            unsafe { bpf_set_retval(-(rule.value as i32)) };
            DENY
        }
        _ => ALLOW,
    }
}

#[inline(always)]
fn addr4(ctx: &SockAddrContext) -> SockAddr {
    // SAFETY: the kernel hands a valid bpf_sock_addr; user_ip4/user_port are readable in the
    // *4 attach types.
    let (ip, port) = unsafe { ((*ctx.sock_addr).user_ip4, (*ctx.sock_addr).user_port) };
    let mut addr = [0; 16];
    // user_ip4 holds the address bytes in network order; reading them back as they lie in
    // memory keeps that order.
    addr[..4].copy_from_slice(&ip.to_ne_bytes());
    SockAddr {
        family: AF_INET,
        port: u16::from_be(port as u16),
        addr,
    }
}

#[inline(always)]
fn addr6(ctx: &SockAddrContext) -> SockAddr {
    // SAFETY: as for addr4; user_ip6 is readable in the *6 attach types.
    let (ip, port) = unsafe { ((*ctx.sock_addr).user_ip6, (*ctx.sock_addr).user_port) };
    let mut addr = [0; 16];
    let mut i = 0;
    while i < 4 {
        addr[i * 4..i * 4 + 4].copy_from_slice(&ip[i].to_ne_bytes());
        i += 1;
    }
    SockAddr {
        family: AF_INET6,
        port: u16::from_be(port as u16),
        addr,
    }
}

// connect4/6 and bind4/6 only run inside connect(2) and bind(2) (connect4 also for TCP Fast
// Open's sendto), so the hook itself names the syscall.

#[cgroup_sock_addr(connect4)]
pub fn chaos_connect4(ctx: SockAddrContext) -> i32 {
    cgroup_decide(Call::new(Hook::Connect, ANY_SYSCALL).with_addr(addr4(&ctx)))
}

#[cgroup_sock_addr(connect6)]
pub fn chaos_connect6(ctx: SockAddrContext) -> i32 {
    cgroup_decide(Call::new(Hook::Connect, ANY_SYSCALL).with_addr(addr6(&ctx)))
}

#[cgroup_sock_addr(bind4)]
pub fn chaos_bind4(ctx: SockAddrContext) -> i32 {
    cgroup_decide(Call::new(Hook::Bind, ANY_SYSCALL).with_addr(addr4(&ctx)))
}

#[cgroup_sock_addr(bind6)]
pub fn chaos_bind6(ctx: SockAddrContext) -> i32 {
    cgroup_decide(Call::new(Hook::Bind, ANY_SYSCALL).with_addr(addr6(&ctx)))
}

/// socket(2) of inet and inet6 sockets (the kernel runs no cgroup hook for its own sockets).
#[cgroup_sock(sock_create)]
pub fn chaos_sock_create(_ctx: SockContext) -> i32 {
    cgroup_decide(Call::new(Hook::SockCreate, ANY_SYSCALL))
}

#[cgroup_sockopt(getsockopt)]
pub fn chaos_getsockopt(_ctx: SockoptContext) -> i32 {
    cgroup_decide(Call::new(Hook::Getsockopt, ANY_SYSCALL))
}

#[cgroup_sockopt(setsockopt)]
pub fn chaos_setsockopt(_ctx: SockoptContext) -> i32 {
    cgroup_decide(Call::new(Hook::Setsockopt, ANY_SYSCALL))
}

#[lsm(hook = "socket_listen")]
pub fn chaos_socket_listen(_ctx: LsmContext) -> i32 {
    if !targets_current_task(Hook::SocketListen) {
        return 0;
    }
    decide(call(Hook::SocketListen, 0))
}

#[lsm(hook = "socket_accept")]
pub fn chaos_socket_accept(_ctx: LsmContext) -> i32 {
    if !targets_current_task(Hook::SocketAccept) {
        return 0;
    }
    decide(call(Hook::SocketAccept, 0))
}

#[lsm(hook = "socket_sendmsg")]
pub fn chaos_socket_sendmsg(_ctx: LsmContext) -> i32 {
    if !targets_current_task(Hook::SocketSendmsg) {
        return 0;
    }
    decide(call(Hook::SocketSendmsg, 0))
}

#[lsm(hook = "socket_recvmsg")]
pub fn chaos_socket_recvmsg(_ctx: LsmContext) -> i32 {
    if !targets_current_task(Hook::SocketRecvmsg) {
        return 0;
    }
    decide(call(Hook::SocketRecvmsg, 0))
}

#[lsm(hook = "socket_shutdown")]
pub fn chaos_socket_shutdown(_ctx: LsmContext) -> i32 {
    if !targets_current_task(Hook::SocketShutdown) {
        return 0;
    }
    decide(call(Hook::SocketShutdown, 0))
}
