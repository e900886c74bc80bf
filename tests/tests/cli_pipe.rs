//! chaos's printing commands behave like other Unix tools when the reader of their output goes
//! away early (`chaos schema | head`): they end without a panic message.
use std::{os::unix::process::ExitStatusExt, process::Command};

use chaos_tests::chaos_bin;

#[test]
fn schema_into_a_pipe_nobody_reads_ends_quietly() {
    // The reader is gone before chaos writes: its first write meets a closed pipe, as
    // `chaos schema | head -1` does once head has its line.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let output = Command::new(chaos_bin())
        .arg("schema")
        .stdout(writer)
        .output()
        .expect("run chaos schema");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked"),
        "chaos schema panicked: {stderr}"
    );
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGPIPE),
        "chaos schema should end as cat does, by SIGPIPE; it ended with {:?}: {stderr}",
        output.status
    );
}
