//! chaos: a fault injector for Linux. Kernel programs fail syscalls and disturb packets for
//! the processes of one cgroup; this library loads them, fills their maps from fault
//! descriptions and reads back what they did.

pub mod btf;
pub mod cli;
pub mod daemon;
pub mod dns;
pub mod doctor;
pub mod engine;
pub mod error;
pub mod events;
pub mod experiment;
pub mod fault;
pub mod journal_report;
pub mod kernel_log;
pub mod live_view;
pub mod loader;
pub mod mountinfo;
mod netlink;
pub mod packet;
pub mod pause;
pub mod report;
pub mod spec;
pub mod target;
pub mod tcp_reset;

pub use error::Error;
