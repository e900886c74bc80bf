//! Developer tasks: `cargo xtask setup|test|vm-test|quickstart`.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod summary;
mod vm;

#[derive(Debug, Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Boot a Debian kernel under QEMU and run the integration tests inside it.
    VmTest(vm::VmTestArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::VmTest(args) => vm::run(&args).map(|_summary| ()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
