//! Socket syscalls. The cgroup socket hooks run only for sockets of tasks in the cgroups they
//! are attached to, on kernels without BPF LSM too; the rest runs at the kernel's security hooks (BPF LSM or fmod_ret).
use aya_ebpf::{
    helpers::bpf_set_retval,
    macros::{cgroup_sock, cgroup_sock_addr, cgroup_sockopt},
    programs::{SockAddrContext, SockContext, SockoptContext},
};
use chaos_common::{
    ANY_SYSCALL, Action, Hook,
    filter::{AF_INET, AF_INET6},
};

use crate::{
    lsm::{Args, call, decide, security_hook},
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
    // user_ip4 holds the address bytes in network order as they lie in memory, as does
    // SockAddr::addr.
    SockAddr {
        family: AF_INET,
        port: u16::from_be(port as u16),
        addr: [ip, 0, 0, 0],
    }
}

#[inline(always)]
fn addr6(ctx: &SockAddrContext) -> SockAddr {
    // SAFETY: as for addr4; user_ip6 is readable in the *6 attach types. Word by word: the
    // verifier refuses the offset pointer a copy of the whole array would read through.
    let (ip, port) = unsafe {
        let sa = ctx.sock_addr;
        (
            [
                (*sa).user_ip6[0],
                (*sa).user_ip6[1],
                (*sa).user_ip6[2],
                (*sa).user_ip6[3],
            ],
            (*sa).user_port,
        )
    };
    SockAddr {
        family: AF_INET6,
        port: u16::from_be(port as u16),
        addr: ip,
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

// The rest run at security hooks: an LSM program and its fmod_ret twin each (see `lsm`).

security_hook!(
    chaos_socket_listen in "lsm/socket_listen",
    chaos_fmod_socket_listen in "fentry/security_socket_listen",
    Hook::SocketListen,
    |_: &Args| decide(call(Hook::SocketListen, 0))
);

security_hook!(
    chaos_socket_accept in "lsm/socket_accept",
    chaos_fmod_socket_accept in "fentry/security_socket_accept",
    Hook::SocketAccept,
    |_: &Args| decide(call(Hook::SocketAccept, 0))
);

security_hook!(
    chaos_socket_sendmsg in "lsm/socket_sendmsg",
    chaos_fmod_socket_sendmsg in "fentry/security_socket_sendmsg",
    Hook::SocketSendmsg,
    |_: &Args| decide(call(Hook::SocketSendmsg, 0))
);

security_hook!(
    chaos_socket_recvmsg in "lsm/socket_recvmsg",
    chaos_fmod_socket_recvmsg in "fentry/security_socket_recvmsg",
    Hook::SocketRecvmsg,
    |_: &Args| decide(call(Hook::SocketRecvmsg, 0))
);

security_hook!(
    chaos_socket_shutdown in "lsm/socket_shutdown",
    chaos_fmod_socket_shutdown in "fentry/security_socket_shutdown",
    Hook::SocketShutdown,
    |_: &Args| decide(call(Hook::SocketShutdown, 0))
);
