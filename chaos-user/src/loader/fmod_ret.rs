//! fmod_ret programs (BPF_MODIFY_RETURN) on the kernel's `security_*` functions: the way to
//! the security hooks on kernels where BPF LSM is compiled in but not active.
//!
//! aya 0.14 has no fmod_ret program type (aya 0.16, which may have one, needs a newer rustc
//! than these machines run). The kernel programs sit in `fentry/security_<hook>` sections,
//! which aya parses but which chaos never loads through aya: aya would load them with
//! `BPF_TRACE_FENTRY`, whose return value the trampoline ignores. Instead this module takes
//! the object's instructions from aya-obj (the crate aya itself loads with), relocates their
//! map references to the maps aya already created, and loads them with `BPF_PROG_LOAD`,
//! `expected_attach_type = BPF_MODIFY_RETURN` and the function's BTF id, then attaches with
//! `BPF_RAW_TRACEPOINT_OPEN` (the tracing programs' link since 5.5). Program and link are
//! file descriptors this process owns, nothing is pinned: dropping them, or any death of the
//! process, SIGKILL included, detaches.
use std::{
    collections::HashSet,
    ffi::CString,
    os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
};

use aya::{Btf, Ebpf, maps::Map};
use aya_obj::{
    Object,
    btf::BtfKind,
    generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_insn, bpf_prog_type},
};

use crate::Error;

/// A loaded and attached fmod_ret program; dropping it detaches it.
pub(crate) struct FmodRetLink {
    // Declared first so that it is closed first: the link, then the program.
    _link: OwnedFd,
    _prog: OwnedFd,
}

/// The object's programs with their map references resolved against the maps of a loaded
/// [`Ebpf`], ready to load as fmod_ret programs.
pub(crate) struct FmodRetObject {
    object: Object,
    /// The object's own BTF, loaded: the verifier needs the programs' function info (the
    /// bpf_loop callbacks are refused with "missing btf func_info" without it).
    btf_fd: OwnedFd,
}

impl FmodRetObject {
    /// Parses `elf` (the same bytes `ebpf` was loaded from) and points its map references at
    /// `ebpf`'s maps.
    pub(crate) fn new(elf: &[u8], ebpf: &Ebpf) -> Result<FmodRetObject, Error> {
        FmodRetObject::with_maps(elf, ebpf, &[])
    }

    /// As [`FmodRetObject::new`], also pointing references to the maps `taken` (name and
    /// descriptor), which their users took out of `ebpf` (the event ring).
    pub(crate) fn with_maps(
        elf: &[u8],
        ebpf: &Ebpf,
        taken: &[(&str, RawFd)],
    ) -> Result<FmodRetObject, Error> {
        let fail = |what: String| Error::Unsupported {
            fault: "fmod_ret programs".to_owned(),
            why: what,
        };
        let mut object =
            Object::parse(elf).map_err(|err| fail(format!("cannot parse the object: {err}")))?;
        // As aya does before loading: adapt the object's BTF to what this kernel takes.
        let features = aya::features()
            .btf()
            .ok_or_else(|| fail("the kernel takes no BTF for programs".to_owned()))?;
        let raw_btf = object
            .fixup_and_sanitize_btf(features)
            .map_err(|err| fail(format!("cannot prepare the object's BTF: {err}")))?
            .ok_or_else(|| fail("the object has no BTF".to_owned()))?
            .to_bytes();
        // SAFETY: zeroed bpf_attr is valid: every field is an integer.
        let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
        // SAFETY: fills the BPF_BTF_LOAD member; `raw_btf` lives until the syscall returns.
        unsafe {
            let u = &mut attr.__bindgen_anon_7;
            u.btf = raw_btf.as_ptr() as u64;
            u.btf_size = raw_btf.len() as u32;
        }
        let btf_fd = sys_bpf(bpf_cmd::BPF_BTF_LOAD, &mut attr)
            .map_err(|err| fail(format!("the kernel refused the object's BTF: {err}")))?;
        let mut fds: Vec<(String, RawFd, aya_obj::Map)> = Vec::new();
        for (name, map) in ebpf.maps() {
            let Some(def) = object.maps.get(name) else {
                continue;
            };
            fds.push((
                name.to_owned(),
                map_fd(map).ok_or_else(|| {
                    fail(format!("map {name} has a type this loader does not know"))
                })?,
                def.clone(),
            ));
        }
        for (name, fd) in taken {
            if let Some(def) = object.maps.get(*name) {
                fds.push(((*name).to_owned(), *fd, def.clone()));
            }
        }
        let text_sections: HashSet<usize> = object.functions.keys().map(|(s, _)| *s).collect();
        object
            .relocate_maps(
                fds.iter().map(|(n, fd, def)| (n.as_str(), *fd, def)),
                &text_sections,
            )
            .map_err(|err| fail(format!("cannot relocate map references: {err}")))?;
        object
            .relocate_calls(&text_sections)
            .map_err(|err| fail(format!("cannot link functions: {err}")))?;
        Ok(FmodRetObject { object, btf_fd })
    }

    /// Loads program `name` as fmod_ret on the kernel function `function` and attaches it.
    pub(crate) fn attach(
        &self,
        name: &'static str,
        function: &str,
        btf: &Btf,
    ) -> Result<FmodRetLink, Error> {
        let prog = self.load(name, function, btf)?;
        // SAFETY: zeroed bpf_attr is valid; only the raw_tracepoint member is set.
        let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
        // No tracepoint name: the program's own attach target (its BTF id) is used.
        attr.raw_tracepoint.name = 0;
        attr.raw_tracepoint.prog_fd = prog.as_fd().as_raw_fd() as u32;
        let link = sys_bpf(bpf_cmd::BPF_RAW_TRACEPOINT_OPEN, &mut attr).map_err(|err| {
            Error::Unsupported {
                fault: format!("fmod_ret on {function}"),
                why: format!("the kernel refused to attach it: {err}"),
            }
        })?;
        Ok(FmodRetLink {
            _link: link,
            _prog: prog,
        })
    }

