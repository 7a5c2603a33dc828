//! Blanking secret-looking values in raw items before mapping and in snapshots. Lambda
//! environment variables and ECS container environments and secrets are always blanked; config
//! `redact` entries add jq paths, blanked only where present (keys are never created).

use serde_json::Value as Json;

use crate::core::model::RawItem;
use crate::core::yaml::{Diagnostic, Pos};

/// What a redacted value becomes.
pub const REDACTED: &str = "***";

#[derive(Clone, Debug, PartialEq)]
enum Step {
    Key(String),
    Index(i64),
    Each,
}

/// Blanks secret-looking values in raw items before mapping and in snapshots.
#[derive(Clone, Debug)]
pub struct Redactor {
    /// Paths under `Properties`.
    extra: Vec<Vec<Step>>,
}

impl Redactor {
    /// `extra` holds the config's `redact` entries (jq paths such as `.Properties.Things[].Secret`)
    /// with their positions in `file`.
    pub fn new(file: &str, extra: &[(String, Pos)]) -> Result<Redactor, Vec<Diagnostic>> {
        let mut paths = Vec::new();
        let mut errors = Vec::new();
        for (text, pos) in extra {
            match parse_path(text) {
                Ok(mut steps) => {
                    if steps.first() == Some(&Step::Key("Properties".into())) && steps.len() > 1 {
                        steps.remove(0);
                        paths.push(steps);
                    } else {
                        errors.push(Diagnostic::new(
                            file,
                            *pos,
                            format!(
                                "redact path {text:?} must point inside .Properties (for example .Properties.MasterUserPassword)"
                            ),
                        ));
                    }
                }
                Err(message) => errors.push(Diagnostic::new(
                    file,
                    *pos,
                    format!("redact path {text:?}: {message}"),
                )),
            }
        }
        if errors.is_empty() {
            Ok(Redactor { extra: paths })
        } else {
            Err(errors)
        }
    }

    pub fn redact(&self, item: &mut RawItem) {
        let props = &mut item.properties;
        if item.kind.starts_with("AWS::Lambda::")
            && let Some(Json::Object(vars)) = props
                .get_mut("Environment")
                .and_then(|e| e.get_mut("Variables"))
        {
            for v in vars.values_mut() {
                *v = Json::String(REDACTED.into());
            }
        }
        if item.kind == "AWS::ECS::TaskDefinition" {
            let container = [Step::Key("ContainerDefinitions".into()), Step::Each];
            for (list, field) in [("Environment", "Value"), ("Secrets", "ValueFrom")] {
                let mut path = container.to_vec();
                path.extend([Step::Key(list.into()), Step::Each, Step::Key(field.into())]);
                blank(props, &path);
            }
        }
        for path in &self.extra {
            blank(props, path);
        }
    }
}

/// Sets the value at `path` to the redaction marker wherever it exists.
fn blank(value: &mut Json, path: &[Step]) {
    let Some((step, rest)) = path.split_first() else {
        *value = Json::String(REDACTED.into());
        return;
    };
    match (step, value) {
        (Step::Key(k), Json::Object(map)) => {
            if let Some(v) = map.get_mut(k) {
                blank(v, rest);
            }
        }
        (Step::Index(i), Json::Array(items)) => {
            let len = items.len() as i64;
            let idx = if *i < 0 { len + i } else { *i };
            if (0..len).contains(&idx)
                && let Some(v) = items.get_mut(idx as usize)
            {
                blank(v, rest);
            }
        }
        (Step::Each, Json::Array(items)) => items.iter_mut().for_each(|v| blank(v, rest)),
        (Step::Each, Json::Object(map)) => map.values_mut().for_each(|v| blank(v, rest)),
        _ => {}
    }
}

