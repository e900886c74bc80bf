//! Do-nothing programs that `chaos doctor` loads to learn which program types this kernel
//! accepts, for fault kinds whose real programs need more set-up than a load.
use aya_ebpf::{
    macros::{cgroup_skb, cgroup_sock, classifier},
    programs::{SkBuffContext, SockContext, TcContext},
};

#[cgroup_skb(egress)]
pub fn chaos_probe_cgroup_skb(_ctx: SkBuffContext) -> i32 {
    1
}

#[cgroup_sock(sock_create)]
pub fn chaos_probe_sock_create(_ctx: SockContext) -> i32 {
    1
}

#[classifier]
pub fn chaos_probe_tc(_ctx: TcContext) -> i32 {
    0
}
