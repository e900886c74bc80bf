//! The maps shared by every program. The user side fills `CONFIG` and `RULES` before attaching
//! and reads `COUNTERS`.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap},
};
use chaos_common::{
    HitCounter, Hook, HookLevels, KernelConfig, MAX_RULES, Rule, SYS_ENTER_FILTER_WORDS, TargetKey,
    TargetRules,
};

/// Index 0: facts about this kernel read from its BTF.
#[map]
pub static CHAOS_CONFIG: Array<KernelConfig> = Array::with_max_entries(1, 0);

/// The rules, in slots; inactive slots are skipped.
#[map]
pub static CHAOS_RULES: Array<Rule> = Array::with_max_entries(MAX_RULES, 0);

/// The rule index: which slots hold the rules of a (hook, target cgroup).
#[map]
pub static CHAOS_TARGETS: HashMap<TargetKey, TargetRules> = HashMap::with_max_entries(MAX_RULES, 0);

/// Per hook (by value): the cgroup depths at which [`CHAOS_TARGETS`] has keys for it.
#[map]
pub static CHAOS_HOOK_LEVELS: Array<HookLevels> =
    Array::with_max_entries(Hook::ALL.len() as u32 + 1, 0);

/// One counter per rule slot, updated atomically.
#[map]
pub static CHAOS_COUNTERS: Array<HitCounter> = Array::with_max_entries(MAX_RULES, 0);

/// Processes stopped by a pause rule: thread group id -> `CLOCK_BOOTTIME` ns at which user
/// space sends SIGCONT (and removes the entry).
#[map]
pub static CHAOS_PAUSED: LruHashMap<u32, u64> = LruHashMap::with_max_entries(4096, 0);

/// Per-process call numbers of rules with `schedule.per_process`: `slot << 32 | tgid` -> calls
/// that process made that matched the rule. LRU: the entries of exited processes age out
/// (a reused pid inherits the count only if its entry has not been evicted yet).
#[map]
pub static CHAOS_PROCESS_CALLS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(16384, 0);

/// The `sys_enter` quick filter: which syscall numbers some rule may act on, as a bitmap.
#[map]
pub static CHAOS_SYS_ENTER_NRS: Array<u64> = Array::with_max_entries(SYS_ENTER_FILTER_WORDS, 0);
