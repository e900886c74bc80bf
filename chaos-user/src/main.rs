use std::process::ExitCode;

fn main() -> ExitCode {
    chaos::cli::main()
}
