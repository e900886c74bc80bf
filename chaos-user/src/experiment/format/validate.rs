//! Validation of an experiment document.
//!
//! Validation collects every problem at once, each with its location and field path; an
//! experiment with any problem never runs.
use std::time::Duration;

use serde_json::{Map, Value};

use super::*;
use crate::experiment::{
    document::{Document, Invalid, Problem, field},
    substitution::Variables,
};

/// The most seconds a timeout, pause or frequency may be: a year.
const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

const TOP_KEYS: &[&str] = &[
    "version",
    "title",
    "description",
    "tags",
    "contributions",
    "configuration",
    "secrets",
    "steady-state-hypothesis",
    "method",
    "rollbacks",
    "runtime",
    "controls",
    "extensions",
];
const ACTIVITY_KEYS: &[&str] = &[
    "type",
    "name",
    "provider",
    "pauses",
    "background",
    "tolerance",
    "controls",
    "secrets",
    "configuration",
    "ref",
];

impl Experiment {
    /// Validates a parsed document, reading `configuration` env entries through `env`.
    pub fn from_document(
        doc: &Document,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Experiment, Invalid> {
        let mut v = Validator {
            doc,
            problems: Vec::new(),
        };
        let vars = Variables::resolve(doc, env, &mut v.problems);
        let Value::Object(top) = &doc.value else {
            v.problem(
                "",
                &doc.value,
                "a mapping with at least `title` and `method`",
            );
            return Err(Invalid(v.problems));
        };
        v.unknown_keys("", top, TOP_KEYS);
        v.refuse_controls("", top);
        let title = v.string(top, "", "title", true).unwrap_or_default();
        let description = v.string(top, "", "description", false).unwrap_or_default();
        let tags = match top.get("tags") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, t)| match t {
                    Value::String(s) => Some(s.clone()),
                    other => {
                        v.problem(&format!("tags[{i}]"), other, "a string");
                        None
                    }
                })
                .collect(),
            Some(other) => {
                v.problem("tags", other, "a list of strings");
                Vec::new()
            }
        };

        let mut named: Vec<(String, Value)> = Vec::new();
        let (mut hypothesis_title, mut hypothesis) = (None, Vec::new());
        match top.get("steady-state-hypothesis") {
            None | Some(Value::Null) => {}
            Some(Value::Object(ssh)) => {
                let path = "steady-state-hypothesis";
                v.unknown_keys(path, ssh, &["title", "probes", "controls"]);
                v.refuse_controls(path, ssh);
                hypothesis_title = v.string(ssh, path, "title", true);
                hypothesis = v.activities(
                    ssh.get("probes"),
                    &field(path, "probes"),
                    &vars,
                    &mut named,
                    true,
                );
            }
            Some(other) => {
                v.problem(
                    "steady-state-hypothesis",
                    other,
                    "a mapping with `title` and `probes`",
                );
            }
        }
        let method = match top.get("method") {
            None => {
                v.problems.push(doc.problem(
                    "method",
                    String::new(),
                    "missing: an experiment needs a `method`, a list of actions and probes",
                ));
                Vec::new()
            }
            Some(m) => v.activities(Some(m), "method", &vars, &mut named, false),
        };
        let rollbacks = v.activities(top.get("rollbacks"), "rollbacks", &vars, &mut named, false);
        let runtime = v.runtime(top.get("runtime"));
        if !v.problems.is_empty() {
            return Err(Invalid(v.problems));
        }
        let mut raw = doc.value.clone();
        if let Value::Object(map) = &mut raw {
            // Secrets must not land in a journal.
            map.remove("secrets");
        }
        Ok(Experiment {
            title,
            description,
            tags,
            hypothesis_title,
            hypothesis,
            method,
            rollbacks,
            runtime,
            raw,
        })
    }
}

struct Validator<'d> {
    doc: &'d Document,
    problems: Vec<Problem>,
}

