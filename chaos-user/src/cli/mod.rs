//! The `chaos` command line: one module per subcommand.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::kernel_log::{self, KernelLogLevel};

pub mod args;
pub mod daemon;
pub mod dns;
pub mod doctor;
pub mod events;
pub mod inject;
pub mod latency;
pub mod net;
pub mod quickstart;
pub mod report;
pub mod run;
pub mod signal;
pub mod status;
pub mod stop;
pub mod target;
pub mod tcp_reset;
pub mod validate;

/// Fault injection for the processes of one cgroup (a container, a service, one command), by
/// eBPF: fail their syscalls with a chosen errno and count every hit.
#[derive(Debug, Parser)]
#[command(name = "chaos", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// The kernel programs' own log lines on stderr (`inject`, `run`, `daemon`): `debug`
    /// prints a line for each call or packet a rule acts on. Off costs the programs nothing.
    #[arg(long, global = true, value_name = "LEVEL", value_enum, default_value_t = KernelLogLevel::Off)]
    pub log_kernel: KernelLogLevel,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inject a fault into a target until it ends, the duration passes or Ctrl-C.
    #[command(subcommand)]
    Inject(Box<inject::InjectCommand>),
    /// Probe this kernel and say which fault kinds work here, how, and if not, why.
    Doctor(doctor::DoctorArgs),
    /// Run a built-in client/server pair, fail some of its connects, show what happens.
    Quickstart(quickstart::QuickstartArgs),
    /// Run an experiment (Chaos Toolkit format): steady state, faults, rollbacks, journal.
    Run(run::RunArgs),
    /// Turn an experiment's journal into one HTML page: timeline, fault rates, probes.
    Report(report::ReportArgs),
    /// Check an experiment file without running anything.
    Validate(validate::ValidateArgs),
    /// Print the JSON Schema of a fault spec (what `POST /faults` and an experiment's
    /// `chaos` provider take; committed as docs/fault-spec.schema.json).
    Schema,
    /// Run the daemon: own every fault's kernel programs, serve the API on a Unix socket.
    Daemon(daemon::DaemonArgs),
    /// Show a running daemon's faults and their live counters.
    Status(status::StatusArgs),
    /// Remove a fault (or all) from a running daemon.
    Stop(stop::StopArgs),
    /// Follow a daemon fault's events: each call or packet it acts on, until it ends.
    Events(events::EventsArgs),
    #[command(hide = true, name = "quickstart-client")]
    QuickstartClient(quickstart::ClientArgs),
}

impl Command {
    /// Commands that hold nothing to undo (no programs, qdiscs or children), so a reader that
    /// goes away (`chaos schema | head`) may end them as it ends `cat`.
    /// Commands that load kernel programs and keep them running, which `--log-kernel` is for.
    fn runs_programs(&self) -> bool {
        matches!(
            self,
            Command::Inject(_) | Command::Run(_) | Command::Daemon(_)
        )
    }

    fn only_prints(&self) -> bool {
        matches!(
            self,
            Command::Schema
                | Command::Doctor(_)
                | Command::Report(_)
                | Command::Validate(_)
                | Command::Status(_)
        )
    }
}

/// Rust starts with SIGPIPE ignored, so `println!` into a closed pipe panics. Commands that
/// only print get the default action back; `inject`, `run` and the daemon keep it ignored,
/// since they must live to detach what they attached.
fn die_quietly_on_closed_pipe() {
    // SAFETY: called before any thread is started; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Parses the command line, runs it and turns errors into a message and exit status 2.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.command.only_prints() {
        die_quietly_on_closed_pipe();
    }
    if cli.log_kernel != KernelLogLevel::Off && !cli.command.runs_programs() {
        eprintln!("chaos: error: --log-kernel is for `inject`, `run` and `daemon` only");
        return ExitCode::from(2);
    }
    kernel_log::set_level(cli.log_kernel);
    let result = match cli.command {
        Command::Inject(cmd) => inject::run(*cmd),
        Command::Doctor(args) => doctor::run(args),
        Command::Quickstart(args) => quickstart::run(args),
        Command::QuickstartClient(args) => quickstart::client(args),
        Command::Run(args) => run::run(args),
        Command::Report(args) => report::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Schema => {
            print!("{}", crate::spec::schema_text());
            Ok(ExitCode::SUCCESS)
        }
        Command::Daemon(args) => daemon::run(args),
        Command::Status(args) => status::run(args),
        Command::Stop(args) => stop::run(args),
        Command::Events(args) => events::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("chaos: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
