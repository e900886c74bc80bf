//! Building what runs in the guest: `chaos`, the helper binaries of `chaos-tests` and its
//! integration-test executables.
use std::io::BufReader;
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{Context as _, bail};
use cargo_metadata::{Message, TargetKind};

use crate::workspace::Workspace;

/// Package of the `chaos` binary.
const USER_PACKAGE: &str = "chaos-user";
/// Package holding the integration tests and their helper binaries (`chaos-workload`).
const TESTS_PACKAGE: &str = "chaos-tests";

/// One built executable and the name it gets in the guest.
#[derive(Clone, Debug)]
pub struct Executable {
    /// Cargo target name, e.g. `chaos-workload` or `lsm` for `tests/tests/lsm.rs`.
    pub name: String,
    /// Path of the built file on the host.
    pub path: PathBuf,
}

/// Everything the initramfs carries besides busybox and libraries.
#[derive(Debug)]
pub struct GuestBinaries {
    /// `/bin` in the guest: `chaos` and every binary of `chaos-tests`.
    pub bins: Vec<Executable>,
    /// `/tests` in the guest: the integration-test executables, run in this order.
    pub tests: Vec<Executable>,
}

/// Builds the guest's binaries with the workspace's normal profile and target directory;
/// of the integration tests only those named in `only`, when it names any.
pub fn build_guest_binaries(
    workspace: &Workspace,
    only: &[String],
) -> anyhow::Result<GuestBinaries> {
    let mut bins = cargo_executables(
        workspace,
        &["build", "-p", USER_PACKAGE, "--bin", "chaos"],
        |_| true,
    )?;
    if !bins.iter().any(|b| b.name == "chaos") {
        bail!("cargo build -p {USER_PACKAGE} --bin chaos produced no `chaos` executable");
    }

    // chaos-workload and any other process the tests fault.
    bins.extend(cargo_executables(
        workspace,
        &["build", "-p", TESTS_PACKAGE, "--bins"],
        |_| true,
    )?);

    // Only integration tests (tests/tests/*.rs) belong in the guest; unit tests of the
    // helper library run fine on the host.
    let mut args = vec!["test", "-p", TESTS_PACKAGE, "--no-run"];
    for name in only {
        args.extend(["--test", name.as_str()]);
    }
    let mut tests = cargo_executables(workspace, &args, |artifact| {
        artifact.profile.test && artifact.target.kind.contains(&TargetKind::Test)
    })?;
    tests.sort_by(|a, b| a.name.cmp(&b.name));
    tests.dedup_by(|a, b| a.name == b.name);
    Ok(GuestBinaries { bins, tests })
}

/// Runs cargo with `args` plus JSON messages and returns the executables of the artifacts
/// that `keep` accepts. Diagnostics still reach the terminal (rendered on stderr).
fn cargo_executables(
    workspace: &Workspace,
    args: &[&str],
    keep: impl Fn(&cargo_metadata::Artifact) -> bool,
) -> anyhow::Result<Vec<Executable>> {
    let shown = format!("cargo {}", args.join(" "));
    println!("vm: {shown}");
    let mut child = workspace
        .cargo()
        .args(args)
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{shown}` in {}", workspace.root.display()))?;

    let stdout = child.stdout.take().expect("stdout is piped");
    let mut executables = Vec::new();
    for message in Message::parse_stream(BufReader::new(stdout)) {
        let message = message.with_context(|| format!("reading the output of `{shown}`"))?;
        match message {
            Message::CompilerArtifact(artifact) if keep(&artifact) => {
                if let Some(path) = &artifact.executable {
                    executables.push(Executable {
                        name: artifact.target.name.clone(),
                        path: path.clone().into_std_path_buf(),
                    });
                }
            }
            // Build scripts and others print plain text lines on stdout: pass them on.
            Message::TextLine(line) => println!("{line}"),
            _ => {}
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{shown}`"))?;
    if !status.success() {
        bail!(
            "`{shown}` failed ({status}) in {}",
            workspace.root.display()
        );
    }
    Ok(executables)
}