fn show(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Validator<'_> {
    fn problem(&mut self, path: &str, value: &Value, expected: impl Into<String>) {
        self.problems
            .push(self.doc.problem(path, show(value), expected));
    }

    /// Refuses `controls`, which the format allows at the top, in the steady-state hypothesis
    /// and on each activity: Chaos Toolkit runs them as Python modules around each step, and
    /// chaos does not, so running the experiment without them would silently change it.
    fn refuse_controls(&mut self, path: &str, map: &Map<String, Value>) {
        if map.contains_key("controls") {
            self.problems.push(self.doc.problem(
                &format!("{}#key", field(path, "controls")),
                "controls".into(),
                "not run by chaos: Chaos Toolkit controls are Python modules called around each \
                 step, which chaos does not load; remove `controls` to run the experiment \
                 without them, or run it with chaostoolkit",
            ));
        }
    }

    fn unknown_keys(&mut self, path: &str, map: &Map<String, Value>, known: &[&str]) {
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                let p = field(path, key);
                self.problems.push(self.doc.problem(
                    &format!("{p}#key"),
                    key.clone(),
                    format!("unknown key; allowed here: {}", known.join(", ")),
                ));
            }
        }
    }

    fn string(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        key: &str,
        required: bool,
    ) -> Option<String> {
        match map.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            None if !required => None,
            None => {
                self.problems.push(self.doc.problem(
                    &field(path, key),
                    String::new(),
                    "missing: a string is required here",
                ));
                None
            }
            Some(other) => {
                self.problem(&field(path, key), other, "a string");
                None
            }
        }
    }

    fn seconds(&mut self, value: Option<&Value>, path: &str) -> Option<Duration> {
        match value {
            None | Some(Value::Null) => None,
            // Bounded: a timeout or pause is added to `Instant::now()`, which panics on
            // overflow, and `Duration::from_secs_f64` panics past u64::MAX seconds (found by
            // the experiment_json fuzz target: `"timeout": 166666666666666666666666665`).
            Some(Value::Number(n))
                if n.as_f64().is_some_and(|s| (0.0..=MAX_SECONDS).contains(&s)) =>
            {
                Some(Duration::from_secs_f64(n.as_f64().unwrap_or(0.0)))
            }
            Some(other) => {
                self.problem(path, other, "a number of seconds, 0 to 31536000 (a year)");
                None
            }
        }
    }

    fn activities(
        &mut self,
        value: Option<&Value>,
        path: &str,
        vars: &Variables,
        named: &mut Vec<(String, Value)>,
        hypothesis: bool,
    ) -> Vec<Activity> {
        let items = match value {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.problem(path, other, "a list of activities (actions and probes)");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ipath = format!("{path}[{i}]");
            let item = match item.get("ref") {
                Some(Value::String(name)) => match named.iter().find(|(n, _)| n == name) {
                    Some((_, activity)) => {
                        let mut activity = activity.clone();
                        if !hypothesis && let Value::Object(map) = &mut activity {
                            // A steady-state probe reused in the method only observes.
                            map.remove("tolerance");
                        }
                        activity
                    }
                    None => {
                        self.problem(
                            &field(&ipath, "ref"),
                            &Value::String(name.clone()),
                            "the name of an activity defined earlier in the experiment",
                        );
                        continue;
                    }
                },
                _ => item.clone(),
            };
            let substituted = vars.substitute(&item);
            if let Some(activity) = self.activity(&substituted, &ipath, vars, hypothesis) {
                named.push((activity.name.clone(), item));
                out.push(activity);
            }
        }
        out
    }

    fn activity(
        &mut self,
        value: &Value,
        path: &str,
        vars: &Variables,
        hypothesis: bool,
    ) -> Option<Activity> {
        let Value::Object(map) = value else {
            self.problem(
                path,
                value,
                "an activity: a mapping with type, name and provider",
            );
            return None;
        };
        self.unknown_keys(path, map, ACTIVITY_KEYS);
        self.refuse_controls(path, map);
        let kind = match map.get("type") {
            Some(Value::String(s)) if s == "action" => Some(ActivityKind::Action),
            Some(Value::String(s)) if s == "probe" => Some(ActivityKind::Probe),
            Some(other) => {
                self.problem(&field(path, "type"), other, "`action` or `probe`");
                None
            }
            None => {
                self.problems.push(self.doc.problem(
                    &field(path, "type"),
                    String::new(),
                    "missing: `action` or `probe`",
                ));
                None
            }
        };
        let name = self.string(map, path, "name", true);
        let provider = match map.get("provider") {
            Some(Value::Object(p)) => self.provider(p, &field(path, "provider")),
            Some(other) => {
                self.problem(
                    &field(path, "provider"),
                    other,
                    "a mapping with `type`: http, process, python or chaos",
                );
                None
            }
            None => {
                self.problems.push(self.doc.problem(
                    &field(path, "provider"),
                    String::new(),
                    "missing: a provider (type: http, process, python or chaos)",
                ));
                None
            }
        };
        let (mut pause_before, mut pause_after) = (Duration::ZERO, Duration::ZERO);
        match map.get("pauses") {
            None | Some(Value::Null) => {}
            Some(Value::Object(p)) => {
                let ppath = field(path, "pauses");
                self.unknown_keys(&ppath, p, &["before", "after"]);
                pause_before = self
                    .seconds(p.get("before"), &field(&ppath, "before"))
                    .unwrap_or_default();
                pause_after = self
                    .seconds(p.get("after"), &field(&ppath, "after"))
                    .unwrap_or_default();
            }
            Some(other) => self.problem(
                &field(path, "pauses"),
                other,
                "a mapping with `before` and/or `after` in seconds",
            ),
        }
        let background = match map.get("background") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.problem(&field(path, "background"), other, "true or false");
                false
            }
        };
        let tolerance = map.get("tolerance").cloned();
        let mut tolerance_probe = None;
        if hypothesis {
            match &tolerance {
                None => self.problems.push(self.doc.problem(
                    &field(path, "tolerance"),
                    String::new(),
                    "missing: a steady-state probe needs a tolerance",
                )),
                Some(t) => tolerance_probe = self.tolerance(t, &field(path, "tolerance"), vars),
            }
            if kind == Some(ActivityKind::Action) {
                self.problem(
                    &field(path, "type"),
                    &Value::String("action".into()),
                    "`probe`: the steady-state hypothesis only observes",
                );
            }
        } else if tolerance.is_some() {
            self.problems.push(self.doc.problem(
                &format!("{}#key", field(path, "tolerance")),
                "tolerance".into(),
                "a tolerance belongs to steady-state-hypothesis probes only",
            ));
        }
        if matches!(provider, Some(Provider::Chaos(_))) && kind == Some(ActivityKind::Probe) {
            self.problem(
                &field(path, "type"),
                &Value::String("probe".into()),
                "`action`: a chaos provider starts a fault",
            );
        }
        Some(Activity {
            kind: kind?,
            name: name?,
            provider: provider?,
            pause_before,
            pause_after,
            background,
            tolerance,
            tolerance_probe,
            raw: value.clone(),
        })
    }

    fn provider(&mut self, p: &Map<String, Value>, path: &str) -> Option<Provider> {
        let kind = match p.get("type") {
            Some(Value::String(s)) => s.as_str(),
            other => {
                let v = other.cloned().unwrap_or(Value::Null);
                self.problem(
                    &field(path, "type"),
                    &v,
                    "one of http, process, python, chaos",
                );
                return None;
            }
        };
        match kind {
            "http" => {
                self.unknown_keys(
                    path,
                    p,
                    &[
                        "type",
                        "url",
                        "method",
                        "headers",
                        "arguments",
                        "timeout",
                        "expected_status",
                        "verify_tls",
                        "secrets",
                    ],
                );
                let url = self.string(p, path, "url", true);
                let method = self
                    .string(p, path, "method", false)
                    .unwrap_or_else(|| "GET".into())
                    .to_ascii_uppercase();
                let mut headers = Vec::new();
                match p.get("headers") {
                    None | Some(Value::Null) => {}
                    Some(Value::Object(h)) => {
                        for (k, val) in h {
                            headers.push((k.clone(), show(val)));
                        }
                    }
                    Some(other) => self.problem(
                        &field(path, "headers"),
                        other,
                        "a mapping of header names to values",
                    ),
                }
                let timeout = self
                    .seconds(p.get("timeout"), &field(path, "timeout"))
                    .unwrap_or(Duration::from_secs(30));
                let expected_status = match p.get("expected_status") {
                    None | Some(Value::Null) => None,
                    Some(Value::Number(n))
                        if n.as_u64().is_some_and(|s| (100..=599).contains(&s)) =>
                    {
                        n.as_u64().map(|s| s as u16)
                    }
                    Some(other) => {
                        self.problem(
                            &field(path, "expected_status"),
                            other,
                            "an HTTP status in 100..=599",
                        );
                        None
                    }
                };
                Some(Provider::Http(HttpSpec {
                    url: url?,
                    method,
                    headers,
                    body: p.get("arguments").cloned(),
                    timeout,
                    expected_status,
                }))
            }
            "process" => {
                self.unknown_keys(
                    path,
                    p,
                    &["type", "path", "arguments", "timeout", "secrets"],
                );
                let program = self.string(p, path, "path", true);
                let arguments = match p.get("arguments") {
                    None | Some(Value::Null) => Vec::new(),
                    // POSIX shell words, as Chaos Toolkit's `shlex.split`: quotes group and
                    // are removed (`"{\"a\": 3}"` is the one word `{a: 3}`).
                    Some(Value::String(s)) => match shlex::split(s) {
                        Some(words) => words,
                        None => {
                            self.problem(
                                &field(path, "arguments"),
                                &Value::String(s.clone()),
                                "shell words with balanced quotes (split as POSIX shell words, as Chaos Toolkit does)",
                            );
                            Vec::new()
                        }
                    },
                    Some(Value::Array(items)) => items.iter().map(show).collect(),
                    Some(other) => {
                        self.problem(
                            &field(path, "arguments"),
                            other,
                            "a string or a list of arguments",
                        );
                        Vec::new()
                    }
                };
                let timeout = self.seconds(p.get("timeout"), &field(path, "timeout"));
                Some(Provider::Process(ProcessSpec {
                    path: program?,
                    arguments,
                    timeout,
                    env: Vec::new(),
                }))
            }
            "python" => {
                self.unknown_keys(path, p, &["type", "module", "func", "arguments", "secrets"]);
                let module = self.string(p, path, "module", true);
                let func = self.string(p, path, "func", true);
                let arguments = match p.get("arguments") {
                    None | Some(Value::Null) => Map::new(),
                    Some(Value::Object(a)) => a.clone(),
                    Some(other) => {
                        self.problem(
                            &field(path, "arguments"),
                            other,
                            "a mapping of keyword arguments",
                        );
                        Map::new()
                    }
                };
                Some(Provider::Python(PythonSpec {
                    module: module?,
                    func: func?,
                    arguments,
                }))
            }
            "chaos" => {
                self.unknown_keys(path, p, &["type", "func", "arguments", "target"]);
                match crate::experiment::fault::from_provider(p) {
                    Ok(spec) => Some(Provider::Chaos(Box::new(spec))),
                    Err((key, value, expected)) => {
                        let at = if key.is_empty() {
                            path.to_owned()
                        } else {
                            field(path, &key)
                        };
                        self.problems.push(self.doc.problem(&at, value, expected));
                        None
                    }
                }
            }
            other => {
                self.problem(
                    &field(path, "type"),
                    &Value::String(other.into()),
                    "one of http, process, python, chaos",
                );
                None
            }
        }
    }

    fn tolerance(&mut self, t: &Value, path: &str, vars: &Variables) -> Option<Box<Activity>> {
        let Value::Object(map) = t else {
            // Exact values and lists of values are always valid.
            return None;
        };
        let kind = map.get("type").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "range" => {
                self.unknown_keys(path, map, &["type", "range", "target"]);
                let ok = matches!(map.get("range"), Some(Value::Array(r)) if r.len() == 2 && r.iter().all(Value::is_number));
                if !ok {
                    let v = map.get("range").cloned().unwrap_or(Value::Null);
                    self.problem(&field(path, "range"), &v, "[low, high]: two numbers");
                }
            }
            "regex" => {
                self.unknown_keys(path, map, &["type", "pattern", "target"]);
                match map.get("pattern") {
                    Some(Value::String(p)) => {
                        if let Err(err) = regex::Regex::new(p) {
                            self.problem(
                                &field(path, "pattern"),
                                &Value::String(p.clone()),
                                format!(
                                    "a regular expression: {}",
                                    err.to_string().lines().last().unwrap_or_default()
                                ),
                            );
                        }
                    }
                    other => self.problem(
                        &field(path, "pattern"),
                        &other.cloned().unwrap_or(Value::Null),
                        "a regular expression",
                    ),
                }
            }
            "jsonpath" => {
                self.unknown_keys(path, map, &["type", "path", "target", "expect", "count"]);
                match map.get("path") {
                    Some(Value::String(p)) => {
                        if let Err(err) = serde_json_path::JsonPath::parse(p) {
                            self.problem(
                                &field(path, "path"),
                                &Value::String(p.clone()),
                                format!("a JSONPath expression (RFC 9535): {err}"),
                            );
                        }
                    }
                    other => self.problem(
                        &field(path, "path"),
                        &other.cloned().unwrap_or(Value::Null),
                        "a JSONPath expression such as $.status",
                    ),
                }
                if let Some(c) = map.get("count")
                    && !c.is_u64()
                {
                    self.problem(&field(path, "count"), c, "a whole number of matches");
                }
            }
            "probe" => {
                let probe = vars.substitute(t);
                return self.activity(&probe, path, vars, false).map(Box::new);
            }
            other => self.problem(
                &field(path, "type"),
                &Value::String(other.into()),
                "one of range, regex, jsonpath, probe (or give a value or a list of values)",
            ),
        }
        None
    }

    fn runtime(&mut self, value: Option<&Value>) -> Runtime {
        let mut rt = Runtime {
            strategy: HypothesisStrategy::Default,
            frequency: Duration::from_secs(1),
            fail_fast: false,
            rollbacks: RollbackStrategy::Default,
        };
        let map = match value {
            None | Some(Value::Null) => return rt,
            Some(Value::Object(m)) => m,
            Some(other) => {
                self.problem(
                    "runtime",
                    other,
                    "a mapping with `hypothesis` and/or `rollbacks`",
                );
                return rt;
            }
        };
        self.unknown_keys("runtime", map, &["hypothesis", "rollbacks"]);
        if let Some(Value::Object(h)) = map.get("hypothesis") {
            let path = "runtime.hypothesis";
            self.unknown_keys(path, h, &["strategy", "frequency", "fail_fast"]);
            if let Some(s) = h.get("strategy") {
                rt.strategy = match s.as_str().unwrap_or_default() {
                    "default" => HypothesisStrategy::Default,
                    "before-method-only" => HypothesisStrategy::BeforeMethodOnly,
                    "after-method-only" => HypothesisStrategy::AfterMethodOnly,
                    "during-method-only" => HypothesisStrategy::DuringMethodOnly,
                    "continuously" => HypothesisStrategy::Continuously,
                    _ => {
                        self.problem(&field(path, "strategy"), s, "one of default, before-method-only, after-method-only, during-method-only, continuously");
                        HypothesisStrategy::Default
                    }
                };
            }
            if let Some(f) = self.seconds(h.get("frequency"), &field(path, "frequency")) {
                if f.is_zero() {
                    self.problem(
                        &field(path, "frequency"),
                        &h["frequency"],
                        "a number of seconds above 0",
                    );
                } else {
                    rt.frequency = f;
                }
            }
            match h.get("fail_fast") {
                None | Some(Value::Null) => {}
                Some(Value::Bool(b)) => rt.fail_fast = *b,
                Some(other) => self.problem(&field(path, "fail_fast"), other, "true or false"),
            }
        } else if let Some(other) = map.get("hypothesis") {
            self.problem(
                "runtime.hypothesis",
                other,
                "a mapping with strategy, frequency, fail_fast",
            );
        }
        if let Some(Value::Object(r)) = map.get("rollbacks") {
            self.unknown_keys("runtime.rollbacks", r, &["strategy"]);
            if let Some(s) = r.get("strategy") {
                match s
                    .as_str()
                    .and_then(|s| <RollbackStrategy as clap::ValueEnum>::from_str(s, false).ok())
                {
                    Some(strategy) => rt.rollbacks = strategy,
                    None => self.problem(
                        "runtime.rollbacks.strategy",
                        s,
                        "one of default, always, never, deviated",
                    ),
                }
            }
        } else if let Some(other) = map.get("rollbacks") {
            self.problem("runtime.rollbacks", other, "a mapping with `strategy`");
        }
        rt
    }
}
