//! Whether a probe's output is within its tolerance, with Chaos Toolkit's semantics:
//!
//! - a boolean or string tolerance: the output equals it;
//! - a number: the output equals it, or, for an output with a `status` (http, process), the
//!   status does;
//! - a list: the output (or its `status`) is one of the values;
//! - `{type: range, range: [low, high], target}`: low <= value <= high;
//! - `{type: regex, pattern, target}`: the pattern is found in the value (Python's
//!   `re.search`);
//! - `{type: jsonpath, path, target, expect, count}`: the path's matches equal `expect`
//!   (a list, or one value compared with every match), or there are `count` of them, or, with
//!   neither, there is at least one;
//! - `{type: probe, ...}`: a probe given the output as `arguments.value` succeeds (run by the
//!   runner, see [`Verdict::NeedsProbe`]).
//!
//! `target` picks a field of the output (`body`, `stdout`, `status`...); an http body that is
//! JSON text is parsed first.
use serde_json::Value;
use serde_json_path::JsonPath;

/// The answer for one probe output.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Within tolerance (true) or not (false), and why not.
    Decided(bool, Option<String>),
    /// A probe tolerance: run this probe; within tolerance when it succeeds.
    NeedsProbe(Value),
}

/// Checks `output` against `tolerance`.
pub fn check(tolerance: &Value, output: &Value) -> Verdict {
    let decided = |ok: bool, why: String| Verdict::Decided(ok, (!ok).then_some(why));
    match tolerance {
        Value::Bool(_) | Value::String(_) => decided(
            output == tolerance,
            format!("{} is not {}", brief(output), tolerance),
        ),
        Value::Number(n) => {
            let v = output.get("status").unwrap_or(output);
            decided(numbers_equal(v, n), format!("{} is not {n}", brief(v)))
        }
        Value::Array(allowed) => {
            let v = if allowed.iter().all(Value::is_number) {
                output.get("status").unwrap_or(output)
            } else {
                output
            };
            let ok = allowed.iter().any(|a| match a {
                Value::Number(n) => numbers_equal(v, n),
                other => other == v,
            });
            decided(ok, format!("{} is not one of {tolerance}", brief(v)))
        }
        Value::Object(t) => {
            let value = targeted(output, t.get("target"));
            match t.get("type").and_then(Value::as_str) {
                Some("range") => {
                    let range: Vec<f64> = t
                        .get("range")
                        .and_then(Value::as_array)
                        .map(|r| r.iter().filter_map(Value::as_f64).collect())
                        .unwrap_or_default();
                    let n = value
                        .as_f64()
                        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()));
                    match (n, range.as_slice()) {
                        (Some(n), [low, high]) => decided(
                            *low <= n && n <= *high,
                            format!("{n} is outside [{low}, {high}]"),
                        ),
                        _ => decided(false, format!("{} is not a number", brief(&value))),
                    }
                }
                Some("regex") => {
                    let pattern = t.get("pattern").and_then(Value::as_str).unwrap_or_default();
                    let text = match &value {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    match regex::Regex::new(pattern) {
                        Ok(rx) => decided(
                            rx.is_match(&text),
                            format!("/{pattern}/ not found in {}", brief(&value)),
                        ),
                        Err(err) => decided(false, format!("bad pattern: {err}")),
                    }
                }
                Some("jsonpath") => jsonpath(t, &value),
                Some("probe") => Verdict::NeedsProbe(tolerance.clone()),
                _ => decided(false, "unknown tolerance type".into()),
            }
        }
        Value::Null => decided(output.is_null(), format!("{} is not null", brief(output))),
    }
}

fn jsonpath(t: &serde_json::Map<String, Value>, value: &Value) -> Verdict {
    let decided = |ok: bool, why: String| Verdict::Decided(ok, (!ok).then_some(why));
    let path = t.get("path").and_then(Value::as_str).unwrap_or_default();
    let Ok(jp) = JsonPath::parse(path) else {
        return decided(false, format!("bad JSONPath {path}"));
    };
    let found: Vec<Value> = jp.query(value).all().into_iter().cloned().collect();
    if let Some(count) = t.get("count").and_then(Value::as_u64) {
        return decided(
            found.len() as u64 == count,
            format!("{path} matched {} times, not {count}", found.len()),
        );
    }
    match t.get("expect") {
        None => decided(!found.is_empty(), format!("{path} matched nothing")),
        Some(Value::Array(expect)) => decided(
            &found == expect,
            format!(
                "{path} gave {}, not {}",
                Value::Array(found.clone()),
                Value::Array(expect.clone())
            ),
        ),
        Some(expect) => decided(
            !found.is_empty() && found.iter().all(|f| f == expect),
            format!("{path} gave {}, not {expect}", Value::Array(found.clone())),
        ),
    }
}

