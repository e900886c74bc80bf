//! The kernel's BTF as aya parses it, for the programs that attach by BTF id (LSM, fmod_ret).
//!
//! aya finds a program's attach point by name in its own parse of all of
//! `/sys/kernel/btf/vmlinux`: 15 ms of CPU on these machines, as much as loading the whole
//! object. A fault that will need it starts the parse on a thread of its own before the object
//! is loaded, so the two overlap (the machines have at least two cores), and the parse is kept
//! for every later fault of the process.
use std::thread::{self, JoinHandle};

use aya::Btf;

use crate::{Error, btf::VMLINUX_BTF};

/// The kernel's BTF: not asked for, being parsed, or parsed.
#[derive(Default)]
pub(crate) struct KernelBtf {
    parsing: Option<JoinHandle<Result<Btf, String>>>,
    parsed: Option<Btf>,
}

impl KernelBtf {
    /// Starts parsing on a thread of its own, unless that started already.
    pub(crate) fn prefetch(&mut self) {
        if self.parsing.is_none() && self.parsed.is_none() {
            self.parsing = thread::Builder::new()
                .name("kernel-btf".to_owned())
                .spawn(parse)
                .ok();
        }
    }

    /// The parsed BTF, waiting for a parse under way or parsing now; `what` names the hook
    /// that needs it, for the error.
    pub(crate) fn get(&mut self, what: &str) -> Result<&Btf, Error> {
        if self.parsed.is_none() {
            let outcome = match self.parsing.take() {
                Some(parsing) => parsing
                    .join()
                    .unwrap_or_else(|_| Err("the parse panicked".to_owned())),
                None => parse(),
            };
            self.parsed = Some(outcome.map_err(|why| Error::Unsupported {
                fault: what.to_owned(),
                why: format!("cannot read the kernel's BTF ({VMLINUX_BTF}): {why}"),
            })?);
        }
        Ok(self.parsed.as_ref().expect("just set"))
    }
}

fn parse() -> Result<Btf, String> {
    Btf::from_sys_fs().map_err(|err| err.to_string())
}
