//! The demo service experiments run against: `chaos-http-server` in its own cgroup, whose
//! `/health` connects to a backend outside every target, so a fault on the service's
//! `connect` turns its health red while the test process (a bystander) still reaches it.
use std::{
    fs,
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    process::{Child, Command},
    thread,
};

use crate::{TestCgroup, scratch, wait_for_file, workload_bin};

/// The HTTP service in its own cgroup, and the backend it depends on.
pub struct HttpService {
    child: Child,
    /// The service's cgroup, the experiments' target.
    pub cgroup: TestCgroup,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The backend's `address:port`, which `/health` connects to.
    pub backend: String,
}

impl HttpService {
    /// Starts the backend (a listener thread of this process) and the service in cgroup `name`.
    pub fn start(name: &str) -> HttpService {
        let backend = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        let backend_addr = backend.local_addr().unwrap().to_string();
        thread::spawn(move || for _ in backend.incoming() {});
        let cgroup = TestCgroup::new(name);
        let port_file = scratch(&format!("{name}-port"));
        let server = workload_bin().with_file_name("chaos-http-server");
        let child = cgroup.spawn(Command::new(server).args([
            "--port-file",
            port_file.to_str().unwrap(),
            "--backend",
            &backend_addr,
        ]));
        wait_for_file(&port_file);
        let port = fs::read_to_string(&port_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        HttpService {
            child,
            cgroup,
            port,
            backend: backend_addr,
        }
    }

    /// The status `GET /health` answers, asked from this (untargeted) process.
    pub fn health(&self) -> u16 {
        let mut conn = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to service");
        conn.write_all(b"GET /health HTTP/1.0\r\n\r\n").unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).unwrap();
        response.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Drop for HttpService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
