//! A small HTTP service for the experiment tests: `GET /health` connects to a backend (as a
//! service checking its database would) and answers 200 `{"status": "ok"}` when that works,
//! 503 `{"status": "degraded", "error": ...}` when it does not. Any other path answers 200.
//!
//! `chaos-http-server --port-file FILE [--backend HOST:PORT]`: listens on 127.0.0.1 on a free
//! port and writes the port to FILE once listening.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    thread,
    time::Duration,
};

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Where to write the listening port.
    #[arg(long)]
    port_file: PathBuf,
    /// The backend `/health` connects to.
    #[arg(long)]
    backend: Option<SocketAddr>,
}

fn health(backend: Option<SocketAddr>) -> (u16, String) {
    let Some(addr) = backend else {
        return (200, r#"{"status": "ok"}"#.into());
    };
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(_) => (200, r#"{"status": "ok"}"#.into()),
        Err(err) => (
            503,
            format!(
                r#"{{"status": "degraded", "error": "{}"}}"#,
                err.to_string().replace('"', "'")
            ),
        ),
    }
}

fn serve(mut conn: TcpStream, backend: Option<SocketAddr>) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Skip the headers.
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {}
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = if path == "/health" {
        health(backend)
    } else {
        (200, r#"{"status": "ok"}"#.into())
    };
    let reason = if status == 200 {
        "OK"
    } else {
        "Service Unavailable"
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn main() {
    let args = Args::parse();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let tmp = args.port_file.with_extension("tmp");
    std::fs::write(&tmp, port.to_string()).expect("port file");
    std::fs::rename(&tmp, &args.port_file).expect("port file");
    for conn in listener.incoming().flatten() {
        let backend = args.backend;
        thread::spawn(move || serve(conn, backend));
    }
}
