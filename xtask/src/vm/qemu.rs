//! Booting the kernel and initramfs under QEMU and capturing the serial console.
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// Kernel command line, before `lsm=`. `panic=-1` together with `-no-reboot` turns a panic
/// into QEMU exiting at once.
const APPEND: &str = "console=ttyS0 quiet panic=-1";

/// The default `lsm=`: enables the BPF LSM, which Debian builds but leaves off.
pub const DEFAULT_LSM: &str = "lockdown,capability,bpf";

/// What to boot.
pub struct Boot<'a> {
    pub vmlinuz: &'a Path,
    pub initrd: &'a Path,
    /// Wall-clock limit for the whole VM, after which it is killed.
    pub timeout: Duration,
    /// Put before every console line echoed to our stdout.
    pub prefix: &'a str,
    /// The `lsm=` boot parameter: the active LSMs, in order.
    pub lsm: &'a str,
}

/// What came out of one boot.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Console lines, without line endings.
    pub lines: Vec<String>,
    /// Whether the VM had to be killed at the deadline.
    pub timed_out: bool,
    /// QEMU's exit status (None when it was killed).
    pub status: Option<ExitStatus>,
    /// From start to exit or kill.
    pub elapsed: Duration,
}

/// Runs the VM to its end (or the deadline), echoing the console live.
pub fn boot(boot: &Boot<'_>) -> anyhow::Result<Outcome> {
    let mut command = Command::new("qemu-system-x86_64");
    command
        .args(["-m", "1024", "-smp", "2", "-nographic", "-no-reboot"])
        .args(acceleration())
        .arg("-kernel")
        .arg(boot.vmlinuz)
        .arg("-initrd")
        .arg(boot.initrd)
        .arg("-append")
        .arg(format!("{APPEND} lsm={}", boot.lsm))
        // stdin stays away from the terminal, which QEMU would otherwise put in raw mode.
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    println!("vm: {command:?}");
    let started = Instant::now();
    let mut child = command
        .spawn()
        .context("starting qemu-system-x86_64 (install qemu-system-x86)")?;

    // A reader thread, so the main thread can wait for lines with a deadline.
    let stdout = child.stdout.take().expect("stdout is piped");
    let (sender, receiver) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match stdout.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = plain_text(&String::from_utf8_lossy(&line));
                    if sender.send(text).is_err() {
                        break;
                    }
                }
            }
        }
    });

    let deadline = started + boot.timeout;
    let mut outcome = Outcome::default();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok(line) => {
                println!("{}{line}", boot.prefix);
                outcome.lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                outcome.timed_out = true;
                println!(
                    "{}(killing the VM: no end after {} s)",
                    boot.prefix,
                    boot.timeout.as_secs()
                );
                child.kill().context("killing qemu-system-x86_64")?;
                break;
            }
        }
    }
    let status = child.wait().context("waiting for qemu-system-x86_64")?;
    if !outcome.timed_out {
        outcome.status = Some(status);
    }
    outcome.elapsed = started.elapsed();
    // The pipe closed with QEMU's exit or kill, so the reader ends promptly.
    let _ = reader.join();
    Ok(outcome)
}

/// A console line without its line ending, carriage returns (the guest's tty turns "\n"
/// into "\r\n") and terminal escape sequences (the firmware clears the screen, which would
/// wipe the user's terminal when echoed).
fn plain_text(line: &str) -> String {
    let mut text = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                // CSI: ESC [ parameters final-byte; anything else: ESC and one character.
                if chars.next_if_eq(&'[').is_some() {
                    while chars.next().is_some_and(|c| !('@'..='~').contains(&c)) {}
                } else {
                    chars.next();
                }
            }
            '\r' | '\n' => {}
            c => text.push(c),
        }
    }
    text
}

/// `-accel kvm` where the CPU and /dev/kvm allow it; software emulation otherwise (the
/// project's machines have /dev/kvm but no vmx/svm, where KVM guests do not start).
fn acceleration() -> Vec<&'static str> {
    let cpu_can = std::fs::read_to_string("/proc/cpuinfo")
        .is_ok_and(|info| info.split_whitespace().any(|w| w == "vmx" || w == "svm"));
    let kvm_usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if cpu_can && kvm_usable {
        vec!["-accel", "kvm", "-cpu", "host"]
    } else {
        vec!["-accel", "tcg"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines_lose_escapes() {
        assert_eq!(
            plain_text("\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1)\r\n"),
            "SeaBIOS (version 1)"
        );
        assert_eq!(
            plain_text("test result: ok. 1 passed\r\n"),
            "test result: ok. 1 passed"
        );
    }
}
