//! Fetching Debian kernel packages into a cache outside the repository.
//!
//! apt runs with a private configuration (sources, lists, archive cache, empty dpkg status)
//! under the cache directory, so the host's apt state is never touched and a suite the host
//! does not use (trixie on a bookworm host) needs no change to `/etc/apt`. Once a kernel is
//! unpacked it is reused as is: delete its directory to pick up a newer package.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use super::KernelVersion;

/// Keyring that signs Debian's archives; Debian 12's copy also holds trixie's keys.
const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Name of the file marking a complete, unpacked kernel in its cache directory.
const STAMP: &str = "kernel.json";

/// An unpacked kernel package, ready to boot.
#[derive(Debug)]
pub struct Kernel {
    /// `uname -r` of the kernel, e.g. `6.1.0-47-amd64`.
    pub release: String,
    /// The bootable image.
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>` of the unpacked package (no `modules.dep`: depmod makes it
    /// at install time).
    pub modules_dir: PathBuf,
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/chaos/kernels`.
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    Ok(base.join("chaos").join("kernels"))
}

/// Which Debian suites hold a kernel version, and which of their packages to take.
struct Source {
    /// Suites of the main archive, e.g. `bookworm bookworm-updates`.
    suites: &'static [&'static str],
    /// Suite of the security archive, where most kernel updates land first.
    security_suite: &'static str,
    /// Package-name prefixes to try in order, each followed by a version and `suffix`.
    flavours: &'static [(&'static str, &'static str)],
}

impl KernelVersion {
    fn source(self) -> Source {
        match self {
            KernelVersion::V6_1 => Source {
                suites: &["bookworm", "bookworm-updates"],
                security_suite: "bookworm-security",
                flavours: &[("linux-image-6.1.0-", "-amd64-unsigned")],
            },
            KernelVersion::V6_12 => Source {
                suites: &["trixie", "trixie-updates"],
                security_suite: "trixie-security",
                // The cloud flavour is a third of the size and has what the tests need
                // (BPF LSM, BTF, netem/fq/veth as modules); fall back to the generic one.
                flavours: &[
                    ("linux-image-6.12.", "-cloud-amd64-unsigned"),
                    ("linux-image-6.12.", "-amd64-unsigned"),
                ],
            },
        }
    }
}

/// Returns the cached kernel for `version`, downloading and unpacking it first if needed.
pub fn ensure(version: KernelVersion, cache: &Path) -> anyhow::Result<Kernel> {
    let dir = cache.join(version.to_string());
    if let Some(kernel) = read_stamp(&dir)? {
        return Ok(kernel);
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let apt = PrivateApt::configure(&dir.join("apt"), &version.source())?;
    println!(
        "vm: updating the package lists for kernel {version} (private apt in {})",
        apt.dir.display()
    );
    apt.run("apt-get", &["update", "-q"])?;
    let package = newest_package(&apt, &version.source())?;

    println!("vm: downloading {package}");
    let download_dir = dir.join("download");
    recreate_dir(&download_dir)?;
    apt.run_in(&download_dir, "apt-get", &["download", "-q", &package])?;
    let deb = single_file(&download_dir, ".deb")?;

    // Unpack beside the final place and rename, so an interrupted run leaves no tree that
    // looks complete.
    let root = dir.join("root");
    let partial = dir.join("root.partial");
    recreate_dir(&partial)?;
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&partial))?;
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    fs::rename(&partial, &root)
        .with_context(|| format!("renaming {} to {}", partial.display(), root.display()))?;
    fs::remove_dir_all(&download_dir)
        .with_context(|| format!("removing {}", download_dir.display()))?;

    let kernel = locate_in(&root)?;
    let stamp = serde_json::json!({ "package": package, "release": kernel.release });
    fs::write(dir.join(STAMP), format!("{stamp:#}\n"))
        .with_context(|| format!("writing {}", dir.join(STAMP).display()))?;
    Ok(kernel)
}

