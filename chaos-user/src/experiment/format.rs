//! The experiment document (Chaos Toolkit's format) and its validation.
//!
//! Validation collects every problem at once, each with its location and field path; an
//! experiment with any problem never runs.
use std::{path::Path, time::Duration};

use serde_json::{Map, Value};

use super::{
    document::{Document, Invalid, Problem, field},
    fault::FaultSpec,
    substitution::Variables,
};

/// Whether an activity changes the system or observes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActivityKind {
    /// Changes the system (starts a fault, runs a command).
    Action,
    /// Observes the system; its output is recorded and checked against a tolerance.
    Probe,
}

/// What runs an activity.
#[derive(Clone, Debug)]
pub enum Provider {
    /// An HTTP request.
    Http(HttpSpec),
    /// A command.
    Process(ProcessSpec),
    /// `module.func(**arguments)` in the system's python3.
    Python(PythonSpec),
    /// A fault of this project (boxed: a spec is much larger than the other providers).
    Chaos(Box<FaultSpec>),
}

/// An `http` provider.
#[derive(Clone, Debug)]
pub struct HttpSpec {
    /// The URL.
    pub url: String,
    /// GET, POST, ...
    pub method: String,
    /// Request headers.
    pub headers: Vec<(String, String)>,
    /// The body: a string as is, anything else as JSON.
    pub body: Option<Value>,
    /// Give up after this long.
    pub timeout: Duration,
    /// When set, any other status fails the activity.
    pub expected_status: Option<u16>,
}

/// A `process` provider.
#[derive(Clone, Debug)]
pub struct ProcessSpec {
    /// The program.
    pub path: String,
    /// Its arguments (a string is split as POSIX shell words, as Chaos Toolkit's `shlex.split`).
    pub arguments: Vec<String>,
    /// Kill it after this long.
    pub timeout: Option<Duration>,
    /// Extra environment (a probe tolerance's process gets the output in `CHAOS_VALUE`).
    pub env: Vec<(String, String)>,
}

/// A `python` provider.
#[derive(Clone, Debug)]
pub struct PythonSpec {
    /// The module to import.
    pub module: String,
    /// The function to call.
    pub func: String,
    /// Its keyword arguments.
    pub arguments: Map<String, Value>,
}

/// An action or probe.
#[derive(Clone, Debug)]
pub struct Activity {
    /// Action or probe.
    pub kind: ActivityKind,
    /// Its name, unique enough to read a journal by.
    pub name: String,
    /// What runs it.
    pub provider: Provider,
    /// Seconds to wait before it.
    pub pause_before: Duration,
    /// Seconds to wait after it.
    pub pause_after: Duration,
    /// Runs in parallel with what follows; the method waits for it at its end.
    pub background: bool,
    /// For steady-state probes: what output is acceptable.
    pub tolerance: Option<Value>,
    /// For a `probe` tolerance: the probe that judges the output.
    pub tolerance_probe: Option<Box<Activity>>,
    /// The activity as written (after substitution), for the journal.
    pub raw: Value,
}

/// When the steady-state hypothesis is checked (`runtime.hypothesis.strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HypothesisStrategy {
    /// Before and after the method.
    Default,
    /// Only before the method.
    BeforeMethodOnly,
    /// Only after the method.
    AfterMethodOnly,
    /// Only while the method runs, every `frequency`.
    DuringMethodOnly,
    /// Before, during (every `frequency`) and after.
    Continuously,
}

/// Which rollbacks run (`runtime.rollbacks.strategy` or `--rollback-strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RollbackStrategy {
    /// Whenever the method started, unless the run was interrupted.
    Default,
    /// Always, even after a failed steady state before the method or an interruption.
    Always,
    /// Never.
    Never,
    /// Only when the experiment deviated.
    Deviated,
}

/// `runtime`.
#[derive(Clone, Copy, Debug)]
pub struct Runtime {
    /// When the hypothesis is checked.
    pub strategy: HypothesisStrategy,
    /// How often during the method, for the during/continuously strategies.
    pub frequency: Duration,
    /// Stop the method as soon as a check during it deviates.
    pub fail_fast: bool,
    /// Which rollbacks run.
    pub rollbacks: RollbackStrategy,
}

