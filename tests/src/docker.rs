//! Real containers of the machine's Docker engine for the container tests: locally built
//! images (no registry: `docker import` of a root filesystem), containers and Compose
//! projects, each removed on drop and labelled so that a test can check nothing is left.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use crate::scratch;

/// Runs `docker ARGS`, returning its trimmed stdout, or its stderr as the error.
pub fn docker(args: &[&str]) -> Result<String, String> {
    run(
        Command::new("docker").args(args),
        &format!("docker {}", args.join(" ")),
    )
}

fn run(command: &mut Command, what: &str) -> Result<String, String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("{what}: {err}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Whether a Docker engine answers, or why not.
pub fn docker_engine() -> Result<String, String> {
    docker(&["version", "--format", "{{.Server.Version}}"])
}

/// A label on everything this test process creates, to find (and check the removal of) it.
pub fn label() -> String {
    format!("chaos-test={}", std::process::id())
}

/// Asserts that no container or image with this process's [`label`] is left.
pub fn assert_no_docker_leftovers() {
    let filter = format!("label={}", label());
    assert_eq!(
        docker(&["ps", "--all", "--quiet", "--filter", &filter]).unwrap(),
        "",
        "containers left behind"
    );
    assert_eq!(
        docker(&["images", "--quiet", "--filter", &filter]).unwrap(),
        "",
        "images left behind"
    );
}

/// A locally built image, removed on drop.
pub struct Image {
    /// Its `name:tag`.
    pub tag: String,
}

impl Image {
    /// An image holding each of `binaries` at its own file name in `/`, plus their shared
    /// libraries, named `chaos-test-NAME:PID`.
    pub fn with_binaries(name: &str, binaries: &[&Path]) -> Image {
        let rootfs = scratch(&format!("rootfs-{name}"));
        let _ = fs::remove_dir_all(&rootfs);
        fs::create_dir_all(&rootfs).unwrap();
        for binary in binaries {
            fs::copy(binary, rootfs.join(binary.file_name().unwrap())).unwrap();
            for lib in shared_libraries(binary) {
                let dest = rootfs.join(lib.strip_prefix("/").unwrap());
                fs::create_dir_all(dest.parent().unwrap()).unwrap();
                fs::copy(&lib, &dest).unwrap_or_else(|e| panic!("copying {}: {e}", lib.display()));
            }
        }
        let tag = format!("chaos-test-{name}:{}", std::process::id());
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .expect("tar");
        let import = Command::new("docker")
            .args([
                "import",
                "--change",
                &format!("LABEL {}", label()),
                "-",
                &tag,
            ])
            .stdin(Stdio::from(tar.stdout.take().unwrap()))
            .output()
            .expect("docker import");
        assert!(tar.wait().unwrap().success(), "tar of {}", rootfs.display());
        let image = Image { tag };
        assert!(
            import.status.success(),
            "docker import: {}",
            String::from_utf8_lossy(&import.stderr)
        );
        let _ = fs::remove_dir_all(&rootfs);
        image
    }

    /// An image holding `binary` and its libraries (see [`Image::with_binaries`]).
    pub fn with_binary(binary: &Path) -> Image {
        Image::with_binaries("workload", &[binary])
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.tag]);
    }
}

/// The libraries the dynamic linker loads for `binary` (and the linker itself), from `ldd`;
/// none for a static binary.
pub fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(binary).output().expect("ldd");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or
            // `/lib64/ld-linux-x86-64.so.2 (0x...)`; the vDSO has no file.
            let path = line.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// A running container, removed (killed first) on drop, so that a failing test leaves none.
pub struct Container {
    /// Its full id.
    pub id: String,
    /// Its name (`chaos-test-PID-NAME`).
    pub name: String,
}

impl Container {
    /// Runs `argv` in `image` on the host network, with `volume` at /sync.
    pub fn run(image: &Image, name: &str, volume: &Path, argv: &[String]) -> Container {
        let mut options = vec!["--network".to_owned(), "host".to_owned()];
        options.extend(["--volume".into(), format!("{}:/sync", volume.display())]);
        Container::run_with(image, name, &options, argv)
    }

    /// Runs `argv` in `image` with extra `docker run` options.
    pub fn run_with(image: &Image, name: &str, options: &[String], argv: &[String]) -> Container {
        let name = format!("chaos-test-{}-{name}", std::process::id());
        let label = label();
        let mut args = vec!["run", "--detach", "--label", &label, "--name", &name];
        args.extend(options.iter().map(String::as_str));
        args.push(&image.tag);
        args.extend(argv.iter().map(String::as_str));
        let id = docker(&args).expect("docker run");
        Container { id, name }
    }

    /// The id as `docker ps` shows it.
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }

    /// The cgroup v2 directory the engine put the container's main process in, from its
    /// /proc/PID/cgroup.
    pub fn cgroup(&self) -> PathBuf {
        cgroup_of(&self.id)
    }

    /// Waits for the container to exit; its exit code and logs.
    pub fn wait(&self) -> (String, String) {
        let code = docker(&["wait", &self.id]).unwrap();
        (code, docker(&["logs", &self.id]).unwrap())
    }
}

/// The cgroup v2 directory of a container's main process.
pub fn cgroup_of(id: &str) -> PathBuf {
    let pid: u32 = docker(&["inspect", "--format", "{{.State.Pid}}", id])
        .unwrap()
        .parse()
        .unwrap();
    let rel = chaos::target::cgroup_of_pid(pid).unwrap();
    chaos::target::CgroupTarget::from_path(&rel).unwrap().path
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "--force", &self.id]);
    }
}

/// A Docker Compose project started with `docker-compose up -d`, taken down on drop.
pub struct Compose {
    /// The project name.
    pub project: String,
    file: PathBuf,
}

impl Compose {
    /// Starts the project `project` (suffixed with this process's id) from the Compose file
    /// text `yaml`.
    pub fn up(project: &str, yaml: &str) -> Result<Compose, String> {
        let project = format!("chaostest{}{project}", std::process::id());
        let file = scratch(&format!("compose-{project}.yml"));
        fs::write(&file, yaml).unwrap();
        let compose = Compose { project, file };
        compose.run(&["up", "--detach"])?;
        Ok(compose)
    }

    /// Runs `docker-compose -p PROJECT -f FILE ARGS`.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let mut command = Command::new("docker-compose");
        command
            .args(["--project-name", &self.project, "--file"])
            .arg(&self.file)
            .args(args);
        run(&mut command, &format!("docker-compose {}", args.join(" ")))
    }

    /// The id of the container of `service`.
    pub fn container(&self, service: &str) -> String {
        self.run(&["ps", "--quiet", service]).unwrap()
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = self.run(&["down", "--volumes", "--timeout", "1"]);
        let _ = fs::remove_file(&self.file);
    }
}
