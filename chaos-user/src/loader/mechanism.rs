//! Which of two routes the programs of the kernel's security hooks take, and why.
//!
//! BPF LSM programs run only where `bpf` is among the kernel's *active* LSMs (the `lsm=` boot
//! parameter or CONFIG_LSM). Elsewhere (Ubuntu, Flatcar, Azure Linux by default) they load,
//! attach and never run. fmod_ret programs on the `security_*` functions behind the hooks run
//! whatever the active LSMs are. chaos takes BPF LSM where it is active and fmod_ret
//! otherwise, and refuses a forced choice that could not fire.
use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::Error;

/// How chaos reaches the kernel's security hooks (file, filesystem, process and most socket
/// syscalls).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookMechanism {
    /// BPF LSM programs on the hooks: need `bpf` among the active LSMs.
    Lsm,
    /// fmod_ret (BPF_MODIFY_RETURN) programs on the `security_*` functions: need BTF and BPF
    /// trampolines only.
    FmodRet,
}

impl HookMechanism {
    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            HookMechanism::Lsm => "lsm",
            HookMechanism::FmodRet => "fmod-ret",
        }
    }
}

impl fmt::Display for HookMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HookMechanism {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "lsm" => Ok(HookMechanism::Lsm),
            "fmod-ret" | "fmod_ret" => Ok(HookMechanism::FmodRet),
            _ => Err(Error::Invalid {
                field: "mechanism",
                value: s.to_owned(),
                expected: "lsm (BPF LSM programs) or fmod-ret (fmod_ret programs on the \
                           security_* functions)"
                    .to_owned(),
            }),
        }
    }
}

/// The mechanism chosen for this kernel and the reason, for reports and the doctor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MechanismChoice {
    /// The mechanism the programs use.
    pub mechanism: HookMechanism,
    /// Why, e.g. "`bpf` is among the active LSMs (lockdown,capability,bpf)".
    pub why: String,
}

/// Picks the mechanism given the active LSMs (`Err` with the reason when they cannot be
/// read) and what the user forced, if anything. Pure, so that every case is tested.
pub fn choose_for(
    active: Result<&[String], &str>,
    forced: Option<HookMechanism>,
) -> Result<MechanismChoice, Error> {
    let bpf_active = active.is_ok_and(|list| list.iter().any(|l| l == "bpf"));
    let list = match active {
        Ok(list) => format!("the active LSMs are {}", list.join(",")),
        Err(why) => format!("the active LSMs cannot be read ({why})"),
    };
    match (forced, bpf_active) {
        (Some(HookMechanism::Lsm), false) => Err(Error::Unsupported {
            fault: "--mechanism lsm".to_owned(),
            why: format!(
                "BPF LSM is not active on this kernel: {list}, without `bpf`, so LSM programs \
                 would load and never run; use --mechanism fmod-ret (the default here) or boot \
                 with `bpf` added to lsm="
            ),
        }),
        (Some(mechanism), _) => Ok(MechanismChoice {
            mechanism,
            why: format!("forced with --mechanism {mechanism} ({list})"),
        }),
        (None, true) => Ok(MechanismChoice {
            mechanism: HookMechanism::Lsm,
            why: format!("`bpf` is an active LSM ({list})"),
        }),
        (None, false) => Ok(MechanismChoice {
            mechanism: HookMechanism::FmodRet,
            why: format!(
                "BPF LSM is not active ({list}, without `bpf`): fmod_ret on the security_* \
                 functions runs whatever the active LSMs"
            ),
        }),
    }
}

/// Picks the mechanism for the running kernel (see [`choose_for`]), reading the active LSMs
/// from securityfs (through a temporary mount if it is not mounted).
pub fn choose(forced: Option<HookMechanism>) -> Result<MechanismChoice, Error> {
    match crate::doctor::active_lsm_list() {
        Ok(lsms) => choose_for(Ok(&lsms.list), forced),
        Err(failure) => choose_for(Err(&failure.message), forced),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> Vec<String> {
        s.split(',').map(str::to_owned).collect()
    }

    #[test]
    fn lsm_where_bpf_is_active_fmod_ret_elsewhere() {
        let debian = list("lockdown,capability,landlock,yama,apparmor,bpf");
        let ubuntu = list("lockdown,capability,landlock,yama,apparmor,ima,evm");
        let c = choose_for(Ok(&debian), None).unwrap();
        assert_eq!(c.mechanism, HookMechanism::Lsm);
        let c = choose_for(Ok(&ubuntu), None).unwrap();
        assert_eq!(c.mechanism, HookMechanism::FmodRet);
        assert!(c.why.contains("without `bpf`"), "{}", c.why);
        let c = choose_for(Err("EPERM"), None).unwrap();
        assert_eq!(c.mechanism, HookMechanism::FmodRet);
    }

    #[test]
    fn forcing_lsm_where_it_cannot_run_is_refused_with_the_list() {
        let ubuntu = list("lockdown,capability,yama,apparmor");
        let err = choose_for(Ok(&ubuntu), Some(HookMechanism::Lsm))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("BPF LSM is not active") && err.contains("lockdown,capability,yama"),
            "{err}"
        );
        let c = choose_for(Ok(&ubuntu), Some(HookMechanism::FmodRet)).unwrap();
        assert_eq!(c.mechanism, HookMechanism::FmodRet);
        let debian = list("lockdown,capability,bpf");
        let c = choose_for(Ok(&debian), Some(HookMechanism::FmodRet)).unwrap();
        assert_eq!(c.mechanism, HookMechanism::FmodRet);
    }

    #[test]
    fn names_round_trip() {
        for m in [HookMechanism::Lsm, HookMechanism::FmodRet] {
            assert_eq!(m.name().parse::<HookMechanism>().unwrap(), m);
        }
        let err = "kprobe".parse::<HookMechanism>().unwrap_err().to_string();
        assert!(
            err.contains("mechanism") && err.contains("fmod-ret"),
            "{err}"
        );
    }
}
