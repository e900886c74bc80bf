//! The library's error type.
use std::path::PathBuf;

/// Errors of the chaos library. Each says what was wrong and, where there is one, what would
/// be valid.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A user-supplied value is invalid.
    #[error("invalid {field} `{value}`: {expected}")]
    Invalid {
        /// The option or field that carried it.
        field: &'static str,
        /// The value as given.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
    /// The kernel's BTF lacks something the programs need.
    #[error("kernel BTF {path}: {what}")]
    Btf {
        /// The BTF file read.
        path: PathBuf,
        /// What was missing.
        what: String,
    },
    /// The target cannot be resolved.
    #[error("target {target}: {why}")]
    Target {
        /// The target as given.
        target: String,
        /// Why it cannot be used.
        why: String,
    },
    /// A blast-radius guard refuses the target.
    #[error(
        "refusing target {target} (cgroup {}): {why}; add --i-know-what-i-am-doing if it \
         really is the target",
        cgroup.display()
    )]
    Refused {
        /// The target as given.
        target: String,
        /// The cgroup it resolved to.
        cgroup: PathBuf,
        /// Why it is refused.
        why: String,
    },
    /// This kernel cannot run what a fault needs.
    #[error("{fault}: not supported by this kernel: {why}")]
    Unsupported {
        /// The fault.
        fault: String,
        /// What is missing and what would fix it.
        why: String,
    },
    /// Loading the embedded eBPF object failed.
    #[error("loading the eBPF object")]
    Ebpf(#[from] aya::EbpfError),
    /// Loading or attaching a program failed.
    #[error("program `{program}`: {action}")]
    Program {
        /// The program's name in the object.
        program: &'static str,
        /// What was being done.
        action: &'static str,
        /// aya's error.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// Reading or writing a map failed.
    #[error("map `{map}`")]
    Map {
        /// The map's name in the object.
        map: &'static str,
        /// aya's error.
        #[source]
        source: aya::maps::MapError,
    },
    /// An I/O error with the path it was about.
    #[error("{path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}
