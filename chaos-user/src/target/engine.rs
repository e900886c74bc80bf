//! `--container NAME`: a container's name, or its Compose service, resolved to its id through
//! the container engine's HTTP API on a Unix socket (Docker's, or Podman's Docker-compatible
//! one).
//!
//! Ids never need an engine: they are found in the cgroup hierarchy ([`super::container`]).
//! A name is looked up in the engine's container list (`GET /containers/json?all=true`), then
//! its full id is found in the cgroup hierarchy like a given id, so that resolution works the
//! same when chaos runs in a container of its own with the host's cgroup tree mounted.
//!
//! Which socket: `$DOCKER_HOST`, else `$CONTAINER_HOST` (Podman's variable), when set (only
//! `unix://` ones); otherwise the first that accepts a connection of `/var/run/docker.sock`,
//! `/run/podman/podman.sock` and `$XDG_RUNTIME_DIR/podman/podman.sock` (rootless Podman).
//!
//! Matching is [`pick`], pure and tested on the host: a name matches a container named so
//! (Docker shows names with a leading `/`) or the containers of a Compose service of that name
//! (labels `com.docker.compose.service` and `com.docker.compose.project`, which both
//! docker-compose and podman-compose set). More than one match is refused with the candidates
//! listed, never guessed.
use std::{collections::BTreeMap, path::PathBuf};

use serde::Deserialize;

/// Compose's label naming a container's service.
pub const SERVICE_LABEL: &str = "com.docker.compose.service";
/// Compose's label naming a container's project.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";

/// Where the engine's container list comes from: [`list_containers`], or a made-up list in
/// tests.
pub type Lister = dyn Fn() -> Result<Vec<EngineContainer>, String>;

/// One container as the engine lists it (the fields of `GET /containers/json` used here).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct EngineContainer {
    /// The full id.
    #[serde(rename = "Id")]
    pub id: String,
    /// Its names, each with a leading `/`.
    #[serde(rename = "Names", default)]
    pub names: Vec<String>,
    /// `running`, `exited`, `created`, `paused`...
    #[serde(rename = "State", default)]
    pub state: String,
    /// Its labels.
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
}

impl EngineContainer {
    /// Its first name, without the leading `/`.
    pub fn name(&self) -> &str {
        self.names
            .first()
            .map(|n| n.trim_start_matches('/'))
            .unwrap_or("")
    }

    fn label(&self, key: &str) -> Option<&str> {
        self.labels.as_ref()?.get(key).map(String::as_str)
    }

    /// Its Compose service, if Compose made it.
    pub fn service(&self) -> Option<&str> {
        self.label(SERVICE_LABEL)
    }

    /// Its Compose project, if Compose made it.
    pub fn project(&self) -> Option<&str> {
        self.label(PROJECT_LABEL)
    }

    fn named(&self, name: &str) -> bool {
        self.names.iter().any(|n| n.trim_start_matches('/') == name)
    }

    /// One line for a list of candidates: name, short id, Compose project and service, state.
    fn describe(&self) -> String {
        let mut line = format!("{} ({})", self.name(), &self.id[..self.id.len().min(12)]);
        if let (Some(project), Some(service)) = (self.project(), self.service()) {
            line.push_str(&format!(" service {service} of compose project {project}"));
        }
        if self.state != "running" {
            line.push_str(&format!(" [{}]", self.state));
        }
        line
    }
}

/// Picks the one container that `name` names among `containers`: a container of that name, or
/// a container of the Compose service of that name (in `project` only, when given). Errors
/// (for [`crate::Error::Target`]) say what matched or what exists.
pub fn pick<'a>(
    containers: &'a [EngineContainer],
    name: &str,
    project: Option<&str>,
) -> Result<&'a EngineContainer, String> {
    let in_project = |c: &EngineContainer| project.is_none_or(|p| c.project() == Some(p));
    let matches: Vec<&EngineContainer> = containers
        .iter()
        .filter(|c| in_project(c) && (c.named(name) || c.service() == Some(name)))
        .collect();
    let running: Vec<&EngineContainer> = matches
        .iter()
        .copied()
        .filter(|c| c.state == "running")
        .collect();
    let list = |cs: &[&EngineContainer]| {
        cs.iter()
            .map(|c| c.describe())
            .collect::<Vec<_>>()
            .join("; ")
    };
    match (running.as_slice(), matches.as_slice()) {
        ([one], _) => Ok(one),
        ([], []) => {
            let scope = match project {
                Some(p) => format!(" in compose project {p}"),
                None => String::new(),
            };
            let projects: Vec<&str> = {
                let mut ps: Vec<&str> = containers.iter().filter_map(|c| c.project()).collect();
                ps.sort();
                ps.dedup();
                ps
            };
            let hint = match (project, projects.is_empty()) {
                (Some(_), false) => format!("; compose projects: {}", projects.join(", ")),
                _ => String::new(),
            };
            Err(format!(
                "no container or compose service named `{name}`{scope} ({} containers \
                 listed by the engine{hint}); `docker ps` shows names, or give an id",
                containers.len()
            ))
        }
        ([], stopped) => Err(format!(
            "`{name}` names no running container: {}; start it first",
            list(stopped)
        )),
        (many, _) => {
            let hint = if project.is_none() && many.iter().any(|c| c.project().is_some()) {
                "give the container's own name, its id, or --compose-project PROJECT"
            } else {
                "give the container's own name or its id"
            };
            Err(format!(
                "`{name}` is ambiguous: {} running containers match: {}; {hint}",
                many.len(),
                list(many)
            ))
        }
    }
}

