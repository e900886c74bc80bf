//! Do-nothing programs that `chaos doctor` loads to learn which program types this kernel
//! accepts, for fault kinds whose real programs need more set-up than a load.
use aya_ebpf::{
    macros::{btf_tracepoint, cgroup_skb, cgroup_sock, classifier},
    programs::{BtfTracePointContext, SkBuffContext, SockContext, TcContext},
};

#[cgroup_skb(egress)]
pub fn chaos_probe_cgroup_skb(_ctx: SkBuffContext) -> i32 {
    1
}

#[cgroup_sock(sock_create)]
pub fn chaos_probe_sock_create(_ctx: SockContext) -> i32 {
    1
}

#[btf_tracepoint(function = "sys_enter")]
pub fn chaos_probe_sys_enter(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[classifier]
pub fn chaos_probe_tc(_ctx: TcContext) -> i32 {
    0
}
