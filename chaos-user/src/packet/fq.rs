//! The fq qdisc that delay and rate need: it holds each packet until its earliest departure
//! time (`skb->tstamp`), which the egress program sets.
//!
//! chaos installs fq over rtnetlink ([`super::qdisc`]; no iproute2 needed) as the root qdisc
//! of each egress device, and only in place of the kernel's default root qdisc
//! (handle `0:`), because that one it can restore exactly: deleting the root qdisc makes the
//! kernel attach its default again. A device whose root qdisc someone configured is left
//! alone: if it is fq already it does the job, anything else is refused.
//!
//! Each replacement is recorded under [`super::qdisc_record::RECORD_DIR`] before it is made
//! and the record removed once the default is back, so that what a killed chaos left is put
//! back by the daemon's next start.
use std::time::Duration;

use super::{
    qdisc::{self, Qdisc},
    qdisc_record::{Change, Recorded},
};
use crate::Error;

/// fq's options (`TCA_FQ_*`, include/uapi/linux/pkt_sched.h): total and per-flow packet
/// limits, and the horizon in microseconds.
const TCA_FQ_PLIMIT: u16 = 1;
const TCA_FQ_FLOW_PLIMIT: u16 = 2;
/// Public for the doctor, which reads the kernel's default.
pub const TCA_FQ_HORIZON: u16 = 14;

/// The root qdiscs chaos replaced with fq; dropping this restores them.
#[derive(Debug, Default)]
pub struct FqQdiscs {
    replaced: Vec<String>,
    /// The record of each replacement.
    records: Vec<Recorded>,
}

impl FqQdiscs {
    /// Makes fq the root qdisc of each of `devices`, with a horizon of at least `horizon` (fq
    /// drops packets stamped further ahead than its horizon). All or nothing: if one device
    /// fails, the ones done so far are restored before the error is returned.
    pub fn install(devices: &[String], horizon: Duration) -> Result<FqQdiscs, Error> {
        let mut done = FqQdiscs::default();
        let horizon_secs = horizon.as_secs().max(1) + 1;
        for dev in devices {
            let root = root_qdisc(dev)?;
            if root.handle != 0 {
                if root.kind == "fq" {
                    eprintln!(
                        "chaos: {dev} already has an fq root qdisc ({}); using it as it is \
                         (its horizon must exceed the delay)",
                        root.shown_handle()
                    );
                    continue;
                }
                return Err(Error::Unsupported {
                    fault: format!("delaying packets on {dev}"),
                    why: format!(
                        "its root qdisc is a configured `{} {}`, which chaos will not replace \
                         (it could not put it back exactly); delays need fq there: remove it \
                         (`tc qdisc del dev {dev} root`) or name other devices with --device",
                        root.kind,
                        root.shown_handle()
                    ),
                });
            }
            let horizon_us = u32::try_from(horizon_secs * 1_000_000).unwrap_or(u32::MAX);
            let options = qdisc::u32_attributes(&[
                (TCA_FQ_PLIMIT, 100_000),
                (TCA_FQ_FLOW_PLIMIT, 10_000),
                (TCA_FQ_HORIZON, horizon_us),
            ]);
            // Recorded first, so that a kill in between leaves a record (of nothing to undo).
            let record =
                Recorded::write(dev, Change::FqRoot, &format!("tc qdisc del dev {dev} root"));
            // On error the record goes with `record`'s drop: nothing was changed.
            qdisc::replace(dev, qdisc::ROOT, "fq", options).map_err(|err| Error::Unsupported {
                fault: format!("delaying packets on {dev}"),
                why: format!(
                    "installing the fq root qdisc (horizon {horizon_secs}s) failed: {err}; \
                     delay and rate need the fq qdisc (CONFIG_NET_SCH_FQ, module sch_fq); \
                     `chaos doctor` tells whether this kernel has it"
                ),
            })?;
            done.replaced.push(dev.clone());
            done.records.push(record);
        }
        Ok(done)
    }

    /// The devices whose root qdisc chaos replaced.
    pub fn devices(&self) -> &[String] {
        &self.replaced
    }
}

impl Drop for FqQdiscs {
    fn drop(&mut self) {
        let records = std::mem::take(&mut self.records);
        for (dev, record) in self.replaced.drain(..).zip(records).rev() {
            // Deleting the root qdisc makes the kernel attach its default again.
            match qdisc::delete(&dev, qdisc::ROOT) {
                Ok(()) => drop(record),
                Err(why) => {
                    eprintln!(
                        "chaos: could not restore the default root qdisc of {dev}: {why}; run \
                         `tc qdisc del dev {dev} root`"
                    );
                    // The daemon's next start retries.
                    record.keep();
                }
            }
        }
    }
}

/// The devices of the current thread's network namespace that are up (loopback included):
/// where the target's packets can leave. Asked of the kernel (getifaddrs, by netlink), not of
/// /sys/class/net, which shows the namespace sysfs was mounted in.
pub fn devices_up() -> Result<Vec<String>, Error> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(|errno| Error::Io {
        path: "getifaddrs".into(),
        source: errno.into(),
    })?;
    let mut up: Vec<String> = addrs
        .filter(|a| a.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP))
        .map(|a| a.interface_name)
        .collect();
    up.sort();
    up.dedup();
    Ok(up)
}

/// Whether `dev` has a clsact qdisc (which tc programs attach through before 6.6).
pub(super) fn has_clsact(dev: &str) -> Result<bool, Error> {
    Ok(qdiscs(dev)?.iter().any(|q| q.kind == "clsact"))
}

fn root_qdisc(dev: &str) -> Result<Qdisc, Error> {
    qdiscs(dev)?
        .into_iter()
        .find(|q| q.parent == qdisc::ROOT)
        .ok_or_else(|| Error::Invalid {
            field: "--device",
            value: dev.to_owned(),
            expected: "a network device of this namespace with a root qdisc (see `ip link`)".into(),
        })
}

fn qdiscs(dev: &str) -> Result<Vec<Qdisc>, Error> {
    qdisc::list(dev).map_err(|err| Error::Unsupported {
        fault: format!("packet faults on {dev}"),
        why: format!("cannot list the qdiscs of {dev} over rtnetlink: {err}"),
    })
}
