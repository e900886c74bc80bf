//! Types shared by chaos's kernel programs and its userspace.
//!
//! Everything here is `#[repr(C)]` and plain old data: the user side writes these values into
//! BPF maps and the kernel side reads them. Decision logic that both sides need (the schedule,
//! the filters) lives here too so that it can be unit-tested on the host.
#![no_std]

pub mod block;
pub mod config;
pub mod dns;
pub mod event;
pub mod filter;
pub mod packet;
pub mod rule;
pub mod schedule;

pub use config::KernelConfig;
pub use event::Event;
pub use filter::Filter;
pub use rule::{
    ANY_SYSCALL, Action, HitCounter, Hook, HookLevels, MAX_RULES, MAX_RULES_PER_TARGET,
    MAX_SPIN_NS, MAX_TARGET_LEVELS, RULE_ACTIVE, RULE_DRY_RUN, RULE_EVENTS, Rule,
    SYS_ENTER_FILTER_BITS, SYS_ENTER_FILTER_WORDS, TargetKey, TargetRules,
};
pub use schedule::Schedule;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are repr(C) with explicit padding and no pointers.
    unsafe impl aya::Pod for super::Rule {}
    unsafe impl aya::Pod for super::HitCounter {}
    unsafe impl aya::Pod for super::KernelConfig {}
    unsafe impl aya::Pod for super::TargetKey {}
    unsafe impl aya::Pod for super::TargetRules {}
    unsafe impl aya::Pod for super::HookLevels {}
    unsafe impl aya::Pod for super::dns::DnsConfig {}
    unsafe impl aya::Pod for super::dns::DnsServer {}
    unsafe impl aya::Pod for super::Event {}
}
