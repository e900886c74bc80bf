//! `--log-kernel`: the kernel programs' own debug lines (aya-log), printed on stderr.
//!
//! The programs write a line where a rule acts (chaos-ebpf/src/log.rs), each behind aya-log's
//! `AYA_LOG_LEVEL`, a `.rodata` global set here at load time. Its default in the object is
//! "everything", so every load of chaos's object goes through [`loader`], which sets it to the
//! level asked for (off unless `--log-kernel` says otherwise): the verifier then never walks a
//! disabled line, and logging off costs the programs nothing. When on, each loaded object gets
//! a [`KernelLogReader`] that prints its records until the object is dropped.
use std::{
    io::Write as _,
    os::fd::{AsRawFd as _, RawFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    thread::{self, JoinHandle},
};

use aya::{Ebpf, EbpfLoader};
use aya_log::EbpfLogger;

use crate::Error;

/// The ring buffer map aya-log's kernel side writes its records to.
pub(crate) const KERNEL_LOG_MAP: &str = "AYA_LOGS";

/// How verbose the kernel programs' own lines are (`--log-kernel`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
#[repr(u8)]
pub enum KernelLogLevel {
    /// No lines; the programs cost what they cost without logging.
    #[default]
    Off = 0,
    /// Errors only (the programs write none today).
    Error = 1,
    /// Warnings and errors.
    Warn = 2,
    /// Information, warnings and errors.
    Info = 3,
    /// A line for each call or packet a rule acts on.
    Debug = 4,
    /// Everything.
    Trace = 5,
}

/// The `AYA_LOG_LEVEL` values, by [`KernelLogLevel`]: [`EbpfLoader::override_global`] borrows
/// its value for the loader's lifetime.
static LEVEL_VALUES: [u8; 6] = [0, 1, 2, 3, 4, 5];

/// The level of this process's loads (set once from the command line).
static LEVEL: AtomicU8 = AtomicU8::new(KernelLogLevel::Off as u8);

/// Sets the level of the objects this process loads from now on.
pub fn set_level(level: KernelLogLevel) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether `--log-kernel` asked for any lines.
pub fn enabled() -> bool {
    LEVEL.load(Ordering::Relaxed) != KernelLogLevel::Off as u8
}

/// A loader for chaos's object with the kernel log level of this process.
pub(crate) fn loader() -> EbpfLoader<'static> {
    loader_at(if enabled() {
        LEVEL.load(Ordering::Relaxed)
    } else {
        0
    })
}

/// A loader with the kernel log off, whatever `--log-kernel` says: for objects nobody reads
/// the lines of (doctor's probes, the DNS redirect).
pub(crate) fn quiet_loader() -> EbpfLoader<'static> {
    loader_at(0)
}

fn loader_at(level: u8) -> EbpfLoader<'static> {
    let mut loader = crate::loader::object::loader_without_kernel_btf();
    let value = &LEVEL_VALUES[usize::from(level).min(LEVEL_VALUES.len() - 1)];
    // Not required to exist: an object built without log lines simply has nothing to set.
    loader.override_global(aya_log::LEVEL, value, false);
    loader
}

/// Prints one object's kernel log records on a thread of its own; dropping it stops the
/// thread after printing what is left.
pub(crate) struct KernelLogReader {
    ring: RawFd,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl KernelLogReader {
    /// Takes the log ring out of `ebpf` and starts printing its records, if `--log-kernel`
    /// asked for any (else `None`, and the ring stays in `ebpf`).
    pub(crate) fn start(ebpf: &mut Ebpf) -> Result<Option<KernelLogReader>, Error> {
        if !enabled() {
            return Ok(None);
        }
        let mut logger =
            EbpfLogger::init_with_logger(ebpf, KernelLines).map_err(|err| Error::Unsupported {
                fault: "--log-kernel".to_owned(),
                why: format!("cannot read the kernel programs' log ring: {err}"),
            })?;
        let ring = logger.as_raw_fd();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::Builder::new()
            .name("kernel-log".to_owned())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        let mut poll = libc::pollfd {
                            fd: ring,
                            events: libc::POLLIN,
                            revents: 0,
                        };
                        // SAFETY: one valid pollfd; the ring's descriptor lives in `logger`.
                        // The timeout bounds how long a drop waits for this thread.
                        unsafe { libc::poll(&mut poll, 1, 100) };
                        logger.flush();
                    }
                    logger.flush();
                }
            })
            .map_err(|err| Error::Unsupported {
                fault: "--log-kernel".to_owned(),
                why: format!("cannot start the kernel log reader: {err}"),
            })?;
        Ok(Some(KernelLogReader {
            ring,
            stop,
            thread: Some(thread),
        }))
    }

    /// The log ring's descriptor, for loads that relocate map references themselves.
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.ring
    }
}

impl Drop for KernelLogReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Where the records go: the daemon's tracing output (target `kernel`) when it has one, else
/// stderr as `kernel: LEVEL message`.
struct KernelLines;

impl log::Log for KernelLines {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let message = record.args();
        if tracing::dispatcher::has_been_set() {
            // The daemon's output shows info and above: debug and trace lines go out at info,
            // their own level in a field.
            match record.level() {
                log::Level::Error => tracing::error!(target: "kernel", "{message}"),
                log::Level::Warn => tracing::warn!(target: "kernel", "{message}"),
                level => tracing::info!(target: "kernel", level = %level, "{message}"),
            }
        } else {
            // One write, so that the line stays whole beside the target's own stderr.
            let line = format!("kernel: {:<5} {message}\n", record.level());
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}
