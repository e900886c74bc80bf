//! The options several `chaos inject` kinds share, flattened into their args, and how they map
//! into a [`FaultSpec`]'s fields. A leaf: the kind modules import it, it imports none of them.
//! Values are kept as typed (strings where the spec parses them), so that the spec's
//! [`FaultSpec::check`] is the one place they are validated.
use std::{path::PathBuf, time::Duration};

use crate::{
    fault::When,
    spec::{FaultSpec, ScheduleSpec, SpecError, SyscallFilterSpec},
};

/// Which calls of the syscalls match.
#[derive(Debug, Default, clap::Args)]
pub struct FilterArgs {
    /// Only files at or below this directory (file syscalls). For a container's files use
    /// /proc/PID/root/DIR.
    #[arg(long, value_name = "DIR")]
    pub path: Option<PathBuf>,
    /// Only descriptors of these kinds: file, dir, socket, pipe, char, block, symlink (file
    /// syscalls; comma separated).
    #[arg(long, value_name = "KIND[,KIND...]")]
    pub fd_kind: Option<String>,
    /// Only this port: the peer's for connect, the local one for bind.
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Only addresses in this block: the peer's for connect, the local one for bind
    /// (10.0.0.0/8, fd00::/8, 127.0.0.1).
    #[arg(long, value_name = "ADDR[/LEN]")]
    pub cidr: Option<String>,
    /// Only threads of this name (as in /proc/PID/task/TID/comm).
    #[arg(long, value_name = "NAME")]
    pub comm: Option<String>,
}

impl FilterArgs {
    /// The spec's `filter`.
    pub fn spec(&self) -> SyscallFilterSpec {
        SyscallFilterSpec {
            path: self.path.clone(),
            fd_kinds: self.fd_kind.as_deref().map(crate::spec::Names::split),
            port: self.port,
            cidr: self.cidr.clone(),
            comm: self.comm.clone(),
        }
    }
}

/// Which matching calls are affected.
#[derive(Debug, clap::Args)]
pub struct ScheduleArgs {
    /// Affect each eligible call with this probability, in (0, 1].
    #[arg(long, value_name = "P")]
    pub probability: Option<f64>,
    /// Let the first N matching calls through.
    #[arg(long, value_name = "N", conflicts_with = "when")]
    pub after: Option<u64>,
    /// Affect the Nth eligible call and every Nth after it (with --after A: calls A+N, A+2N,
    /// ...); 1 = each.
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..),
        conflicts_with = "when"
    )]
    pub every: Option<u64>,
    /// strace's when=: which matching calls are affected, counted from 1: FIRST (that one),
    /// FIRST..LAST, FIRST+ (FIRST and after), FIRST+STEP (FIRST, FIRST+STEP, ...),
    /// FIRST..LAST+STEP.
    #[arg(long, value_name = "FIRST[..LAST][+[STEP]]")]
    pub when: Option<When>,
    /// Stop after N affected calls.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_hits: Option<u64>,
    /// Number calls per process, as strace does per traced process, instead of across the
    /// whole target cgroup (--when, --after and --every then count each process's own calls;
    /// --max-hits stays a total).
    #[arg(long)]
    pub per_process: bool,
}

impl ScheduleArgs {
    /// The spec's `schedule`.
    pub fn spec(&self) -> ScheduleSpec {
        ScheduleSpec {
            probability: self.probability,
            after: self.after,
            every: self.every,
            when: self.when.map(|w| w.to_string()),
            max_hits: self.max_hits,
            per_process: self.per_process,
        }
    }
}

/// How long and how to report.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Remove the faults after this long (e.g. 30s, 5m); a command keeps running. Every
    /// fault ends then even if chaos is killed or frozen: the kernel programs stop
    /// injecting at that deadline by themselves.
    #[arg(
        long,
        value_parser = humantime::parse_duration,
        value_name = "DURATION",
        default_value = "10m"
    )]
    pub duration: Duration,
    /// Count what would be failed, fail nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON on stdout (a command's own stdout then goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Run the fault in this process even when a chaos daemon is running (which otherwise
    /// takes the fault and this command returns at once).
    #[arg(long)]
    pub standalone: bool,
    /// Print the fault as its JSON spec (what `POST /faults` and an experiment's `chaos`
    /// provider take) and exit without injecting.
    #[arg(long)]
    pub print_spec: bool,
    /// Print each call or packet the fault acts on, as the kernel reports it: one
    /// strace-like line each (`--events`), or JSON lines on stdout (`--events json`; the
    /// report then goes to stderr). Runs the fault in this process.
    #[arg(long, value_name = "text|json", num_args = 0..=1, default_missing_value = "text")]
    pub events: Option<super::events::EventFormat>,
}

impl RunArgs {
    /// The spec's `duration`.
    pub fn duration(&self) -> String {
        humantime::format_duration(self.duration).to_string()
    }
}

/// A spec error worded for the command line: the field as the option that set it.
pub fn option_error(spec: &FaultSpec, err: SpecError) -> anyhow::Error {
    let last = err.path.rsplit('.').next().unwrap_or_default();
    let last = last.split('[').next().unwrap_or_default();
    let option = match last {
        "" => return anyhow::anyhow!("{err}"),
        "syscalls" => "syscall".to_owned(),
        "fd_kinds" => "fd-kind".to_owned(),
        "devices" => "device".to_owned(),
        "target" | "cgroup" | "pid" | "container" | "unit" | "pod" => {
            return anyhow::anyhow!("invalid target: {}", err.message);
        }
        other => other.replace('_', "-"),
    };
    anyhow::anyhow!(
        "invalid --{option} ({} {}): {}",
        spec.kind(),
        err.path,
        err.message
    )
}

/// Parses a probability in (0, 1], for options outside a fault spec (quickstart).
pub(crate) fn parse_probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 1.0 => Ok(p),
        _ => Err(format!("`{s}` is not a probability in (0, 1], e.g. 0.25")),
    }
}
