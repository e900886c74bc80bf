//! The fq qdisc that delay and rate need: it holds each packet until its earliest departure
//! time (`skb->tstamp`), which the egress program sets.
//!
//! chaos installs fq with iproute2's `tc` (no maintained netlink crate speaks fq's options) as
//! the root qdisc of each egress device, and only in place of the kernel's default root qdisc
//! (handle `0:`), because that one it can restore exactly: deleting the root qdisc makes the
//! kernel attach its default again. A device whose root qdisc someone configured is left
//! alone: if it is fq already it does the job, anything else is refused.
use std::{io, process::Command, time::Duration};

use serde::Deserialize;

use crate::Error;

/// The root qdiscs chaos replaced with fq; dropping this restores them.
#[derive(Debug, Default)]
pub struct FqQdiscs {
    replaced: Vec<String>,
}

/// One entry of `tc -j qdisc show`.
#[derive(Debug, Deserialize)]
struct QdiscInfo {
    kind: String,
    handle: String,
    #[serde(default)]
    root: bool,
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
            if root.handle != "0:" {
                if root.kind == "fq" {
                    eprintln!(
                        "chaos: {dev} already has an fq root qdisc ({}); using it as it is \
                         (its horizon must exceed the delay)",
                        root.handle
                    );
                    continue;
                }
                return Err(Error::Unsupported {
                    fault: format!("delaying packets on {dev}"),
                    why: format!(
                        "its root qdisc is a configured `{} {}`, which chaos will not replace \
                         (it could not put it back exactly); delays need fq there: remove it \
                         (`tc qdisc del dev {dev} root`) or name other devices with --device",
                        root.kind, root.handle
                    ),
                });
            }
            tc(&[
                "qdisc",
                "replace",
                "dev",
                dev,
                "root",
                "fq",
                "horizon",
                &format!("{horizon_secs}s"),
                "limit",
                "100000",
                "flow_limit",
                "10000",
            ])
            .map_err(|why| Error::Unsupported {
                fault: format!("delaying packets on {dev}"),
                why: format!(
                    "{why}; delay and rate need the fq qdisc (CONFIG_NET_SCH_FQ, module \
                     sch_fq); `chaos doctor` tells whether this kernel has it"
                ),
            })?;
            done.replaced.push(dev.clone());
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
        for dev in self.replaced.drain(..).rev() {
            // Deleting the root qdisc makes the kernel attach its default again.
            if let Err(why) = tc(&["qdisc", "del", "dev", &dev, "root"]) {
                eprintln!(
                    "chaos: could not restore the default root qdisc of {dev}: {why}; run \
                     `tc qdisc del dev {dev} root`"
                );
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

fn root_qdisc(dev: &str) -> Result<QdiscInfo, Error> {
    qdiscs(dev)?
        .into_iter()
        .find(|q| q.root)
        .ok_or_else(|| Error::Invalid {
            field: "--device",
            value: dev.to_owned(),
            expected: "a network device of this namespace with a root qdisc (see `ip link`)".into(),
        })
}

fn qdiscs(dev: &str) -> Result<Vec<QdiscInfo>, Error> {
    let out = tc(&["-j", "qdisc", "show", "dev", dev]).map_err(|why| Error::Unsupported {
        fault: format!("packet faults on {dev}"),
        why,
    })?;
    serde_json::from_str(&out).map_err(|err| Error::Unsupported {
        fault: format!("packet faults on {dev}"),
        why: format!("cannot read `tc -j qdisc show dev {dev}`: {err}: {out}"),
    })
}

/// Runs `tc ARGS`, returning its stdout, or why it failed.
pub(super) fn tc(args: &[&str]) -> Result<String, String> {
    let shown = format!("`tc {}`", args.join(" "));
    let output = Command::new("tc").args(args).output().map_err(|err| {
        if err.kind() == io::ErrorKind::NotFound {
            format!("cannot run {shown}: `tc` (iproute2) is not installed")
        } else {
            format!("cannot run {shown}: {err}")
        }
    })?;
    if !output.status.success() {
        return Err(format!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