    /// Loads program `name` as fmod_ret on the kernel function `function` (the verifier
    /// checks it and its target here), without attaching it.
    pub(crate) fn load(
        &self,
        name: &'static str,
        function: &str,
        btf: &Btf,
    ) -> Result<OwnedFd, Error> {
        let refuse = |why: String| Error::Unsupported {
            fault: format!("fmod_ret on {function}"),
            why,
        };
        let program = self
            .object
            .programs
            .get(name)
            .ok_or_else(|| refuse(format!("the object has no program {name}")))?;
        let function_obj = &self.object.functions[&program.function_key()];
        let code = Code {
            insns: &function_obj.instructions,
            btf_fd: self.btf_fd.as_raw_fd(),
            func_info: function_obj.func_info.func_info_bytes(),
            func_info_cnt: function_obj.func_info.len(),
            func_info_rec_size: function_obj.func_info_rec_size,
            line_info: function_obj.line_info.line_info_bytes(),
            line_info_cnt: function_obj.line_info.len(),
            line_info_rec_size: function_obj.line_info_rec_size,
        };
        let btf_id = btf
            .id_by_type_name_kind(function, BtfKind::Func)
            .map_err(|err| {
                refuse(format!(
                    "the kernel's BTF has no function {function} ({err}): it is inlined or \
                     missing in this build"
                ))
            })?;
        load_raw(name, &code, &program.license, btf_id, &mut []).or_else(|first| {
            // Again with the verifier's log, only to say why.
            let mut log = vec![0u8; 1 << 20];
            match load_raw(name, &code, &program.license, btf_id, &mut log) {
                Ok(prog) => Ok(prog),
                Err(_) => Err(refuse(format!(
                    "the kernel refused the fmod_ret program ({first}); this needs BTF and BPF \
                     trampolines (5.7+, x86_64 or arm64){}",
                    log_tail(&log)
                ))),
            }
        })
    }
}

/// The file descriptor of one of aya's maps (the kinds chaos's object holds).
fn map_fd(map: &Map) -> Option<RawFd> {
    let data = match map {
        Map::Array(d)
        | Map::HashMap(d)
        | Map::LruHashMap(d)
        | Map::PerCpuArray(d)
        | Map::PerCpuHashMap(d)
        | Map::RingBuf(d) => d,
        _ => return None,
    };
    Some(data.fd().as_fd().as_raw_fd())
}

/// A program's instructions with the BTF information the verifier reads beside them.
struct Code<'a> {
    insns: &'a [bpf_insn],
    btf_fd: RawFd,
    func_info: Vec<u8>,
    func_info_cnt: usize,
    func_info_rec_size: usize,
    line_info: Vec<u8>,
    line_info_cnt: usize,
    line_info_rec_size: usize,
}

fn load_raw(
    name: &str,
    code: &Code<'_>,
    license: &CString,
    btf_id: u32,
    log: &mut [u8],
) -> std::io::Result<OwnedFd> {
    // SAFETY: zeroed bpf_attr is valid: every field is an integer.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: fills the BPF_PROG_LOAD member; the pointers (instructions, license, log) live
    // until the syscall returns.
    unsafe {
        let u = &mut attr.__bindgen_anon_3;
        u.prog_type = bpf_prog_type::BPF_PROG_TYPE_TRACING as u32;
        u.expected_attach_type = bpf_attach_type::BPF_MODIFY_RETURN as u32;
        u.attach_btf_id = btf_id;
        u.insns = code.insns.as_ptr() as u64;
        u.insn_cnt = code.insns.len() as u32;
        u.prog_btf_fd = code.btf_fd as u32;
        if code.func_info_rec_size > 0 {
            u.func_info = code.func_info.as_ptr() as u64;
            u.func_info_cnt = code.func_info_cnt as u32;
            u.func_info_rec_size = code.func_info_rec_size as u32;
        }
        if code.line_info_rec_size > 0 {
            u.line_info = code.line_info.as_ptr() as u64;
            u.line_info_cnt = code.line_info_cnt as u32;
            u.line_info_rec_size = code.line_info_rec_size as u32;
        }
        u.license = license.as_ptr() as u64;
        // The kernel keeps 15 bytes of the name; the `chaos_` prefix survives, which is what
        // finds leftovers.
        for (dst, src) in u.prog_name.iter_mut().zip(name.bytes().take(15)) {
            *dst = src as _;
        }
        if !log.is_empty() {
            u.log_level = 1;
            u.log_buf = log.as_mut_ptr() as u64;
            u.log_size = log.len() as u32;
        }
    }
    sys_bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr)
}

/// The bpf(2) commands that return a new file descriptor.
fn sys_bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> std::io::Result<OwnedFd> {
    // SAFETY: `attr` is a valid bpf_attr for `cmd`, of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            std::ptr::from_mut(attr),
            std::mem::size_of::<bpf_attr>(),
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: these commands return a new file descriptor, which nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// The last lines of a verifier log, for an error message.
fn log_tail(log: &[u8]) -> String {
    let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = &lines[lines.len().saturating_sub(4)..];
    format!("; the verifier said: {}", tail.join(" | "))
}
