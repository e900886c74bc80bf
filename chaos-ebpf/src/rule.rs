//! Matching the current call against the rules and deciding whether to act.
use core::ffi::c_void;

use aya_ebpf::helpers::{
    bpf_get_current_ancestor_cgroup_id, bpf_get_current_pid_tgid, bpf_get_prandom_u32,
    bpf_ktime_get_boot_ns, bpf_probe_read_kernel,
    generated::{bpf_get_current_comm as bpf_get_current_comm_raw, bpf_loop},
};
use chaos_common::{
    ANY_SYSCALL, Hook, HookLevels, MAX_RULES_PER_TARGET, RULE_EVENTS, Rule, TargetKey, TargetRules,
    filter::{FILTER_CIDR, FILTER_COMM, FILTER_FD_KIND, FILTER_PATH, FILTER_PORT, PATH_DEPTH},
};

use crate::event;
use crate::maps::{
    CHAOS_CONFIG, CHAOS_COUNTERS, CHAOS_HOOK_LEVELS, CHAOS_PROCESS_CALLS, CHAOS_RULES,
    CHAOS_TARGETS,
};

/// A socket address the call is about (the peer of a connect, the address of a bind).
#[derive(Clone, Copy)]
pub struct SockAddr {
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// Host byte order.
    pub port: u16,
    /// The address bytes in network order as they lie in memory, in words; IPv4 in word 0.
    /// Words, not a byte array: copying `[u8; 16]` compiles to a byte-by-byte memcpy
    /// subprogram the verifier walks once per byte.
    pub addr: [u32; 4],
}

impl SockAddr {
    /// The address bytes, for the filter's compare.
    #[inline(always)]
    pub fn bytes(&self) -> &[u8; 16] {
        // SAFETY: [u32; 4] and [u8; 16] have the same size, and u8 has no alignment.
        unsafe { &*(&raw const self.addr).cast::<[u8; 16]>() }
    }
}

/// What a program knows about the call it intercepted. Facts that only filters need (thread
/// name, file kind, the file's ancestors) are read from the kernel per rule that asks, not
/// cached: a cache multiplies the states the verifier must explore across the rule loop.
#[derive(Clone, Copy)]
pub struct Call {
    pub(crate) hook: Hook,
    pub(crate) syscall_nr: i64,
    /// The dentry the call is about (kernel pointer), or 0.
    pub(crate) dentry: u64,
    pub(crate) addr: Option<SockAddr>,
}

impl Call {
    /// A call at `hook` from syscall `syscall_nr` ([`ANY_SYSCALL`] when the hook itself names
    /// the syscall).
    #[inline(always)]
    pub fn new(hook: Hook, syscall_nr: i64) -> Call {
        Call {
            hook,
            syscall_nr,
            dentry: 0,
            addr: None,
        }
    }

    /// The call is about the file at `dentry` (a kernel pointer, 0 if none).
    #[inline(always)]
    pub fn with_dentry(mut self, dentry: u64) -> Call {
        self.dentry = dentry;
        self
    }

    /// The call is about a socket address.
    #[inline(always)]
    pub fn with_addr(mut self, addr: SockAddr) -> Call {
        self.addr = Some(addr);
        self
    }

    /// The file's `i_mode`, or 0 (matching no kind) when there is no file.
    #[inline(always)]
    fn mode(&self) -> u32 {
        let Some(config) = CHAOS_CONFIG.get(0) else {
            return 0;
        };
        let inode = read_ptr(self.dentry, config.dentry_inode);
        if inode == 0 {
            return 0;
        }
        read_u16(inode + u64::from(config.inode_mode)) as u32
    }

