//! The VM tier: boots a Debian distribution kernel under QEMU with an initramfs holding
//! `chaos`, its workload helper and the integration tests of `chaos-tests`, runs the tests
//! inside, and reads their libtest results back from the serial console.
//!
//! The development hosts' kernel refuses some program types (BPF trampolines) and lacks
//! modules such as netem, so those paths can only be exercised on a real distribution
//! kernel. Kernels are cached in `${XDG_CACHE_HOME:-$HOME/.cache}/chaos/kernels/<name>`; the
//! initramfs of each run is written to `<target dir>/vm/<name>/`. QEMU runs under software
//! emulation unless KVM really works, so a run takes seconds of boot plus the tests' time.
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::{summary::Summary, workspace::Workspace};

// Crate-visible for `cargo xtask bench --vm`, which boots the same guest with the benchmark
// harness in place of the tests.
pub(crate) mod build;
pub(crate) mod initramfs;
pub(crate) mod kernel;
pub(crate) mod qemu;
mod verdict;

/// Wall-clock limit of one VM run, boot included, unless `--timeout` says otherwise.
const DEFAULT_TIMEOUT_SECS: u64 = 2400;

/// A Debian kernel the VM tier knows how to fetch and boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KernelVersion {
    /// Linux 6.1, the newest `linux-image-6.1.0-*-amd64-unsigned` of Debian 12 (bookworm).
    V6_1,
    /// Linux 6.12, the newest `linux-image-6.12.*-cloud-amd64-unsigned` of Debian 13 (trixie).
    V6_12,
}

impl KernelVersion {
    /// What `--kernel` accepts.
    const NAMES: [&str; 2] = ["6.1", "6.12"];

    pub(crate) fn from_name(name: &str) -> anyhow::Result<Self> {
        match name {
            "6.1" => Ok(Self::V6_1),
            "6.12" => Ok(Self::V6_12),
            _ => bail!(
                "unknown kernel {name:?}: the VM tier knows {:?}",
                Self::NAMES
            ),
        }
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KernelVersion::V6_1 => "6.1",
            KernelVersion::V6_12 => "6.12",
        })
    }
}

/// The qdiscs the packet faults (and `chaos doctor`'s probes) need, tc's clsact and bpf
/// classifier (how tc programs attach before TCX, 6.6), veth for the packet tests'
/// namespace pairs, and the socket diagnostics tcp-reset lists and destroys connections with
/// (modules on Debian, which a real system loads on first use; the guest has no modprobe).
const GUEST_MODULES: &str = "sch_fq,sch_netem,sch_ingress,cls_bpf,veth,inet_diag,tcp_diag";

/// Options of `cargo xtask vm-test`.
#[derive(Debug, clap::Args)]
pub struct VmTestArgs {
    /// Debian kernel to boot: 6.1 (bookworm) or 6.12 (trixie).
    #[arg(long, value_parser = KernelVersion::NAMES)]
    pub kernel: String,

    /// Seconds after which the VM is killed and the run counts as failed (boot included).
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_SECS)]
    pub timeout: u64,

    /// Kernel modules to load in the guest before the tests; their dependencies are loaded
    /// first. The default is what the packet faults and doctor's probes need, as in
    /// `cargo xtask test`.
    #[arg(long, value_delimiter = ',', default_value = GUEST_MODULES)]
    pub modules: Vec<String>,

    /// The guest's `lsm=` boot parameter. Without `bpf` in it (e.g.
    /// lockdown,capability,yama,apparmor: Ubuntu's, Flatcar's and Azure Linux's situation)
    /// the security hooks' faults run through fmod_ret, and only the tests of those faults
    /// run unless --tests names others.
    #[arg(long, default_value = qemu::DEFAULT_LSM)]
    pub lsm: String,

    /// Only these integration test files (e.g. syscall_file,syscall_openat); default all.
    #[arg(long, value_delimiter = ',')]
    pub tests: Vec<String>,

    /// Arguments passed to every test binary after `--test-threads=1` (libtest filters,
    /// `--exact`, `--nocapture`, ...).
    #[arg(last = true)]
    pub test_args: Vec<String>,
}

impl VmTestArgs {
    /// The defaults of `cargo xtask vm-test --kernel KERNEL`, for other tasks that run the
    /// VM tier. An unknown `kernel` is reported by [`run`].
    pub fn for_kernel(kernel: &str) -> Self {
        Self {
            kernel: kernel.to_owned(),
            timeout: DEFAULT_TIMEOUT_SECS,
            modules: GUEST_MODULES.split(',').map(String::from).collect(),
            test_args: Vec::new(),
            lsm: qemu::DEFAULT_LSM.to_owned(),
            tests: Vec::new(),
        }
    }

