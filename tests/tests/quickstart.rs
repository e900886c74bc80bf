//! `chaos quickstart`, the README's first command: it must run its experiment end to end and
//! find its own hypothesis holding (the target saw exactly the injected failures, the control
//! none), which it reports through its exit status.
use chaos_tests::*;

#[test]
fn quickstart_hypothesis_holds_and_everything_is_removed() {
    if !need_root() {
        return;
    }
    let outcome = chaos(&["quickstart", "--count", "10", "--probability", "0.5"]);
    assert!(outcome.status.success(), "{outcome:?}");
    assert!(
        outcome.stdout.contains("hypothesis holds"),
        "{}",
        outcome.stdout
    );
    assert!(
        outcome.stdout.contains("control done: 10/10 connects ok"),
        "{}",
        outcome.stdout
    );
    assert_nothing_left();
}
