//! `configuration` and `secrets` resolution and `${name}` substitution, as in Chaos Toolkit.
//!
//! A configuration entry is a literal value or `{type: env, key: NAME, default: ...,
//! env_var_type: int|float|bool|str|json}`; secrets are scopes of such entries (`{type: env,
//! key}` or literals). In strings of the experiment, `${name}` is replaced by the entry's
//! value; a string that is exactly `${name}` takes the value with its type. Unknown names are
//! left as written, as Chaos Toolkit does.
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::document::{Document, Problem, field};

static VAR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_.\-]*)\}").expect("static regex"));

/// Resolved configuration and secrets: the names `${...}` can use.
#[derive(Clone, Debug, Default)]
pub struct Variables {
    values: Map<String, Value>,
}

impl Variables {
    /// Resolves the `configuration` and `secrets` sections of `doc`, reading the environment
    /// through `env`.
    pub fn resolve(
        doc: &Document,
        env: &dyn Fn(&str) -> Option<String>,
        problems: &mut Vec<Problem>,
    ) -> Variables {
        let mut values = Map::new();
        if let Some(config) = doc.value.get("configuration") {
            match config {
                Value::Object(entries) => {
                    for (name, entry) in entries {
                        let path = field("configuration", name);
                        if let Some(v) = resolve_entry(doc, &path, entry, env, problems) {
                            // Entries may use the ones above them.
                            let v = Variables::from_map(values.clone()).substitute(&v);
                            values.insert(name.clone(), v);
                        }
                    }
                }
                Value::Null => {}
                other => problems.push(doc.problem(
                    "configuration",
                    other.to_string(),
                    "a mapping of names to values or {type: env, key: NAME}",
                )),
            }
        }
        if let Some(secrets) = doc.value.get("secrets") {
            match secrets {
                Value::Object(scopes) => {
                    for (scope, entries) in scopes {
                        let spath = field("secrets", scope);
                        let Value::Object(entries) = entries else {
                            problems.push(doc.problem(
                                &spath,
                                entries.to_string(),
                                "a scope: a mapping of secret names to values or {type: env, key: NAME}",
                            ));
                            continue;
                        };
                        for (name, entry) in entries {
                            let path = field(&spath, name);
                            if let Some(v) = resolve_entry(doc, &path, entry, env, problems) {
                                values.insert(name.clone(), v);
                            }
                        }
                    }
                }
                Value::Null => {}
                other => problems.push(doc.problem(
                    "secrets",
                    other.to_string(),
                    "a mapping of scopes, each a mapping of secret names",
                )),
            }
        }
        Variables { values }
    }

    /// Variables from a map, for tests.
    pub fn from_map(values: Map<String, Value>) -> Variables {
        Variables { values }
    }

    /// `value` with `${name}` replaced in every string, recursively.
    pub fn substitute(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => self.substitute_str(s),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.substitute(v)).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.substitute(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn substitute_str(&self, s: &str) -> Value {
        if let Some(caps) = VAR.captures(s)
            && caps.get(0).is_some_and(|m| m.as_str() == s)
            && let Some(v) = self.values.get(&caps[1])
        {
            return v.clone();
        }
        let out = VAR.replace_all(s, |caps: &regex::Captures<'_>| {
            match self.values.get(&caps[1]) {
                Some(Value::String(v)) => v.clone(),
                Some(v) => v.to_string(),
                None => caps[0].to_owned(),
            }
        });
        Value::String(out.into_owned())
    }
}

fn resolve_entry(
    doc: &Document,
    path: &str,
    entry: &Value,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) -> Option<Value> {
    let Value::Object(spec) = entry else {
        return Some(entry.clone());
    };
    let Some(kind) = spec.get("type") else {
        return Some(entry.clone());
    };
    if kind != "env" {
        problems.push(doc.problem(
            &field(path, "type"),
            kind.to_string(),
            "`env` (read from an environment variable); other entry types are not supported",
        ));
        return None;
    }
    for key in spec.keys() {
        if !["type", "key", "default", "env_var_type"].contains(&key.as_str()) {
            problems.push(doc.problem(
                &format!("{}#key", field(path, key)),
                key.clone(),
                "unknown key; an env entry has type, key, default, env_var_type",
            ));
        }
    }
    let Some(Value::String(key)) = spec.get("key") else {
        problems.push(doc.problem(
            path,
            String::new(),
            "an env entry needs `key`: the name of the environment variable",
        ));
        return None;
    };
    let raw = match (env(key), spec.get("default")) {
        (Some(v), _) => v,
        (None, Some(default)) => return Some(default.clone()),
        (None, None) => {
            problems.push(doc.problem(
                path,
                key.clone(),
                format!("environment variable {key} is not set and the entry has no `default`"),
            ));
            return None;
        }
    };
    let kind = spec
        .get("env_var_type")
        .and_then(Value::as_str)
        .unwrap_or("str");
    let parsed = match kind {
        "str" => Some(Value::String(raw.clone())),
        "int" => raw.trim().parse::<i64>().ok().map(Value::from),
        "float" => raw.trim().parse::<f64>().ok().map(Value::from),
        "bool" => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(Value::Bool(true)),
            "false" | "0" | "no" => Some(Value::Bool(false)),
            _ => None,
        },
        "json" => serde_json::from_str(&raw).ok(),
        _ => {
            problems.push(doc.problem(
                &field(path, "env_var_type"),
                kind.to_owned(),
                "one of str, int, float, bool, json",
            ));
            return None;
        }
    };
    if parsed.is_none() {
        problems.push(doc.problem(
            path,
            raw,
            format!("environment variable {key} does not hold a {kind}"),
        ));
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(yaml: &str) -> Document {
        Document::parse("e.yaml", yaml, false).unwrap()
    }

    #[test]
    fn env_entries_and_literals_resolve() {
        let d = doc(
            "configuration:\n  host: localhost\n  base: \"http://${host}\"\n  port: {type: env, key: PORT, env_var_type: int}\n  \
             missing: {type: env, key: NOPE, default: dflt}\nsecrets:\n  s:\n    token: {type: env, key: TOKEN}\n",
        );
        let env = |k: &str| match k {
            "PORT" => Some("8080".to_owned()),
            "TOKEN" => Some("t0k".to_owned()),
            _ => None,
        };
        let mut problems = Vec::new();
        let vars = Variables::resolve(&d, &env, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            vars.substitute(&json!({"url": "${base}:${port}/", "p": "${port}", "x": ["${missing}", "${token}", "${unknown}"]})),
            json!({"url": "http://localhost:8080/", "p": 8080, "x": ["dflt", "t0k", "${unknown}"]})
        );
    }

    #[test]
    fn unset_env_without_default_is_a_located_problem() {
        let d = doc("title: t\nconfiguration:\n  port: {type: env, key: PORT}\n");
        let mut problems = Vec::new();
        Variables::resolve(&d, &|_| None, &mut problems);
        assert_eq!(problems.len(), 1);
        let p = problems[0].to_string();
        assert!(
            p.starts_with("e.yaml:3:9: configuration.port: `PORT`"),
            "{p}"
        );
    }

    #[test]
    fn env_values_must_match_their_type() {
        let d = doc("configuration:\n  port: {type: env, key: PORT, env_var_type: int}\n");
        let mut problems = Vec::new();
        Variables::resolve(&d, &|_| Some("eighty".into()), &mut problems);
        assert!(
            problems[0].to_string().contains("does not hold a int"),
            "{problems:?}"
        );
    }
}