/// Where the engine's API may be listening, in the order tried, and whether the list comes
/// from an environment variable (then it is the only one tried).
pub fn sockets() -> Result<(Vec<PathBuf>, Option<&'static str>), String> {
    sockets_from(|var| std::env::var(var).ok())
}

fn sockets_from(
    env: impl Fn(&str) -> Option<String>,
) -> Result<(Vec<PathBuf>, Option<&'static str>), String> {
    for var in ["DOCKER_HOST", "CONTAINER_HOST"] {
        let Some(value) = env(var).filter(|v| !v.is_empty()) else {
            continue;
        };
        return match value.strip_prefix("unix://") {
            Some(path) => Ok((vec![PathBuf::from(path)], Some(var))),
            None => Err(format!(
                "{var}={value}: only unix:// sockets are supported (chaos must run on the \
                 container's host)"
            )),
        };
    }
    let mut paths = vec![
        PathBuf::from("/var/run/docker.sock"),
        PathBuf::from("/run/podman/podman.sock"),
    ];
    if let Some(dir) = env("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        paths.push(PathBuf::from(dir).join("podman/podman.sock"));
    }
    Ok((paths, None))
}

/// Every container the engine knows (running or not), from the first socket that answers.
/// The error says which sockets were tried and why each failed.
pub fn list_containers() -> Result<Vec<EngineContainer>, String> {
    let (paths, var) = sockets()?;
    let mut tried = Vec::new();
    for path in &paths {
        match get(path, "/containers/json?all=true") {
            Ok(body) => {
                return serde_json::from_slice(&body).map_err(|err| {
                    format!(
                        "the container engine on {} answered with an unexpected container \
                         list: {err}",
                        path.display()
                    )
                });
            }
            Err(err) => tried.push(format!("{}: {err}", path.display())),
        }
    }
    let from = match var {
        Some(var) => format!(" (from ${var})"),
        None => String::new(),
    };
    Err(format!(
        "no container engine reachable to resolve a name{from}: {}; start Docker or Podman \
         (`systemctl start podman.socket`), point DOCKER_HOST at its socket \
         (unix:///path), mount the socket into chaos's container, or give the container's id",
        tried.join("; ")
    ))
}

