//! The `http`, `process` and `python` providers. Each returns the activity's output as
//! Chaos Toolkit does (`{status, headers, body}`, `{status, stdout, stderr}`, the function's
//! return value) or an error that fails the activity.
use std::{
    io::{Read as _, Write as _},
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use serde_json::{Map, Value, json};

use super::{
    credentials::RunAs,
    format::{HttpSpec, ProcessSpec, PythonSpec},
};

/// Runs an HTTP request.
pub fn http(spec: &HttpSpec) -> Result<Value, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(spec.timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = ureq::http::Request::builder()
        .method(spec.method.as_str())
        .uri(spec.url.as_str());
    for (k, v) in &spec.headers {
        request = request.header(k, v);
    }
    let body: Vec<u8> = match &spec.body {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.clone().into_bytes(),
        Some(other) => {
            if !spec
                .headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                request = request.header("content-type", "application/json");
            }
            other.to_string().into_bytes()
        }
    };
    let request = request
        .body(body)
        .map_err(|err| format!("invalid request to {}: {err}", spec.url))?;
    let mut response = agent
        .run(request)
        .map_err(|err| format!("{} {}: {err}", spec.method, spec.url))?;
    let status = response.status().as_u16();
    let headers: Map<String, Value> = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                Value::String(v.to_str().unwrap_or_default().to_owned()),
            )
        })
        .collect();
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|err| format!("reading the response of {}: {err}", spec.url))?;
    let json_body = headers
        .get("content-type")
        .and_then(Value::as_str)
        .is_some_and(|ct| ct.contains("json"));
    let body = if json_body {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    } else {
        Value::String(text)
    };
    let output = json!({"status": status, "headers": headers, "body": body});
    if let Some(expected) = spec.expected_status
        && expected != status
    {
        return Err(format!(
            "{} {} answered {status}, expected {expected}",
            spec.method, spec.url
        ));
    }
    Ok(output)
}

/// Runs a command to completion, killing it on timeout or when `stop` is set.
/// With `run_as`, as that identity and in its environment (plus the activity's own `env`).
pub fn process(
    spec: &ProcessSpec,
    stop: &AtomicBool,
    run_as: Option<&RunAs>,
) -> Result<Value, String> {
    let mut command = Command::new(&spec.path);
    command.args(&spec.arguments);
    if let Some(run_as) = run_as {
        run_as.apply(&mut command);
    }
    command.envs(spec.env.iter().map(|(k, v)| (k, v)));
    run_command(&mut command, None, spec.timeout, stop)
        .map_err(|err| format!("{}: {err}", spec.path))
}

/// The program python activities run: imports the module, calls the function with the
/// arguments read as JSON on stdin and prints the result as JSON.
const PYTHON_SHIM: &str = r#"
import importlib, json, sys
spec = json.load(sys.stdin)
try:
    module = importlib.import_module(spec["module"])
except ImportError as err:
    print("cannot import python module %s: %s (is the extension installed for this python3? pip install ...)" % (spec["module"], err), file=sys.stderr)
    sys.exit(3)
func = getattr(module, spec["func"], None)
if func is None:
    print("python module %s has no function %s" % (spec["module"], spec["func"]), file=sys.stderr)
    sys.exit(3)
result = func(**spec["arguments"])
sys.stdout.write("\n" + json.dumps(result, default=str))
"#;

/// Calls `module.func(**arguments)` in the system's python3 (as `run_as`, if given).
pub fn python(
    spec: &PythonSpec,
    stop: &AtomicBool,
    run_as: Option<&RunAs>,
) -> Result<Value, String> {
    let input = json!({"module": spec.module, "func": spec.func, "arguments": spec.arguments});
    let mut command = Command::new("python3");
    command.args(["-c", PYTHON_SHIM]);
    if let Some(run_as) = run_as {
        run_as.apply(&mut command);
    }
    let out = run_command(&mut command, Some(input.to_string()), None, stop)
    .map_err(|err| {
        if err.contains("No such file") || err.contains("not found") {
            "python3 is not installed (not found on PATH): the python provider runs \
             Chaos Toolkit extensions in the system's python3; install python3 or use a process provider"
                .to_owned()
        } else {
            format!("python3: {err}")
        }
    })?;
    let status = out["status"].as_i64().unwrap_or(-1);
    let stdout = out["stdout"].as_str().unwrap_or_default();
    let stderr = out["stderr"].as_str().unwrap_or_default().trim();
    if status != 0 {
        let last = stderr.lines().last().unwrap_or("no message");
        return Err(format!("{}.{} failed: {last}", spec.module, spec.func));
    }
    let last = stdout.lines().last().unwrap_or("null");
    serde_json::from_str(last)
        .map_err(|err| format!("{}.{} returned no JSON: {err}", spec.module, spec.func))
}

fn run_command(
    command: &mut Command,
    stdin: Option<String>,
    timeout: Option<Duration>,
    stop: &AtomicBool,
) -> Result<Value, String> {
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| err.to_string())?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    // Read both pipes while waiting, so that a chatty command cannot block on a full pipe.
    let mut out_pipe = child.stdout.take().expect("piped");
    let mut err_pipe = child.stderr.take().expect("piped");
    let out_reader = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out_pipe.read_to_end(&mut s);
        s
    });
    let err_reader = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err_pipe.read_to_end(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|err| err.to_string())? {
            break status;
        }
        let timed_out = timeout.is_some_and(|t| started.elapsed() >= t);
        if timed_out || stop.load(Ordering::Relaxed) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(if timed_out {
                format!("timed out after {:?}", timeout.unwrap_or_default())
            } else {
                "interrupted".into()
            });
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    use std::os::unix::process::ExitStatusExt as _;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Ok(json!({"status": code, "stdout": stdout, "stderr": stderr}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_output_has_status_and_streams() {
        let stop = AtomicBool::new(false);
        let out = process(
            &ProcessSpec {
                path: "sh".into(),
                arguments: vec!["-c".into(), "echo out; echo err >&2; exit 3".into()],
                timeout: None,
                env: Vec::new(),
            },
            &stop,
            None,
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"status": 3, "stdout": "out\n", "stderr": "err\n"})
        );
    }

    #[test]
    fn process_timeouts_kill() {
        let stop = AtomicBool::new(false);
        let err = process(
            &ProcessSpec {
                path: "sleep".into(),
                arguments: vec!["10".into()],
                timeout: Some(Duration::from_millis(100)),
                env: Vec::new(),
            },
            &stop,
            None,
        )
        .unwrap_err();
        assert!(err.contains("timed out"), "{err}");
    }

    #[test]
    fn python_calls_module_functions_or_says_what_is_missing() {
        if Command::new("python3").arg("-V").output().is_err() {
            return;
        }
        let stop = AtomicBool::new(false);
        let mut args = Map::new();
        args.insert("path".into(), json!("a/b"));
        let out = python(
            &PythonSpec {
                module: "os.path".into(),
                func: "basename".into(),
                arguments: {
                    let mut a = Map::new();
                    a.insert("p".into(), json!("/x/y"));
                    a
                },
            },
            &stop,
            None,
        )
        .unwrap();
        assert_eq!(out, json!("y"));
        let err = python(
            &PythonSpec {
                module: "no_such_chaos_module".into(),
                func: "f".into(),
                arguments: args,
            },
            &stop,
            None,
        )
        .unwrap_err();
        assert!(
            err.contains("cannot import python module no_such_chaos_module"),
            "{err}"
        );
    }
}