/// The value a `target` names; an http body that is JSON text is parsed.
fn targeted(output: &Value, target: Option<&Value>) -> Value {
    let v = match target.and_then(Value::as_str) {
        Some(key) => output.get(key).unwrap_or(output),
        None => output,
    };
    match v {
        Value::String(s) if s.trim_start().starts_with(['{', '[']) => {
            serde_json::from_str(s).unwrap_or_else(|_| v.clone())
        }
        other => other.clone(),
    }
}

fn numbers_equal(v: &Value, n: &serde_json::Number) -> bool {
    match (v.as_f64(), n.as_f64()) {
        (Some(a), Some(b)) => a == b && !v.is_boolean(),
        _ => false,
    }
}

fn brief(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}...", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(t: Value, out: Value) -> bool {
        match check(&t, &out) {
            Verdict::Decided(ok, _) => ok,
            Verdict::NeedsProbe(_) => panic!("probe"),
        }
    }

    #[test]
    fn exact_values() {
        assert!(ok(json!(true), json!(true)));
        assert!(!ok(json!(true), json!(false)));
        assert!(!ok(json!(true), json!(1)));
        assert!(ok(json!("up"), json!("up")));
        assert!(ok(json!(200), json!(200)));
        // An http or process output is judged by its status.
        assert!(ok(json!(200), json!({"status": 200, "body": "x"})));
        assert!(ok(
            json!(0),
            json!({"status": 0, "stdout": "", "stderr": ""})
        ));
        assert!(!ok(
            json!(0),
            json!({"status": 1, "stdout": "", "stderr": ""})
        ));
    }

    #[test]
    fn lists_of_allowed_values() {
        assert!(ok(json!([200, 204]), json!({"status": 204})));
        assert!(!ok(json!([200, 204]), json!({"status": 503})));
        assert!(ok(json!(["a", "b"]), json!("b")));
    }

    #[test]
    fn ranges_are_inclusive() {
        let t = json!({"type": "range", "range": [1, 5]});
        assert!(ok(t.clone(), json!(1)) && ok(t.clone(), json!(5)) && ok(t.clone(), json!(3.5)));
        assert!(!ok(t.clone(), json!(5.01)) && !ok(t, json!("x")));
        let t = json!({"type": "range", "range": [200, 299], "target": "status"});
        assert!(ok(t.clone(), json!({"status": 204})) && !ok(t, json!({"status": 503})));
    }

    #[test]
    fn regex_searches_anywhere() {
        let t = json!({"type": "regex", "pattern": "ok", "target": "stdout"});
        assert!(ok(
            t.clone(),
            json!({"status": 0, "stdout": "all ok here\n"})
        ));
        assert!(!ok(t, json!({"status": 0, "stdout": "failed\n"})));
        assert!(ok(json!({"type": "regex", "pattern": "^up$"}), json!("up")));
    }

    #[test]
    fn jsonpath_expect_count_and_presence() {
        let body = json!({"status": 200, "body": "{\"status\": \"ok\", \"items\": [1, 2]}"});
        let t = |extra: Value| {
            let mut t = json!({"type": "jsonpath", "target": "body"});
            t.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            t
        };
        assert!(ok(
            t(json!({"path": "$.status", "expect": "ok"})),
            body.clone()
        ));
        assert!(!ok(
            t(json!({"path": "$.status", "expect": "down"})),
            body.clone()
        ));
        assert!(ok(
            t(json!({"path": "$.items[*]", "expect": [1, 2]})),
            body.clone()
        ));
        assert!(ok(
            t(json!({"path": "$.items[*]", "count": 2})),
            body.clone()
        ));
        assert!(ok(t(json!({"path": "$.items"})), body.clone()));
        assert!(!ok(t(json!({"path": "$.nothing"})), body));
    }

    #[test]
    fn probe_tolerances_are_delegated() {
        let t =
            json!({"type": "probe", "name": "p", "provider": {"type": "process", "path": "true"}});
        assert_eq!(check(&t, &json!(1)), Verdict::NeedsProbe(t.clone()));
    }
}