    /// The configuration where BPF LSM is compiled in but not active, as on Ubuntu, Flatcar
    /// and Azure Linux by default: Debian's 6.12 with `lsm=` {WITHOUT_BPF_LSM}, running the
    /// tests of the faults on security hooks, which run through fmod_ret there.
    pub fn without_bpf_lsm() -> Self {
        Self {
            lsm: WITHOUT_BPF_LSM.to_owned(),
            ..Self::for_kernel("6.12")
        }
    }

    /// The test files this run runs.
    fn selected_tests(&self) -> Vec<String> {
        if !self.tests.is_empty() {
            return self.tests.clone();
        }
        if !self.lsm.split(',').any(|l| l == "bpf") {
            return SECURITY_HOOK_TESTS.map(String::from).to_vec();
        }
        Vec::new()
    }
}

/// The `lsm=` of the configuration without BPF LSM (what Ubuntu's kernels activate).
pub const WITHOUT_BPF_LSM: &str = "lockdown,capability,yama,apparmor";

/// The tests of the faults on the kernel's security hooks (file, filesystem, process and the
/// LSM socket calls listen, accept, send, recv, shutdown: all in syscall_file) and of the
/// choice between BPF LSM and fmod_ret: what a kernel without BPF LSM runs. The others need
/// nothing from the LSM list (cgroup socket hooks, tracepoints, packets), or need BPF LSM
/// itself (block mode's sleepable LSM programs), and run in the default configurations.
const SECURITY_HOOK_TESTS: [&str; 4] = ["syscall_file", "syscall_openat", "mechanism", "doctor"];

/// Runs the integration tests inside a VM; errors when any failed or no result came back.
pub fn run(args: &VmTestArgs) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let version = KernelVersion::from_name(&args.kernel)?;
    let kernel_name = match args.lsm.as_str() {
        qemu::DEFAULT_LSM => version.to_string(),
        lsm => format!("{version} lsm={lsm}"),
    };

    let workspace = Workspace::locate()?;
    let selected = args.selected_tests();
    let mut binaries = build::build_guest_binaries(&workspace, &selected)?;
    if binaries.tests.is_empty() {
        // A VM run that tests nothing must not read as a pass.
        bail!("chaos-tests has no integration tests (tests/tests/*.rs): nothing to run in the VM");
    }
    // busybox's tc cannot manage root qdiscs and its ip has no `netns`; iproute2's can.
    for tool in ["tc", "ip"] {
        if let Some(path) = [format!("/usr/sbin/{tool}"), format!("/sbin/{tool}")]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
        {
            binaries.bins.push(build::Executable {
                name: tool.into(),
                path,
            });
        }
    }

    let kernel = kernel::ensure(version, &kernel::cache_dir()?)?;
    println!(
        "vm {kernel_name}: kernel {} ({})",
        kernel.release,
        kernel.vmlinuz.display()
    );

    let work_dir = workspace
        .target_dir
        .join("vm")
        .join(kernel_name.replace([' ', '=', ','], "-"));
    let initrd = initramfs::build(&initramfs::Spec {
        work_dir: &work_dir,
        kernel_name: &version.to_string(),
        modules_dir: &kernel.modules_dir,
        modules: &args.modules,
        binaries: &binaries,
        test_args: &args.test_args,
    })
    .with_context(|| format!("building the initramfs in {}", work_dir.display()))?;

    let outcome = qemu::boot(&qemu::Boot {
        vmlinuz: &kernel.vmlinuz,
        initrd: &initrd,
        timeout: Duration::from_secs(args.timeout),
        prefix: &format!("[vm {kernel_name}] "),
        lsm: &args.lsm,
    })?;
    println!(
        "vm {kernel_name}: guest ran for {:.1} s ({:.1} s in total with builds)",
        outcome.elapsed.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    let test_names: Vec<&str> = binaries.tests.iter().map(|t| t.name.as_str()).collect();
    let verdict = verdict::judge(&outcome, &test_names, args.timeout);
    println!("vm {kernel_name}: {}", verdict.summary);
    if !verdict.problems.is_empty() {
        for problem in &verdict.problems {
            eprintln!("vm {kernel_name}: FAILED: {problem}");
        }
        bail!(
            "vm-test on kernel {kernel_name} failed: {}",
            verdict.problems.join("; ")
        );
    }
    Ok(verdict.summary)
}