/// The kernel recorded in `dir`'s stamp, if a previous run completed there.
fn read_stamp(dir: &Path) -> anyhow::Result<Option<Kernel>> {
    let path = dir.join(STAMP);
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok(None);
    };
    let stamp: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let kernel = locate_in(&dir.join("root"))
        .with_context(|| format!("{} exists but its kernel is incomplete", path.display()))?;
    if stamp["release"].as_str() != Some(kernel.release.as_str()) {
        bail!(
            "{} names release {} but {} holds {}: delete {} to fetch again",
            path.display(),
            stamp["release"],
            dir.join("root").display(),
            kernel.release,
            dir.display()
        );
    }
    Ok(Some(kernel))
}

/// Finds the image and module tree in an unpacked `linux-image-*` package.
fn locate_in(root: &Path) -> anyhow::Result<Kernel> {
    let boot = root.join("boot");
    let vmlinuz = fs::read_dir(&boot)
        .with_context(|| format!("listing {}", boot.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .with_context(|| format!("no vmlinuz-* in {}", boot.display()))?;
    let release = vmlinuz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .with_context(|| format!("odd kernel file name {}", vmlinuz.display()))?
        .to_owned();
    // Trixie's packages ship modules under /usr/lib (merged /usr), bookworm's under /lib.
    let modules_dir = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|d| root.join(d).join(&release))
        .find(|d| d.join("kernel").is_dir())
        .with_context(|| format!("no lib/modules/{release}/kernel in {}", root.display()))?;
    Ok(Kernel {
        release,
        vmlinuz,
        modules_dir,
    })
}

/// Picks the newest package of the first flavour that has any.
fn newest_package(apt: &PrivateApt, source: &Source) -> anyhow::Result<String> {
    for (prefix, suffix) in source.flavours {
        let listed = apt.output("apt-cache", &["pkgnames", prefix])?;
        let newest = listed
            .lines()
            .filter_map(|name| {
                let version = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
                // A dash in the middle means another flavour (`-rt`, `-cloud`, ...).
                (!version.contains('-')).then(|| (version_key(version), name.to_owned()))
            })
            .max();
        if let Some((_, name)) = newest {
            return Ok(name);
        }
    }
    bail!(
        "no package matching {:?} in suites {:?} (private apt lists in {})",
        source.flavours,
        source.suites,
        apt.dir.display()
    )
}

/// Orders versions like `117+deb13` / `115+deb13.1` / `47` by their numbers, in order.
fn version_key(version: &str) -> Vec<u64> {
    version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|part| !part.is_empty())
        .map(|part| part.parse().unwrap_or(u64::MAX))
        .collect()
}

/// An apt configuration of our own: sources, lists, archives and dpkg status live in `dir`.
struct PrivateApt {
    dir: PathBuf,
    options: Vec<String>,
}

impl PrivateApt {
    fn configure(dir: &Path, source: &Source) -> anyhow::Result<Self> {
        let (archive, security) = host_mirrors()?;
        if !Path::new(DEBIAN_KEYRING).is_file() {
            bail!("{DEBIAN_KEYRING} is missing: install debian-archive-keyring");
        }
        for sub in ["lists/partial", "cache/archives/partial"] {
            let d = dir.join(sub);
            fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        let mut sources = format!(
            "Types: deb\nURIs: {archive}\nSuites: {}\nComponents: main\nSigned-By: {DEBIAN_KEYRING}\n",
            source.suites.join(" ")
        );
        if let Some(security) = security {
            sources += &format!(
                "\nTypes: deb\nURIs: {security}\nSuites: {}\nComponents: main\nSigned-By: {DEBIAN_KEYRING}\n",
                source.security_suite
            );
        }
        let sources_path = dir.join("debian.sources");
        fs::write(&sources_path, sources)
            .with_context(|| format!("writing {}", sources_path.display()))?;
        let status = dir.join("status");
        fs::write(&status, "").with_context(|| format!("writing {}", status.display()))?;

        let d = |sub: &str| dir.join(sub).display().to_string();
        let options = [
            ("Dir::Etc::SourceList", sources_path.display().to_string()),
            ("Dir::Etc::SourceParts", "/dev/null".into()),
            // The host's pinning is about the host's suites, not ours.
            ("Dir::Etc::Preferences", "/dev/null".into()),
            ("Dir::Etc::PreferencesParts", "/dev/null".into()),
            ("Dir::State::Lists", d("lists")),
            ("Dir::State::status", status.display().to_string()),
            ("Dir::Cache", d("cache")),
            ("APT::Architecture", "amd64".into()),
            ("APT::Architectures", "amd64".into()),
            // Only package lists are needed: skip translations and AppStream metadata.
            ("Acquire::Languages", "none".into()),
            (
                "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled",
                "false".into(),
            ),
            (
                "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled",
                "false".into(),
            ),
            (
                "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled",
                "false".into(),
            ),
            // As root, apt hands downloads to user _apt, who cannot write into a root-owned
            // cache under $HOME; it would fall back with a warning anyway. Harmless for
            // non-root users, whom apt never switches.
            ("APT::Sandbox::User", "root".into()),
        ]
        .into_iter()
        .flat_map(|(key, value)| ["-o".to_owned(), format!("{key}={value}")])
        .collect();
        Ok(Self {
            dir: dir.to_owned(),
            options,
        })
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new(program);
        command.args(&self.options).args(args);
        command
    }

    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        run(&mut self.command(program, args))
    }

