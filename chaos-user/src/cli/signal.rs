//! `chaos inject signal`: signal a target at chosen calls of any syscall.
use super::{
    args::{FilterArgs, RunArgs, ScheduleArgs},
    target::TargetArgs,
};
use crate::spec::{FaultSpec, NameOrNumber, Names, SignalSpec};

/// Options of `chaos inject signal`.
#[derive(Debug, clap::Args)]
// The schedule options are shared with `inject syscall`; here they say what this kind
// does to a chosen call.
#[command(mut_arg("probability", |a| a.help("Signal each eligible call with this probability, in (0, 1]")))]
#[command(mut_arg("every", |a| a.help("Signal the Nth eligible call and every Nth after it (with --after A: calls A+N, A+2N, ...); 1 = each")))]
#[command(mut_arg("when", |a| a.help("strace's when=: which matching calls to signal, counted from 1: FIRST (that one), FIRST..LAST, FIRST+ (FIRST and after), FIRST+STEP (FIRST, FIRST+STEP, ...), FIRST..LAST+STEP")))]
#[command(mut_arg("max_hits", |a| a.help("Stop signalling calls after N")))]
#[command(
    after_help = "The signal is raised at the syscall's entry, before the call runs. A \
    fatal signal ends the process when the call returns to user space, or interrupts the call \
    if it waits; a call that completes without waiting (fsync on most filesystems) still takes \
    effect. Only --comm filters calls here.\n\n\
    Examples:\n  \
    chaos inject signal --syscall fsync --signal SIGKILL --after 99 -- ./db\n  \
    chaos inject signal --syscall write --signal SIGSEGV --thread --comm worker --pid 1234"
)]
pub struct SignalArgs {
    /// Syscalls whose entry is watched: any Linux x86_64 syscall by name as in `man 2`, or
    /// classes %file, %net, %read, %write (comma separated).
    #[arg(long, required = true, value_name = "NAME[,NAME...]")]
    pub syscall: String,
    /// The signal: a name (SIGKILL, KILL, SIGABRT, ...) or a number in 1..=64.
    #[arg(long, default_value = "SIGKILL")]
    pub signal: String,
    /// Signal only the calling thread (bpf_send_signal_thread), not the whole process.
    #[arg(long)]
    pub thread: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub target: TargetArgs,
}

impl SignalArgs {
    /// The spec these options describe (target set by the caller).
    pub fn spec(&self) -> FaultSpec {
        FaultSpec::Signal(SignalSpec {
            syscalls: Names::split(&self.syscall),
            signal: Some(NameOrNumber(self.signal.clone())),
            thread: self.thread,
            filter: self.filter.spec(),
            schedule: self.schedule.spec(),
            target: self.target.spec(),
            duration: self.run.duration(),
            dry_run: self.run.dry_run,
            i_know_what_i_am_doing: self.target.i_know_what_i_am_doing,
        })
    }
}