    /// Whether the file is the directory `ino` on `dev`, or lies below it (within
    /// [`PATH_DEPTH`] levels, on the same filesystem).
    #[inline(always)]
    fn is_under(&self, dev: u64, ino: u64) -> bool {
        let Some(config) = CHAOS_CONFIG.get(0) else {
            return false;
        };
        let sb = read_ptr(self.dentry, config.dentry_sb);
        if sb == 0 || u64::from(read_u32(sb + u64::from(config.sb_dev))) != dev {
            return false;
        }
        let mut walk = PathWalk {
            dentry: self.dentry,
            ino,
            dentry_inode: config.dentry_inode,
            dentry_parent: config.dentry_parent,
            inode_ino: config.inode_ino,
            found: false,
        };
        // bpf_loop makes the walk one body for the verifier instead of PATH_DEPTH copies in
        // every rule check.
        // SAFETY: the callback is a static function, the context points into this frame.
        unsafe {
            bpf_loop(
                PATH_DEPTH as u32,
                path_step as *mut c_void,
                (&raw mut walk).cast(),
                0,
            )
        };
        walk.found
    }

    /// Whether `rule`'s filters all pass for this call.
    #[inline(always)]
    fn passes(&self, rule: &Rule) -> bool {
        let filter = &rule.filter;
        if filter.flags == 0 {
            return true;
        }
        if filter.has(FILTER_COMM) && !filter.comm_matches(current_comm().as_bytes()) {
            return false;
        }
        if filter.has(FILTER_FD_KIND) && !filter.kind_matches(self.mode()) {
            return false;
        }
        if filter.has(FILTER_PATH) && !self.is_under(filter.path_dev, filter.path_ino) {
            return false;
        }
        if filter.has(FILTER_PORT | FILTER_CIDR) {
            match self.addr {
                Some(a) if filter.addr_matches(a.family, a.bytes(), a.port) => {}
                _ => return false,
            }
        }
        true
    }
}

/// A thread name in words (see [`SockAddr::addr`] on why not bytes).
pub struct Comm([u64; 2]);

impl Comm {
    #[inline(always)]
    fn as_bytes(&self) -> &[u8; 16] {
        // SAFETY: as in `SockAddr::bytes`.
        unsafe { &*(&raw const self.0).cast::<[u8; 16]>() }
    }
}

/// The calling thread's name, NUL padded. Zeroed in two words first, not byte by byte as
/// aya's wrapper does: on older kernels (6.1) the helper copies up to the NUL and leaves
/// the rest of the buffer as it was.
#[inline(always)]
fn current_comm() -> Comm {
    let mut comm = core::mem::MaybeUninit::<[u64; 2]>::uninit();
    // SAFETY: the two words are zeroed, then the helper writes at most 16 bytes into them.
    unsafe {
        event::zero_words::<2>(comm.as_mut_ptr().cast());
        bpf_get_current_comm_raw(comm.as_mut_ptr().cast(), 16);
        Comm(comm.assume_init())
    }
}

/// The rule that acts on `call`, if an active, unexpired rule for its hook targets the
/// current task's cgroup, matches its syscall and filters, and its schedule picks this call.
///
/// The rules are found through the index: for each cgroup depth at which the hook has rules,
/// one hash lookup with the calling task's ancestor at that depth. A task no rule targets
/// pays those lookups and nothing else, however many rules other cgroups have. A target's
/// rules are tried in order and each one that matches is counted, until the first that acts:
/// it decides the call, and later rules neither count nor act on this call.
#[inline(always)]
pub fn apply(call: &Call) -> Option<&'static Rule> {
    let levels = CHAOS_HOOK_LEVELS.get(call.hook as u32)?;
    let mut search = Search {
        call: *call,
        levels,
        found: NOT_FOUND,
    };
    // Both walks are bpf_loops, so that the verifier sees each body once rather than once per
    // iteration of a plain loop (which, over levels times rules, exceeds its budget on 6.12).
    // The verifier re-walks a callback until its context stops changing, and the inner walk
    // once per walk of the outer body: so the inner context never changes (the rule that acts
    // comes back as bpf_loop's count) and the outer one changes once (`found`).
    // The counts are the map's lengths as they are, not clamped to the arrays: a clamp is a
    // branch, and the verifier walked each callback once per side of it (the callbacks stop
    // past the arrays themselves). Clamped, connect4 cost 10,784 instructions; unclamped 2,791.
    // SAFETY: the callback is a static function, the context points into this frame.
    unsafe {
        bpf_loop(
            levels.len,
            crate::log::pick(try_level::<false>, try_level::<true>),
            (&raw mut search).cast(),
            0,
        )
    };
    if search.found == NOT_FOUND {
        return None;
    }
    CHAOS_RULES.get(search.found)
}

