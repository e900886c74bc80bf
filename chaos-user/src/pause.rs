//! Continuing the processes that pause-mode latency rules stopped.
//!
//! The kernel program stops a process with SIGSTOP and records when it is due back in the
//! paused-process map; a [`Resumer`] thread polls that map every millisecond and sends SIGCONT
//! to each process whose time has come. When the resumer is dropped (after the programs are
//! detached), it continues every process still recorded, so that chaos never leaves a target
//! stopped when it exits normally or on SIGINT/SIGTERM/SIGHUP. If chaos itself is SIGKILLed
//! while a process is paused, that process stays stopped until someone sends it SIGCONT.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use aya::maps::{HashMap, MapData};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use crate::fault::boot_time_ns;

/// How often the map is polled: the precision of pause delays.
pub const POLL: Duration = Duration::from_millis(1);

/// Sends SIGCONT to paused processes when their delay is over; see the module docs.
pub struct Resumer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Resumer {
    /// Starts polling `paused` (thread group id -> boot-clock ns to continue at).
    pub fn start(paused: HashMap<MapData, u32, u64>) -> Resumer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("chaos-resumer".into())
            .spawn(move || {
                let mut paused = paused;
                while !flag.load(Ordering::Relaxed) {
                    continue_due(&mut paused, false);
                    thread::sleep(POLL);
                }
                continue_due(&mut paused, true);
            })
            .expect("spawning the resumer thread");
        Resumer {
            stop,
            thread: Some(thread),
        }
    }
}

/// Continues the processes whose time has come (all of them with `all`), and forgets them.
fn continue_due(paused: &mut HashMap<MapData, u32, u64>, all: bool) {
    let Ok(now) = boot_time_ns() else {
        return;
    };
    let due: Vec<u32> = paused
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, at)| all || *at <= now)
        .map(|(tgid, _)| tgid)
        .collect();
    for tgid in due {
        // Forget first: the process may make its next delayed call as soon as it runs again,
        // and the program only pauses processes that are not recorded.
        let _ = paused.remove(&tgid);
        // The process may have exited meanwhile (ESRCH): nothing to do then.
        let _ = kill(Pid::from_raw(tgid as i32), Signal::SIGCONT);
    }
}

impl Drop for Resumer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
