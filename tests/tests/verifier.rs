//! Every kernel program passes this kernel's verifier, well inside its budget: what the
//! verifier walks is most of the time a fault takes to arm (issue 21).
use chaos::loader::verifier_costs;
use chaos_tests::{need_root, skips_forbidden};

/// The most instructions a program may cost the verifier: a tenth of its 1M budget, and far
/// above today's figures (2k–5k for the syscall programs, 5k–18k for the packet ones, whose
/// slot walk is a bpf_loop now, on 6.18; `cargo xtask bench` lists them), so that a change that brings back a walk
/// multiplying with every filter or nested loop fails here, not in a user's arm time or on
/// the next kernel's budget.
const MAX_VERIFIED_INSNS: u32 = 100_000;

#[test]
fn every_program_loads_within_the_verifier_budget() {
    if !need_root() {
        return;
    }
    let costs = verifier_costs().expect("loading the object");
    assert!(costs.len() > 10, "{costs:?}");
    for cost in &costs {
        eprintln!(
            "{:28} {:18} {:>8} insns {:>8} µs {}",
            cost.program,
            cost.program_type,
            cost.verified_insns.map_or("-".into(), |n| n.to_string()),
            cost.load_us,
            cost.error.as_deref().unwrap_or("")
        );
        match &cost.error {
            // The host kernel refuses every program that needs a BPF trampoline (EPERM, see
            // PLATFORM.md); the VM tier's kernels run them, so there they must load.
            Some(err) if cost.program_type == "lsm" && !skips_forbidden() => {
                assert!(
                    err.contains("Operation not permitted"),
                    "{}: {err}",
                    cost.program
                )
            }
            Some(err) => panic!("{} was refused: {err}", cost.program),
            None => {}
        }
        let max = MAX_VERIFIED_INSNS;
        if let Some(insns) = cost.verified_insns {
            assert!(
                insns <= max,
                "{} cost the verifier {insns} instructions (at most {max})",
                cost.program
            );
        }
    }
    let connect = costs
        .iter()
        .find(|c| c.program == "chaos_connect4")
        .unwrap();
    assert!(connect.error.is_none(), "{connect:?}");
}