    fn run_in(&self, dir: &Path, program: &str, args: &[&str]) -> anyhow::Result<()> {
        run(self.command(program, args).current_dir(dir))
    }

    fn output(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut command = self.command(program, args);
        let output = command
            .output()
            .with_context(|| format!("running {program} {}", args.join(" ")))?;
        if !output.status.success() {
            bail!(
                "{program} {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        String::from_utf8(output.stdout).with_context(|| format!("output of {program}"))
    }
}

/// The Debian archive and security-archive URIs the host's own apt sources use, so that
/// we go through the same mirror (and whatever the network lets through).
fn host_mirrors() -> anyhow::Result<(String, Option<String>)> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut parts: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        parts.sort();
        files.extend(parts);
    }
    let mut uris = Vec::new();
    for file in files {
        let name = file.to_string_lossy();
        if !(name.ends_with(".list") || name.ends_with(".sources")) {
            continue;
        }
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        uris.extend(source_uris(&text));
    }
    let find = |path: &str| {
        uris.iter()
            .find(|u| u.trim_end_matches('/').ends_with(path))
            .map(|u| u.trim_end_matches('/').to_owned())
    };
    let archive = find("/debian").context(
        "no Debian archive (an URI ending in /debian) in /etc/apt/sources.list{,.d}: \
         cannot tell which mirror to fetch kernels from",
    )?;
    Ok((archive, find("/debian-security")))
}

/// URIs named by apt sources in either format: deb822 (`URIs:` fields) or one-line (`deb`).
fn source_uris(text: &str) -> Vec<String> {
    let mut uris = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("URIs:") {
            uris.extend(rest.split_whitespace().map(str::to_owned));
        } else if let Some(rest) = line.strip_prefix("deb ") {
            // `deb [option=value ...] uri suite components`
            let rest = match rest.trim_start().strip_prefix('[') {
                Some(options) => options.split_once(']').map_or("", |(_, r)| r),
                None => rest,
            };
            uris.extend(rest.split_whitespace().next().map(str::to_owned));
        }
    }
    uris
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{command:?}");
    let status = command
        .status()
        .with_context(|| format!("running {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

fn recreate_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// The one file in `dir` whose name ends with `suffix`.
fn single_file(dir: &Path, suffix: &str) -> anyhow::Result<PathBuf> {
    let found: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "expected one *{suffix} in {}, found {found:?}",
            dir.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_numerically() {
        assert!(version_key("117+deb13") > version_key("99+deb13"));
        assert!(version_key("115+deb13.1") > version_key("115+deb13"));
        assert!(version_key("56") > version_key("9"));
    }

    #[test]
    fn finds_uris_in_both_formats() {
        let deb822 =
            "Types: deb\n# comment\nURIs: http://mirror.example/debian\nSuites: bookworm\n";
        assert_eq!(source_uris(deb822), ["http://mirror.example/debian"]);
        let one_line = "deb [signed-by=/k.gpg arch=amd64] http://m.example/debian-security bookworm-security main\n\
                        deb http://m.example/debian bookworm main\n# deb http://no.example/debian x\n";
        assert_eq!(
            source_uris(one_line),
            [
                "http://m.example/debian-security",
                "http://m.example/debian"
            ]
        );
    }
}