/// One bpf_loop iteration of [`apply`] over the hook's target depths: looks up the calling
/// task's ancestor at the `index`th depth in the index and tries that target's rules; 1
/// (stop) once a rule acts.
#[inline(never)]
extern "C" fn try_level<const LOG: bool>(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer `apply` gave it, to a Search on its stack,
    // whose `levels` points to a map value that outlives the loop.
    let search = unsafe { &mut *ctx.cast::<Search>() };
    let levels = unsafe { &*search.levels };
    let rules = match rules_at_depth(search.call.hook as u32, levels, index) {
        Depth::Past => return 1,
        Depth::NoRules => return 0,
        Depth::Rules(rules) => rules,
    };
    // Unclamped, as in `apply`: `try_rule` stops at the end of `slots`.
    let len = rules.len;
    let mut walk = RuleWalk {
        call: &raw const search.call,
        rules,
    };
    // One step more than there are rules: that last step stops the loop, so bpf_loop returns
    // `i + 1` when the rule at `i` acted and `len + 1` when none did.
    // SAFETY: the callback is a static function, the context points into this frame.
    let steps = unsafe {
        bpf_loop(
            len.wrapping_add(1),
            try_rule::<LOG> as *mut c_void,
            (&raw mut walk).cast(),
            0,
        )
    };
    // Clamped here, after the loop, where a branch costs nothing: a stop at the end of `slots`
    // is not a rule that acted, whatever `len` says.
    if steps < 1 || steps > i64::from(len.min(MAX_RULES_PER_TARGET)) {
        return 0;
    }
    // The mask changes nothing (steps - 1 < len <= MAX_RULES_PER_TARGET, a power of two) but
    // keeps the index bounded where 6.1's verifier looks: LLVM may index with `steps` itself
    // after checking `steps - 1`, and 6.1 does not carry a bound from one to the other ("math
    // between map_value pointer and register with unbounded min value").
    const _: () = assert!(MAX_RULES_PER_TARGET.is_power_of_two());
    let i = (steps as usize - 1) & (MAX_RULES_PER_TARGET as usize - 1);
    search.found = rules.slots[i];
    1
}

/// Whether some rule on `hook` targets the current task's cgroup (or an ancestor of it).
///
/// LSM programs run for every task of the machine; they ask this first, so that a task no
/// rule targets leaves after the index lookups, without the syscall number or the file being
/// read for it.
#[inline(always)]
pub fn targets_current_task(hook: Hook) -> bool {
    let Some(levels) = CHAOS_HOOK_LEVELS.get(hook as u32) else {
        return false;
    };
    let mut probe = TargetProbe {
        hook: hook as u32,
        levels,
        found: false,
    };
    // SAFETY: the callback is a static function, the context points into this frame.
    unsafe {
        bpf_loop(
            levels.len,
            probe_level as *mut c_void,
            (&raw mut probe).cast(),
            0,
        )
    };
    probe.found
}

/// The state of [`targets_current_task`]'s walk over a hook's target depths.
struct TargetProbe {
    hook: u32,
    /// The hook's target depths (a map value).
    levels: *const HookLevels,
    found: bool,
}

/// One step of [`targets_current_task`]: 1 (stop) once the task's ancestor at the `index`th
/// depth has rules.
#[inline(never)]
extern "C" fn probe_level(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer `targets_current_task` gave it, to a
    // TargetProbe on its stack, whose `levels` points to a map value that outlives the loop.
    let probe = unsafe { &mut *ctx.cast::<TargetProbe>() };
    let levels = unsafe { &*probe.levels };
    match rules_at_depth(probe.hook, levels, index) {
        Depth::Past => 1,
        Depth::NoRules => 0,
        Depth::Rules(_) => {
            probe.found = true;
            1
        }
    }
}

