//! Reading an experiment file into a JSON value while remembering where each node came from,
//! so that every validation error can name the file, line and column.
//!
//! YAML and JSON are both read with saphyr's marked parser (JSON is YAML 1.2); a `.json` file
//! is first checked with serde_json so that JSON syntax errors read like JSON errors.
use std::{collections::HashMap, fmt, path::Path};

use saphyr::{LoadableYamlNode as _, MarkedYaml, Scalar, YamlData};
use serde_json::{Map, Number, Value};

/// A place in the experiment file (1-based line and column).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

/// One problem in an experiment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: String,
    /// Where in it, when known.
    pub location: Option<Location>,
    /// The field path, e.g. `method[0].provider.type`.
    pub path: String,
    /// The offending value as written (empty for a missing field).
    pub value: String,
    /// What is wrong and what would be valid.
    pub expected: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(loc) = self.location {
            write!(f, ":{}:{}", loc.line, loc.column)?;
        }
        write!(
            f,
            ": {}",
            if self.path.is_empty() {
                "(document)"
            } else {
                &self.path
            }
        )?;
        if !self.value.is_empty() {
            write!(f, ": `{}`", self.value)?;
        }
        write!(f, ": {}", self.expected)
    }
}

/// Everything wrong with an experiment file; nothing of it may run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid(pub Vec<Problem>);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

/// An experiment file read as a JSON value, with the location of every node by field path.
#[derive(Clone, Debug)]
pub struct Document {
    /// The file name, for messages.
    pub file: String,
    /// The document.
    pub value: Value,
    locations: HashMap<String, Location>,
}

impl Document {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<Document, Invalid> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| {
            Invalid(vec![Problem {
                file: file.clone(),
                location: None,
                path: String::new(),
                value: String::new(),
                expected: format!("cannot read the experiment: {err}"),
            }])
        })?;
        let json = path.extension().is_some_and(|e| e == "json");
        Document::parse(&file, &text, json)
    }

    /// Parses `text` (YAML, or JSON when `json`), naming it `file` in messages.
    pub fn parse(file: &str, text: &str, json: bool) -> Result<Document, Invalid> {
        let syntax = |location: Option<Location>, msg: String| {
            Invalid(vec![Problem {
                file: file.to_owned(),
                location,
                path: String::new(),
                value: String::new(),
                expected: msg,
            }])
        };
        if json && let Err(err) = serde_json::from_str::<Value>(text) {
            return Err(syntax(
                Some(Location {
                    line: err.line(),
                    column: err.column(),
                }),
                format!("not valid JSON: {err}"),
            ));
        }
        let docs = MarkedYaml::load_from_str(text).map_err(|err| {
            let m = err.marker();
            syntax(
                Some(Location {
                    line: m.line(),
                    column: m.col() + 1,
                }),
                format!("not valid YAML: {}", err.info()),
            )
        })?;
        let Some(root) = docs.into_iter().next() else {
            return Err(syntax(
                None,
                "the file is empty; an experiment needs at least `title` and `method`".into(),
            ));
        };
        let mut locations = HashMap::new();
        let mut problems = Vec::new();
        let value = convert(&root, String::new(), &mut locations, &mut problems, file);
        if !problems.is_empty() {
            return Err(Invalid(problems));
        }
        Ok(Document {
            file: file.to_owned(),
            value,
            locations,
        })
    }

    /// Where the node at `path` is, or its nearest located ancestor.
    pub fn location(&self, path: &str) -> Option<Location> {
        let mut p = path;
        loop {
            if let Some(loc) = self.locations.get(p) {
                return Some(*loc);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }

    /// A problem at `path`.
    pub fn problem(&self, path: &str, value: String, expected: impl Into<String>) -> Problem {
        Problem {
            file: self.file.clone(),
            location: self.location(path),
            path: path.trim_end_matches("#key").to_owned(),
            value,
            expected: expected.into(),
        }
    }
}

/// Joins a field path and a key.
pub fn field(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn convert(
    node: &MarkedYaml<'_>,
    path: String,
    locations: &mut HashMap<String, Location>,
    problems: &mut Vec<Problem>,
    file: &str,
) -> Value {
    let loc = Location {
        line: node.span.start.line(),
        column: node.span.start.col() + 1,
    };
    locations.insert(path.clone(), loc);
    match &node.data {
        YamlData::Value(scalar) => scalar_value(scalar),
        YamlData::Representation(text, _, _) => Value::String(text.to_string()),
        YamlData::Sequence(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| convert(item, format!("{path}[{i}]"), locations, problems, file))
                .collect(),
        ),
        YamlData::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match &k.data {
                    YamlData::Value(Scalar::String(s)) => s.to_string(),
                    YamlData::Value(other) => scalar_value(other).to_string(),
                    _ => {
                        problems.push(Problem {
                            file: file.to_owned(),
                            location: Some(Location {
                                line: k.span.start.line(),
                                column: k.span.start.col() + 1,
                            }),
                            path: path.clone(),
                            value: String::new(),
                            expected: "keys must be plain strings".into(),
                        });
                        continue;
                    }
                };
                let child = field(&path, &key);
                let value = convert(v, child.clone(), locations, problems, file);
                // A key's own position is more useful than its value's for a bad key.
                locations.insert(
                    format!("{child}#key"),
                    Location {
                        line: k.span.start.line(),
                        column: k.span.start.col() + 1,
                    },
                );
                out.insert(key, value);
            }
            Value::Object(out)
        }
        YamlData::Tagged(_, inner) => convert(inner, path, locations, problems, file),
        YamlData::Alias(_) | YamlData::BadValue => {
            problems.push(Problem {
                file: file.to_owned(),
                location: Some(loc),
                path,
                value: String::new(),
                expected: "a plain value (YAML aliases and invalid scalars are not supported)"
                    .into(),
            });
            Value::Null
        }
    }
}

fn scalar_value(scalar: &Scalar<'_>) -> Value {
    match scalar {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::from(*i),
        Scalar::FloatingPoint(f) => {
            Number::from_f64(f.into_inner()).map_or(Value::Null, Value::Number)
        }
        Scalar::String(s) => Value::String(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_nodes_have_locations() {
        let doc = Document::parse(
            "e.yaml",
            "title: t\nmethod:\n  - type: action\n    name: a\n",
            false,
        )
        .unwrap();
        assert_eq!(doc.value["method"][0]["name"], "a");
        assert_eq!(
            doc.location("method[0].name"),
            Some(Location {
                line: 4,
                column: 11
            })
        );
        assert_eq!(
            doc.location("method[0].nosuch"),
            Some(Location { line: 3, column: 5 })
        );
        assert_eq!(
            doc.location("method[0].type#key"),
            Some(Location { line: 3, column: 5 })
        );
    }

    #[test]
    fn json_documents_parse_with_locations() {
        let doc = Document::parse("e.json", "{\n  \"title\": \"t\",\n  \"n\": 3\n}", true).unwrap();
        assert_eq!(doc.value["n"], 3);
        assert_eq!(doc.location("n").unwrap().line, 3);
    }

    #[test]
    fn syntax_errors_have_locations() {
        let err = Document::parse("e.json", "{\n  \"title\": \"t\",,\n}", true).unwrap_err();
        assert_eq!(err.0[0].location.unwrap().line, 2, "{err}");
        assert!(err.to_string().starts_with("e.json:2:"), "{err}");
        let err = Document::parse("e.yaml", "title: [a\nmethod: x\n", false).unwrap_err();
        assert!(err.to_string().contains("not valid YAML"), "{err}");
    }
}
