//! A packet fault in progress: the fq qdiscs it installed (if any) and its attached programs.
use std::{thread, time::Duration};

use super::{FqQdiscs, NetEffect, NetFault, PacketInjector, devices_up};
use crate::{
    Error,
    report::{NetFaultReport, NetReport},
    target::CgroupTarget,
};

/// The injection in progress. Dropping it ends the fault.
pub struct NetInjection {
    fault: NetFault,
    target: CgroupTarget,
    injector: Option<PacketInjector>,
    fq: Option<FqQdiscs>,
}

impl NetInjection {
    /// Installs fq where the fault needs it and attaches the programs; all or nothing.
    pub fn start(
        fault: &NetFault,
        devices: &[String],
        target: &CgroupTarget,
    ) -> anyhow::Result<NetInjection> {
        let devices = if !(fault.effect.needs_fq() || fault.effect.on_devices()) {
            Vec::new()
        } else if devices.is_empty() {
            devices_up()?
        } else {
            devices.to_vec()
        };
        // fq first: stamped packets on a device without it would just leave undelayed.
        let fq = if fault.effect.needs_fq() {
            let qdiscs = FqQdiscs::install(&devices, horizon(fault))?;
            if !qdiscs.devices().is_empty() {
                eprintln!(
                    "chaos: fq is the root qdisc of {} until chaos ends",
                    qdiscs.devices().join(", ")
                );
            }
            Some(qdiscs)
        } else {
            None
        };
        let tc_devices: &[String] = if fault.effect.on_devices() {
            &devices
        } else {
            &[]
        };
        let injector = PacketInjector::start(
            &[(fault.rule(target), target.path.clone())],
            tc_devices,
            fault.deadline,
        )?;
        Ok(NetInjection {
            fault: fault.clone(),
            target: target.clone(),
            injector: Some(injector),
            fq,
        })
    }

    /// The fault.
    pub fn fault(&self) -> &NetFault {
        &self.fault
    }

    /// The counters so far; `None` once the fault has ended.
    pub fn report(&self) -> anyhow::Result<Option<NetReport>> {
        let Some(injector) = &self.injector else {
            return Ok(None);
        };
        let counters = injector.counters()?;
        Ok(Some(NetReport {
            faults: counters
                .iter()
                .map(|c| NetFaultReport {
                    kind: self.fault.effect.kind(),
                    fault: self.fault.describe(),
                    target: self.target.path.display().to_string(),
                    dry_run: self.fault.dry_run,
                    seen: c.seen,
                    affected: c.affected,
                    bytes: c.bytes,
                })
                .collect(),
        }))
    }

    /// Starts (or stops) the kernel writing an event for each packet affected.
    pub fn listen_events(&mut self, on: bool) -> Result<(), Error> {
        match &mut self.injector {
            Some(injector) => injector.listen_events(on),
            None => Ok(()),
        }
    }

    /// The events since the last call, with their rule's position; none once ended.
    pub fn events(&mut self) -> Vec<(usize, chaos_common::Event)> {
        match &mut self.injector {
            Some(injector) => injector.events(),
            None => Vec::new(),
        }
    }

    /// Events lost so far (0 once ended).
    pub fn events_lost(&self) -> Result<u64, Error> {
        match &self.injector {
            Some(injector) => injector.events_lost(),
            None => Ok(0),
        }
    }

    /// Detaches the programs, lets the packets fq still holds leave, then restores the
    /// qdiscs (deleting a qdisc drops what it holds).
    pub fn end(&mut self) {
        // Programs first, explicitly: nothing may stamp packets while fq drains.
        drop(self.injector.take());
        if let Some(fq) = self.fq.take() {
            thread::sleep(horizon(&self.fault).min(Duration::from_secs(10)));
            drop(fq);
        }
    }
}

impl Drop for NetInjection {
    fn drop(&mut self) {
        self.end();
    }
}

/// How far ahead the fault stamps packets at most.
fn horizon(fault: &NetFault) -> Duration {
    match fault.effect {
        NetEffect::Delay { delay, jitter } => delay + jitter,
        _ => Duration::from_millis(200),
    }
}

/// Moves the calling thread (chaos's main thread, which does all the device work and starts
/// `tc`) into a network namespace: a name under /run/netns or a path such as
/// /proc/PID/ns/net. The cgroup programs do not care: they follow the sockets.
pub fn enter_netns(netns: &str) -> Result<(), Error> {
    let path = if netns.contains('/') {
        std::path::PathBuf::from(netns)
    } else {
        std::path::Path::new("/run/netns").join(netns)
    };
    let file = std::fs::File::open(&path).map_err(|err| Error::Invalid {
        field: "--netns",
        value: netns.to_owned(),
        expected: format!(
            "a network namespace: a name under /run/netns (`ip netns list`) or a path like \
             /proc/PID/ns/net ({}: {err})",
            path.display()
        ),
    })?;
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|errno| Error::Invalid {
        field: "--netns",
        value: netns.to_owned(),
        expected: format!("a network namespace chaos may enter (setns: {errno})"),
    })
}