/// What the index holds for the calling task at one of a hook's target depths.
enum Depth {
    /// The index is past the hook's listed depths.
    Past,
    /// The task's ancestor at that depth has no rules on the hook.
    NoRules,
    /// That ancestor's rules on the hook.
    Rules(&'static TargetRules),
}

/// The rules of the calling task's ancestor at the `index`th of `hook`'s target depths.
#[inline(always)]
fn rules_at_depth(hook: u32, levels: &HookLevels, index: u64) -> Depth {
    let Some(&level) = levels.levels.get(index as usize) else {
        return Depth::Past;
    };
    // SAFETY: a plain helper call; a level deeper than the task's cgroup gives 0, which no
    // key holds.
    let cgroup_id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
    let key = TargetKey {
        hook,
        cgroup_level: level,
        cgroup_id,
    };
    // SAFETY: the value is only read; user space fills the index before attaching.
    match unsafe { CHAOS_TARGETS.get(&key) } {
        Some(rules) => Depth::Rules(rules),
        None => Depth::NoRules,
    }
}

const NOT_FOUND: u32 = u32::MAX;

/// The state of [`apply`]'s walk over the hook's target depths.
struct Search {
    call: Call,
    /// The hook's target depths (a map value).
    levels: *const HookLevels,
    /// The slot of the rule that acts, or [`NOT_FOUND`].
    found: u32,
}

/// The state of [`try_level`]'s walk over one target's rules: read only, so that the
/// verifier walks [`try_rule`] once per walk of `try_level`.
struct RuleWalk {
    /// The call (in [`apply`]'s frame).
    call: *const Call,
    /// The target's rule list (a map value).
    rules: *const TargetRules,
}

/// The state of [`Call::is_under`]'s walk up the dentry tree.
struct PathWalk {
    /// The dentry to look at next (kernel pointer).
    dentry: u64,
    /// The inode number of the directory looked for.
    ino: u64,
    dentry_inode: u32,
    dentry_parent: u32,
    inode_ino: u32,
    found: bool,
}

/// One step of [`Call::is_under`]: 1 (stop) once the directory is found or the walk reached
/// the root of the filesystem.
#[inline(never)]
extern "C" fn path_step(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer `is_under` gave it, to a PathWalk on its stack.
    let walk = unsafe { &mut *ctx.cast::<PathWalk>() };
    // A dentry being created has no inode yet; its parents still place it.
    let inode = read_ptr(walk.dentry, walk.dentry_inode);
    if inode != 0 && read_u64(inode + u64::from(walk.inode_ino)) == walk.ino {
        walk.found = true;
        return 1;
    }
    let parent = read_ptr(walk.dentry, walk.dentry_parent);
    // The root of a filesystem is its own parent.
    if parent == 0 || parent == walk.dentry {
        return 1;
    }
    walk.dentry = parent;
    0
}

/// One bpf_loop iteration of [`try_level`]: tries the `index`th rule of the target, counts it
/// if it matches, and stops the loop (returns 1) at the first that acts, or past the last.
#[inline(never)]
extern "C" fn try_rule<const LOG: bool>(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer `try_level` gave it, to a RuleWalk on its
    // stack, whose `call` points into `apply`'s frame and `rules` to a map value, both
    // outliving the loop.
    let walk = unsafe { &*ctx.cast::<RuleWalk>() };
    let rules = unsafe { &*walk.rules };
    if index >= u64::from(rules.len) {
        return 1;
    }
    let Some(&slot) = rules.slots.get(index as usize) else {
        return 1;
    };
    let Some(rule) = CHAOS_RULES.get(slot) else {
        return 0;
    };
    // SAFETY: as above.
    let call = unsafe { &*walk.call };
    if !rule.is_active() || rule.hook != call.hook as u32 {
        return 0;
    }
    if call.syscall_nr != ANY_SYSCALL
        && rule.syscall_nr != ANY_SYSCALL
        && rule.syscall_nr != call.syscall_nr
    {
        return 0;
    }
    if !call.passes(rule) {
        return 0;
    }
    let Some(counter) = CHAOS_COUNTERS.get_ptr_mut(slot) else {
        return 0;
    };
    // SAFETY: the pointer comes from a map lookup and stays valid for this program run;
    // the fields are 8-byte aligned u64s, updated only atomically.
    let (matched, injected, events_lost) = unsafe {
        (
            &raw mut (*counter).matched,
            &raw mut (*counter).injected,
            &raw mut (*counter).events_lost,
        )
    };
    let mut n = fetch_add(matched, 1);
    if rule.schedule.per_process != 0 {
        n = process_call_number(slot);
    }
    if !rule.schedule.selects(n) {
        return 0;
    }
    // SAFETY: a plain helper call.
    if !rule.schedule.draw_hits(unsafe { bpf_get_prandom_u32() }) {
        return 0;
    }
    // The deadline is checked only where the rule would act: reading the clock on every
    // matching call was the largest part of a quiet rule's cost. (Not cached across rules:
    // a second rule getting this far on one call is rare, and a cache would be context the
    // verifier sees change.)
    // SAFETY: a plain helper call.
    if rule.deadline_ns != 0 && rule.expired(unsafe { bpf_ktime_get_boot_ns() }) {
        return 0;
    }
    if fetch_add(injected, 1) >= rule.schedule.max_hits {
        fetch_sub(injected, 1);
        return 0;
    }
    // Here, where `injected` counted it, so that a listener sees exactly what was counted.
    if rule.flags & RULE_EVENTS != 0 {
        event::call(slot, rule, call, events_lost);
    }
    if rule.is_dry_run() {
        return 0;
    }
    crate::log::rule_acts::<LOG>(slot, rule, call);
    1
}

/// The current process's number for this call among its own calls that matched rule `slot`
/// (from 0), for `--per-process` schedules.
#[inline(always)]
fn process_call_number(slot: u32) -> u64 {
    let tgid = bpf_get_current_pid_tgid() >> 32;
    let key = (u64::from(slot) << 32) | tgid;
    if let Some(count) = CHAOS_PROCESS_CALLS.get_ptr_mut(key) {
        return fetch_add(count, 1);
    }
    // The process's first call. Two of its threads may both get here: one insert wins
    // (BPF_NOEXIST), the other counts on the winner's entry.
    if CHAOS_PROCESS_CALLS.insert(key, 1u64, BPF_NOEXIST).is_ok() {
        return 0;
    }
    match CHAOS_PROCESS_CALLS.get_ptr_mut(key) {
        Some(count) => fetch_add(count, 1),
        None => 0,
    }
}

/// `BPF_NOEXIST`: create the element only if it does not exist.
const BPF_NOEXIST: u64 = 1;

#[inline(always)]
fn read_u64(addr: u64) -> u64 {
    // SAFETY: bpf_probe_read_kernel copes with any address.
    unsafe { bpf_probe_read_kernel(addr as *const u64).unwrap_or(0) }
}

#[inline(always)]
fn read_u32(addr: u64) -> u32 {
    // SAFETY: as for read_u64.
    unsafe { bpf_probe_read_kernel(addr as *const u32).unwrap_or(0) }
}

#[inline(always)]
fn read_u16(addr: u64) -> u16 {
    // SAFETY: as for read_u64.
    unsafe { bpf_probe_read_kernel(addr as *const u16).unwrap_or(0) }
}

/// Reads a kernel pointer field at `base + offset`, 0 when `base` is 0 or unreadable.
#[inline(always)]
pub fn read_ptr(base: u64, offset: u32) -> u64 {
    if base == 0 {
        return 0;
    }
    read_u64(base + u64::from(offset))
}

// The bpf target has no `AtomicU64::fetch_add` (it lacks compare-and-swap) and rustc always
// tells bpf-linker `--cpu generic`, where LLVM refuses to use the result of an atomic add. The
// kernel has had atomic fetch-add (BPF_ATOMIC | BPF_FETCH) since 5.12, so emit it directly.
/// Atomically adds `n` to the counter and returns its previous value.
#[inline(always)]
pub fn fetch_add(counter: *mut u64, n: u64) -> u64 {
    let mut value = n;
    // SAFETY: callers pass pointers into map values, valid and 8-byte aligned.
    unsafe {
        core::arch::asm!(
            "{v} = atomic_fetch_add((u64 *)({p} + 0), {v})",
            v = inout(reg) value,
            p = in(reg) counter,
        );
    }
    value
}

#[inline(always)]
fn fetch_sub(counter: *mut u64, n: u64) -> u64 {
    fetch_add(counter, n.wrapping_neg())
}
