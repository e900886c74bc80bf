//! `chaos inject latency`: delay chosen calls of any syscall.
use super::{
    args::{FilterArgs, RunArgs, ScheduleArgs},
    target::TargetArgs,
};
use crate::{
    fault::LatencyMode,
    spec::{FaultSpec, LatencySpec, Names},
};

/// Options of `chaos inject latency`.
#[derive(Debug, clap::Args)]
// The schedule options are shared with `inject syscall`; here they say what this kind
// does to a chosen call.
#[command(mut_arg("probability", |a| a.help("Delay each eligible call with this probability, in (0, 1]")))]
#[command(mut_arg("every", |a| a.help("Delay the Nth eligible call and every Nth after it (with --after A: calls A+N, A+2N, ...); 1 = each")))]
#[command(mut_arg("when", |a| a.help("strace's when=: which matching calls to delay, counted from 1: FIRST (that one), FIRST..LAST, FIRST+ (FIRST and after), FIRST+STEP (FIRST, FIRST+STEP, ...), FIRST..LAST+STEP")))]
#[command(mut_arg("max_hits", |a| a.help("Stop delaying calls after N")))]
#[command(after_help = "Modes (see docs/signals-and-latency.md):\n  \
    spin   the calling thread busy-waits in the kernel before the call: exact to a few \
    microseconds, only that thread waits, but it burns its CPU; at most 100ms (delay + jitter).\n  \
    pause  the process gets SIGSTOP at the call's entry and SIGCONT from chaos after the delay \
    (1ms polling): any delay, no CPU, but every thread of the process stops, the call itself \
    completes first, and some waiting calls return EINTR.\n  \
    block  the calling thread sleeps in a FUSE request that chaos answers after the delay: any \
    delay, no CPU, only that thread waits; open, openat, openat2, creat, connect, sendto, \
    sendmsg, sendmmsg, recvfrom, recvmsg, recvmmsg only, no jitter, filters or schedule; \
    needs BPF LSM and Linux 6.12+ (see `chaos doctor`, docs/latency-block-mode.md).\n\
    Without --mode: spin when the delay fits under its cap, pause otherwise.\n\n\
    Examples:\n  \
    chaos inject latency --syscall fsync --delay 20ms --jitter 5ms -- ./db\n  \
    chaos inject latency --syscall read,write --delay 2s --mode pause --pid 1234")]
pub struct LatencyArgs {
    /// Syscalls to delay: any Linux x86_64 syscall by name as in `man 2`, or classes %file,
    /// %net, %read, %write (comma separated).
    #[arg(long, required = true, value_name = "NAME[,NAME...]")]
    pub syscall: String,
    /// How long each delayed call waits (e.g. 50ms, 200us, 2s).
    #[arg(long, value_name = "DURATION")]
    pub delay: String,
    /// Each delay is drawn uniformly from DELAY ± JITTER.
    #[arg(long, value_name = "DURATION")]
    pub jitter: Option<String>,
    /// How calls are held back: spin, pause or block (default: spin up to its 100ms cap, else
    /// pause).
    #[arg(long, value_enum)]
    pub mode: Option<LatencyMode>,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub target: TargetArgs,
}

impl LatencyArgs {
    /// The spec these options describe (target set by the caller).
    pub fn spec(&self) -> FaultSpec {
        FaultSpec::Latency(LatencySpec {
            syscalls: Names::split(&self.syscall),
            delay: self.delay.clone(),
            jitter: self.jitter.clone(),
            mode: self.mode.map(|m| m.name().to_owned()),
            filter: self.filter.spec(),
            schedule: self.schedule.spec(),
            target: self.target.spec(),
            duration: self.run.duration(),
            dry_run: self.run.dry_run,
            i_know_what_i_am_doing: self.target.i_know_what_i_am_doing,
        })
    }
}