/// Parses a jq path of `.key`, `."key"`, `["key"]`, `[N]` and `[]` steps.
fn parse_path(text: &str) -> Result<Vec<Step>, String> {
    let s = text.trim();
    if !s.starts_with('.') {
        return Err("a path must start with `.`".into());
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut steps = Vec::new();
    while i < bytes.len() {
        match bytes[i] {
            b'.' => {
                i += 1;
                if i < bytes.len() && bytes[i] == b'"' {
                    let (key, next) = quoted(s, i)?;
                    steps.push(Step::Key(key));
                    i = next;
                } else if i < bytes.len() && bytes[i] == b'[' {
                    // `.[...]`, handled by the bracket arm.
                } else {
                    let start = i;
                    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_')
                    {
                        i += 1;
                    }
                    if start == i {
                        if steps.is_empty() && i == bytes.len() {
                            return Err("`.` alone would blank the whole item".into());
                        }
                        return Err(format!("expected a key at character {}", start + 1));
                    }
                    steps.push(Step::Key(s[start..i].to_string()));
                }
            }
            b'[' => {
                let close = s[i..]
                    .find(']')
                    .map(|c| i + c)
                    .ok_or_else(|| format!("unclosed `[` at character {}", i + 1))?;
                let inner = s[i + 1..close].trim();
                if inner.is_empty() {
                    steps.push(Step::Each);
                } else if inner.starts_with('"') {
                    let (key, end) = quoted(inner, 0)?;
                    if end != inner.len() {
                        return Err(format!("unexpected text after key at character {}", i + 1));
                    }
                    steps.push(Step::Key(key));
                } else {
                    let n = inner.parse::<i64>().map_err(|_| {
                        format!("expected `[]`, `[N]` or `[\"key\"]` at character {}", i + 1)
                    })?;
                    steps.push(Step::Index(n));
                }
                i = close + 1;
            }
            _ => {
                return Err(format!(
                    "unexpected {:?} at character {} (only .key, [\"key\"], [N] and [] are allowed)",
                    &s[i..].chars().next().unwrap_or(' '),
                    i + 1
                ));
            }
        }
    }
    Ok(steps)
}

/// A JSON string starting at byte `start`; returns it and the index after its closing quote.
fn quoted(s: &str, start: usize) -> Result<(String, usize), String> {
    let mut escaped = false;
    for (off, c) in s[start + 1..].char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => {
                let end = start + 1 + off + 1;
                return serde_json::from_str::<String>(&s[start..end])
                    .map(|k| (k, end))
                    .map_err(|e| format!("bad quoted key: {e}"));
            }
            _ => escaped = false,
        }
    }
    Err(format!("unclosed quote at character {}", start + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(kind: &str, properties: Json) -> RawItem {
        RawItem {
            account: "1".into(),
            account_name: None,
            region: "us-east-1".into(),
            kind: kind.into(),
            identifier: "x".into(),
            model: None,
            properties,
        }
    }

    fn pos() -> Pos {
        Pos { line: 3, col: 5 }
    }

    #[test]
    fn lambda_environment_values_are_blanked_and_keys_kept() {
        let mut it = item(
            "AWS::Lambda::Function",
            json!({"Environment": {"Variables": {"DB_PASSWORD": "hunter2", "MODE": "x"}}, "Runtime": "python3.12"}),
        );
        Redactor::new("t.yaml", &[]).expect("ok").redact(&mut it);
        assert_eq!(
            it.properties,
            json!({"Environment": {"Variables": {"DB_PASSWORD": "***", "MODE": "***"}}, "Runtime": "python3.12"})
        );
    }

    #[test]
    fn ecs_container_environment_and_secrets_are_blanked() {
        let mut it = item(
            "AWS::ECS::TaskDefinition",
            json!({"ContainerDefinitions": [{"Name": "app",
                "Environment": [{"Name": "TOKEN", "Value": "abc"}],
                "Secrets": [{"Name": "DB", "ValueFrom": "arn:aws:ssm:x"}]}]}),
        );
        Redactor::new("t.yaml", &[]).expect("ok").redact(&mut it);
        assert_eq!(
            it.properties,
            json!({"ContainerDefinitions": [{"Name": "app",
                "Environment": [{"Name": "TOKEN", "Value": "***"}],
                "Secrets": [{"Name": "DB", "ValueFrom": "***"}]}]})
        );
    }

    #[test]
    fn extra_paths_blank_only_what_is_present() {
        let r = Redactor::new(
            "t.yaml",
            &[
                (".Properties.MasterUserPassword".into(), pos()),
                (".Properties.Things[].Secret".into(), pos()),
                (".Properties[\"Odd Key\"][0]".into(), pos()),
            ],
        )
        .expect("valid paths");
        let mut it = item(
            "AWS::RDS::DBInstance",
            json!({"MasterUserPassword": "pw", "Things": [{"Secret": 1}, {"Other": 2}], "Odd Key": ["a", "b"]}),
        );
        r.redact(&mut it);
        assert_eq!(
            it.properties,
            json!({"MasterUserPassword": "***", "Things": [{"Secret": "***"}, {"Other": 2}], "Odd Key": ["***", "b"]})
        );
        let mut absent = item("AWS::RDS::DBInstance", json!({"Engine": "postgres"}));
        r.redact(&mut absent);
        assert_eq!(absent.properties, json!({"Engine": "postgres"}));
    }

    #[test]
    fn bad_redact_paths_are_reported_at_their_positions() {
        let errs = Redactor::new(
            "tidemark.yaml",
            &[
                ("Properties.X".into(), Pos { line: 4, col: 7 }),
                (".Properties.X | del(.)".into(), Pos { line: 5, col: 7 }),
                (".Identifier".into(), Pos { line: 6, col: 7 }),
            ],
        )
        .expect_err("invalid");
        let lines: Vec<usize> = errs.iter().map(|d| d.pos.line).collect();
        assert_eq!(lines, vec![4, 5, 6]);
        assert!(
            errs[0]
                .to_string()
                .starts_with("tidemark.yaml:4:7: redact path")
        );
    }
}