/// `GET path` on the engine's socket; the body of a 2xx answer.
fn get(socket: &std::path::Path, path: &str) -> Result<Vec<u8>, String> {
    use http_body_util::{BodyExt as _, Empty};
    use hyper::body::Bytes;
    use hyper_util::rt::TokioIo;

    let socket = socket.to_owned();
    let path = path.to_owned();
    // A thread of its own: callers may already be inside a tokio runtime (the daemon resolves
    // in `spawn_blocking`), where starting another one would panic.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| err.to_string())?;
        runtime.block_on(async {
            let stream = tokio::net::UnixStream::connect(&socket)
                .await
                .map_err(|err| err.to_string())?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|err| err.to_string())?;
            tokio::spawn(connection);
            let request = hyper::Request::get(path)
                .header(hyper::header::HOST, "localhost")
                .body(Empty::<Bytes>::new())
                .map_err(|err| err.to_string())?;
            let answer = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                sender.send_request(request),
            )
            .await
            .map_err(|_| "no answer within 10 s".to_owned())?
            .map_err(|err| err.to_string())?;
            let status = answer.status();
            let body = answer
                .into_body()
                .collect()
                .await
                .map_err(|err| err.to_string())?
                .to_bytes();
            if !status.is_success() {
                return Err(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&body).trim()
                ));
            }
            Ok(body.to_vec())
        })
    })
    .join()
    .map_err(|_| "the engine client thread panicked".to_owned())?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(id: char, name: &str, compose: Option<(&str, &str)>) -> EngineContainer {
        EngineContainer {
            id: id.to_string().repeat(64),
            names: vec![format!("/{name}")],
            state: "running".into(),
            labels: compose.map(|(project, service)| {
                BTreeMap::from([
                    (PROJECT_LABEL.to_owned(), project.to_owned()),
                    (SERVICE_LABEL.to_owned(), service.to_owned()),
                ])
            }),
        }
    }

    fn engine() -> Vec<EngineContainer> {
        vec![
            container('a', "redis", None),
            container('b', "shop_cache_1", Some(("shop", "cache"))),
            container('c', "blog_cache_1", Some(("blog", "cache"))),
            container('d', "blog_web_1", Some(("blog", "web"))),
            container('e', "blog_web_2", Some(("blog", "web"))),
        ]
    }

    #[test]
    fn a_container_name_or_a_unique_service_resolves() {
        let all = engine();
        assert_eq!(pick(&all, "redis", None).unwrap().id, "a".repeat(64));
        assert_eq!(pick(&all, "blog_web_2", None).unwrap().id, "e".repeat(64));
        assert_eq!(
            pick(&all, "cache", Some("shop")).unwrap().id,
            "b".repeat(64)
        );
    }

    #[test]
    fn a_service_in_two_projects_is_refused_with_the_candidates() {
        let err = pick(&engine(), "cache", None).unwrap_err();
        for wanted in [
            "ambiguous",
            "shop_cache_1 (bbbbbbbbbbbb) service cache of compose project shop",
            "blog_cache_1",
            "--compose-project",
        ] {
            assert!(err.contains(wanted), "{wanted:?} not in {err}");
        }
        // Two replicas of one service in one project.
        let err = pick(&engine(), "web", Some("blog")).unwrap_err();
        assert!(err.contains("2 running containers"), "{err}");
    }

    #[test]
    fn stopped_and_unknown_names_are_explained() {
        let mut all = engine();
        all[0].state = "exited".into();
        let err = pick(&all, "redis", None).unwrap_err();
        assert!(
            err.contains("no running container") && err.contains("[exited]"),
            "{err}"
        );
        let err = pick(&all, "nginx", None).unwrap_err();
        assert!(
            err.contains("no container or compose service named `nginx`"),
            "{err}"
        );
        let err = pick(&all, "redis", Some("shop")).unwrap_err();
        assert!(
            err.contains("in compose project shop") && err.contains("blog, shop"),
            "{err}"
        );
    }

    #[test]
    fn the_engine_list_parses_as_docker_sends_it() {
        let body = r#"[{"Id":"ffff","Names":["/x"],"Image":"i","State":"running",
            "Labels":{"com.docker.compose.service":"s"},"Ports":[]},
            {"Id":"eeee","Names":["/y"],"State":"exited","Labels":null}]"#;
        let list: Vec<EngineContainer> = serde_json::from_str(body).unwrap();
        assert_eq!(list[0].service(), Some("s"));
        assert_eq!(list[1].service(), None);
    }

    #[test]
    fn the_socket_comes_from_the_environment_when_set() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |var: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == var)
                    .map(|(_, v)| v.to_string())
            }
        };
        let (paths, var) = sockets_from(env(&[("DOCKER_HOST", "unix:///tmp/d.sock")])).unwrap();
        assert_eq!(
            (paths, var),
            (vec![PathBuf::from("/tmp/d.sock")], Some("DOCKER_HOST"))
        );
        let (paths, _) = sockets_from(env(&[("CONTAINER_HOST", "unix:///run/p.sock")])).unwrap();
        assert_eq!(paths, vec![PathBuf::from("/run/p.sock")]);
        let err = sockets_from(env(&[("DOCKER_HOST", "tcp://1.2.3.4:2375")])).unwrap_err();
        assert!(err.contains("only unix://"), "{err}");
        let (paths, var) = sockets_from(env(&[("XDG_RUNTIME_DIR", "/run/user/1000")])).unwrap();
        assert_eq!(var, None);
        assert_eq!(paths[0], PathBuf::from("/var/run/docker.sock"));
        assert_eq!(paths[2], PathBuf::from("/run/user/1000/podman/podman.sock"));
    }
}