/// A validated experiment, with `${...}` substituted.
#[derive(Clone, Debug)]
pub struct Experiment {
    /// `title`.
    pub title: String,
    /// `description`.
    pub description: String,
    /// `tags`.
    pub tags: Vec<String>,
    /// `steady-state-hypothesis.title`, when there is one.
    pub hypothesis_title: Option<String>,
    /// `steady-state-hypothesis.probes`.
    pub hypothesis: Vec<Activity>,
    /// `method`.
    pub method: Vec<Activity>,
    /// `rollbacks`.
    pub rollbacks: Vec<Activity>,
    /// `runtime`.
    pub runtime: Runtime,
    /// The document as written (configuration and secret values are not echoed), for the
    /// journal.
    pub raw: Value,
}

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
    /// Reads, resolves and validates an experiment file.
    pub fn load(path: &Path) -> Result<Experiment, Invalid> {
        let doc = Document::read(path)?;
        Experiment::from_document(&doc, &|k| std::env::var(k).ok())
    }

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
            Some(Value::Number(n)) if n.as_f64().is_some_and(|s| s >= 0.0 && s.is_finite()) => {
                Some(Duration::from_secs_f64(n.as_f64().unwrap_or(0.0)))
            }
            Some(other) => {
                self.problem(path, other, "a number of seconds, 0 or more");
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
                match super::fault::from_provider(p) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Result<Experiment, Invalid> {
        let doc = Document::parse("e.yaml", yaml, false)?;
        Experiment::from_document(&doc, &|k| (k == "PORT").then(|| "8080".to_owned()))
    }

    const FULL: &str = "\
title: web survives refused backend connections
description: d
tags: [web]
configuration:
  port: {type: env, key: PORT, env_var_type: int}
  cgroup: /chaos/web
steady-state-hypothesis:
  title: healthy
  probes:
    - type: probe
      name: health
      tolerance: 200
      provider: {type: http, url: 'http://127.0.0.1:${port}/health', timeout: 2}
method:
  - type: action
    name: refuse
    provider:
      type: chaos
      func: syscall
      arguments: {syscall: connect, errno: ECONNREFUSED, duration: 5s}
      target: {cgroup: '${cgroup}'}
    pauses: {after: 1.5}
  - ref: health
  - type: probe
    name: listing
    background: true
    provider: {type: process, path: ls, arguments: -l /}
rollbacks: []
runtime:
  hypothesis: {strategy: continuously, frequency: 0.5, fail_fast: true}
  rollbacks: {strategy: always}
";

    #[test]
    fn process_arguments_split_as_shell_words() {
        // Chaos Toolkit splits a string with shlex.split: quotes group and are removed.
        let doc = serde_json::json!({"title": "t", "description": "d", "method": [{
            "type": "action", "name": "echo", "provider": {"type": "process", "path": "echo",
            "arguments": r#"{"a": 3} 'b c' d\ e"#}}]})
        .to_string();
        let doc = doc.as_str();
        let e = load(doc).unwrap();
        let Provider::Process(p) = &e.method[0].provider else {
            panic!()
        };
        // `echo` then prints `{a: 3} b c d e`, as under Chaos Toolkit.
        assert_eq!(p.arguments, ["{a:", "3}", "b c", "d e"]);
    }

    #[test]
    fn a_full_experiment_loads_with_substitution() {
        let e = load(FULL).unwrap();
        assert_eq!(e.title, "web survives refused backend connections");
        assert_eq!(e.hypothesis.len(), 1);
        let Provider::Http(h) = &e.hypothesis[0].provider else {
            panic!()
        };
        assert_eq!(h.url, "http://127.0.0.1:8080/health");
        assert_eq!(h.timeout, Duration::from_secs(2));
        assert_eq!(e.method.len(), 3);
        let Provider::Chaos(f) = &e.method[0].provider else {
            panic!()
        };
        assert!(
            f.command_line().contains("--cgroup /chaos/web"),
            "{}",
            f.command_line()
        );
        assert_eq!(e.method[0].pause_after, Duration::from_millis(1500));
        assert_eq!(e.method[1].name, "health");
        assert!(e.method[2].background);
        let Provider::Process(p) = &e.method[2].provider else {
            panic!()
        };
        assert_eq!(p.arguments, ["-l", "/"]);
        assert_eq!(e.runtime.strategy, HypothesisStrategy::Continuously);
        assert_eq!(e.runtime.frequency, Duration::from_millis(500));
        assert!(e.runtime.fail_fast);
        assert_eq!(e.runtime.rollbacks, RollbackStrategy::Always);
    }

    #[test]
    fn every_problem_is_reported_with_location_path_value_and_what_is_allowed() {
        let bad = FULL
            .replace("tags: [web]", "tags: [web]\ntitel: typo")
            .replace("errno: ECONNREFUSED", "errno: ECONNREFUZED")
            .replace("strategy: always", "strategy: sometimes")
            .replace("type: process", "type: shell");
        let err = load(&bad).unwrap_err();
        let text = err.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines.contains(&"e.yaml:4:1: titel: `titel`: unknown key; allowed here: version, title, description, tags, contributions, configuration, secrets, steady-state-hypothesis, method, rollbacks, runtime, controls, extensions"), "{text}");
        assert!(
            lines.iter().any(|l| l.starts_with("e.yaml:21:44: method[0].provider.arguments.errno: `\"ECONNREFUZED\"`: `ECONNREFUZED` is not valid")),
            "{text}"
        );
        assert!(lines.iter().any(|l| l.starts_with("e.yaml:28:22: method[2].provider.type: `shell`: one of http, process, python, chaos")), "{text}");
        assert!(lines.iter().any(|l| l.starts_with("e.yaml:32:25: runtime.rollbacks.strategy: `sometimes`: one of default, always, never, deviated")), "{text}");
    }

    #[test]
    fn required_fields_and_shapes() {
        let err = load("description: no title\n").unwrap_err().to_string();
        assert!(err.contains("title: missing"), "{err}");
        assert!(err.contains("method: missing"), "{err}");
        let err = load("title: t\nmethod:\n  - type: probe\n    name: p\n    provider: {type: http}\n    tolerance: 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("method[0].provider.url: missing"), "{err}");
        assert!(err.contains("method[0].tolerance: `tolerance`: a tolerance belongs to steady-state-hypothesis probes only"), "{err}");
        let err = load("title: t\nsteady-state-hypothesis:\n  title: h\n  probes:\n    - type: probe\n      name: p\n      provider: {type: process, path: 'true'}\n      tolerance: {type: regex, pattern: '('}\nmethod: []\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("e.yaml:8:41: steady-state-hypothesis.probes[0].tolerance.pattern: `(`: a regular expression"), "{err}");
        let err = load("title: t\nmethod:\n  - ref: nothing\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("method[0].ref: `nothing`"), "{err}");
    }

    #[test]
    fn controls_are_refused_where_they_stand_never_ignored() {
        let yaml = "\
title: t
controls:
  - name: tracing
    provider: {type: python, module: chaostracing.control}
steady-state-hypothesis:
  title: ok
  controls: []
  probes:
    - type: probe
      name: p
      tolerance: 0
      provider: {type: process, path: 'true'}
method:
  - type: action
    name: a
    provider: {type: process, path: 'true'}
    controls: [{name: c, provider: {type: python, module: m}}]
";
        let err = load(yaml).unwrap_err().to_string();
        for (at, path) in [
            ("e.yaml:2:1", "controls"),
            ("e.yaml:7:3", "steady-state-hypothesis.controls"),
            ("e.yaml:17:5", "method[0].controls"),
        ] {
            let line = err
                .lines()
                .find(|l| l.starts_with(at))
                .unwrap_or_else(|| panic!("nothing at {at}: {err}"));
            assert!(
                line.contains(path) && line.contains("not run by chaos"),
                "{line}"
            );
        }
        let without: String = yaml
            .lines()
            .filter(|l| {
                !l.contains("controls") && !l.contains("tracing") && !l.contains("chaostracing")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(load(&without).is_ok(), "{without}");
    }
}
