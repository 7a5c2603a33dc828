//! One mapping expression, compiled once: Ocean's quote rewriting, then either a fast form that
//! needs no interpreter (plain paths, literals, a literal joined to a path) or a jaq program.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Map, Value as Json};

use super::jq::{self, CompileError, Outcome, Program};
use crate::core::model::{RawItem, given};

/// Ocean turns single-quoted string delimiters into double quotes before compiling: a quote at
/// the start or after whitespace that is not followed by whitespace or `"` opens a string, and one
/// not preceded by whitespace or `"` that is followed by whitespace or the end closes it.
pub(crate) fn rewrite_single_quotes(expr: &str) -> String {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = String::with_capacity(expr.len());
    for (i, &c) in chars.iter().enumerate() {
        if c != '\'' {
            out.push(c);
            continue;
        }
        let prev = i.checked_sub(1).map(|j| chars[j]);
        let next = chars.get(i + 1).copied();
        let opens = prev.is_none_or(char::is_whitespace)
            && !next.is_some_and(|n| n.is_whitespace() || n == '"');
        let closes = !prev.is_some_and(|p| p.is_whitespace() || p == '"')
            && next.is_none_or(char::is_whitespace);
        out.push(if opens || closes { '"' } else { '\'' });
    }
    out
}

/// How an expression is evaluated.
pub(crate) enum Form {
    /// A literal: the same value for every item.
    Const(Json),
    /// `.a.b[0].c`: null when a key or index is missing.
    Path(Vec<Step>),
    /// `"prefix" + .a.b` or `.a.b + "suffix"`.
    Concat {
        prefix: String,
        path: Vec<Step>,
        suffix: String,
    },
    /// AWS tags to an object: `<path> [// []] | map({(.Key): .Value}) | add` or
    /// `<path> [// []] | from_entries`.
    Entries {
        path: Vec<Step>,
        or_empty: bool,
        style: EntriesStyle,
    },
    Jq,
}

/// Which tags-to-object idiom an `Entries` form is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum EntriesStyle {
    /// `map({(.Key): .Value}) | add`: null for an empty list.
    MapAdd,
    /// `from_entries` with jq 1.7's key (`key`, `name`, `Name`, `Key`) and value rules.
    FromEntries,
}

/// A compiled expression with its text after quote rewriting.
pub(crate) struct Expr {
    pub text: String,
    pub form: Form,
    program: Program,
    /// The same expression for the native evaluator, when it is in its subset.
    native: Option<super::native::Native>,
    uses_env: bool,
    /// Names this expression to the evaluation's observer: its position in
    /// [`Mappings`](super::Mappings)' expression texts plus one; 0 for expressions no user wrote.
    pub id: usize,
}

/// The input of a mapping: an item as a mapping sees it, built lazily for the interpreter.
pub(crate) enum Input<'a> {
    Item(&'a RawItem),
    Json(Json),
}

/// The result of evaluating an expression: its first output, no output, or an error message.
#[derive(Debug, PartialEq)]
pub(crate) enum Eval {
    Value(Json),
    Empty,
    Error(String),
}

/// One step of a plain path.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Step {
    Key(String),
    Index(i64),
}

fn path_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^\.[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*|\[-?[0-9]{1,9}\])*$")
            .unwrap_or_else(|_| unreachable!())
    })
}

fn step_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(-?[0-9]+)\]").unwrap_or_else(|_| unreachable!())
    })
}

fn parse_path(text: &str) -> Option<Vec<Step>> {
    if !path_re().is_match(text) {
        return None;
    }
    step_re()
        .captures_iter(text)
        .map(|c| match (c.get(1), c.get(2)) {
            (Some(key), _) => Some(Step::Key(key.as_str().to_string())),
            (None, Some(i)) => i.as_str().parse().ok().map(Step::Index),
            _ => None,
        })
        .collect()
}

/// A JSON string literal without interpolation.
fn parse_string_literal(text: &str) -> Option<String> {
    if !(text.starts_with('"') && text.ends_with('"')) || text.contains("\\(") {
        return None;
    }
    match serde_json::from_str::<Json>(text) {
        Ok(Json::String(s)) => Some(s),
        _ => None,
    }
}

fn entries_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"^(?P<path>\S+?)\s*(?P<alt>//\s*\[\s*\])?\s*\|\s*(?:(?P<mapadd>map\(\s*\{\s*\(\s*\.Key\s*\)\s*:\s*\.Value\s*\}\s*\)\s*\|\s*add)|(?P<fe>from_entries))$",
        )
        .unwrap_or_else(|_| unreachable!())
    })
}

fn classify(text: &str) -> Form {
    let t = text.trim();
    if let Some(c) = entries_re().captures(t)
        && let Some(path) = c.name("path").and_then(|p| parse_path(p.as_str()))
    {
        return Form::Entries {
            path,
            or_empty: c.name("alt").is_some(),
            style: if c.name("mapadd").is_some() {
                EntriesStyle::MapAdd
            } else {
                EntriesStyle::FromEntries
            },
        };
    }
    if let Some(path) = parse_path(t) {
        return Form::Path(path);
    }
    if let Some(s) = parse_string_literal(t) {
        return Form::Const(Json::String(s));
    }
    match t {
        "true" => return Form::Const(Json::Bool(true)),
        "false" => return Form::Const(Json::Bool(false)),
        "null" => return Form::Const(Json::Null),
        "[]" => return Form::Const(Json::Array(Vec::new())),
        "{}" => return Form::Const(Json::Object(Default::default())),
        _ => {}
    }
    if !t.is_empty()
        && t.len() < 16
        && t.bytes().all(|b| b.is_ascii_digit())
        && let Ok(i) = t.parse::<i64>()
    {
        return Form::Const(Json::from(i));
    }
    if let Some((left, right)) = t.split_once('+') {
        let (left, right) = (left.trim(), right.trim());
        if let (Some(prefix), Some(path)) = (parse_string_literal(left), parse_path(right)) {
            return Form::Concat {
                prefix,
                path,
                suffix: String::new(),
            };
        }
        if let (Some(path), Some(suffix)) = (parse_path(left), parse_string_literal(right)) {
            return Form::Concat {
                prefix: String::new(),
                path,
                suffix,
            };
        }
    }
    Form::Jq
}

impl Expr {
    /// Rewrites quotes as Ocean does and compiles; errors carry offsets in the rewritten text,
    /// which has the same length as the original.
    pub(crate) fn compile(source: &str) -> Result<Expr, Vec<CompileError>> {
        let text = rewrite_single_quotes(source);
        let program = jq::compile(&text)?;
        let form = classify(&text);
        Ok(Expr {
            uses_env: jq::mentions_env(&text),
            id: 0,
            native: jq::native(&text),
            text,
            form,
            program,
        })
    }

    /// The constant string this expression always gives, if it is one.
    pub(crate) fn constant_str(&self) -> Option<&str> {
        match &self.form {
            Form::Const(Json::String(s)) => Some(s),
            _ => None,
        }
    }

    /// Evaluates on an input, using the fast form when it applies and the interpreter otherwise.
    pub(crate) fn eval(&self, input: &Input, cache: &mut ValCache, env: &jq::Env) -> Eval {
        match &self.form {
            Form::Const(v) => return Eval::Value(v.clone()),
            Form::Path(path) => {
                if let Some(v) = input.lookup(path) {
                    return Eval::Value(v);
                }
            }
            Form::Concat {
                prefix,
                path,
                suffix,
            } => match input.lookup(path) {
                Some(Json::String(s)) => {
                    return Eval::Value(Json::String(format!("{prefix}{s}{suffix}")));
                }
                Some(Json::Null) => {
                    return Eval::Value(Json::String(format!("{prefix}{suffix}")));
                }
                _ => {}
            },
            Form::Entries {
                path,
                or_empty,
                style,
            } => {
                if let Some(v) = input
                    .lookup(path)
                    .and_then(|list| entries_object(list, *or_empty, *style))
                {
                    return Eval::Value(v);
                }
            }
            Form::Jq => {}
        }
        if let Some(native) = &self.native {
            match native.first(cache.json(input)) {
                super::native::First::Value(v) => return Eval::Value(v),
                super::native::First::Empty => return Eval::Empty,
                super::native::First::Fallback => {}
            }
        }
        let val = cache.get(input);
        env.evaluating(self.id);
        let env = if self.uses_env {
            cache.env(env)
        } else {
            jaq_json::Val::Null
        };
        match self.program.first(val, env) {
            Outcome::Value(v) => match jq::to_json(&v) {
                Ok(json) => Eval::Value(json),
                Err(e) => Eval::Error(e),
            },
            Outcome::Empty => Eval::Empty,
            Outcome::Error(e) => Eval::Error(e),
        }
    }
}

/// A list of entries as an object; `None` (use the interpreter) for anything but a list of
/// objects with string keys.
fn entries_object(list: Json, or_empty: bool, style: EntriesStyle) -> Option<Json> {
    let items = match list {
        Json::Array(items) => items,
        Json::Null | Json::Bool(false) if or_empty => Vec::new(),
        _ => return None,
    };
    if items.is_empty() {
        return Some(match style {
            EntriesStyle::MapAdd => Json::Null,
            EntriesStyle::FromEntries => Json::Object(Map::new()),
        });
    }
    let mut out = Map::new();
    for item in items {
        let Json::Object(mut entry) = item else {
            return None;
        };
        let truthy = |v: &Json| !matches!(v, Json::Null | Json::Bool(false));
        let (key, value) = match style {
            EntriesStyle::MapAdd => (entry.remove("Key"), entry.remove("Value")),
            EntriesStyle::FromEntries => {
                let key = ["key", "name", "Name", "Key"]
                    .iter()
                    .find_map(|k| entry.get(*k).filter(|v| truthy(v)).cloned());
                let value = if entry.contains_key("value") {
                    entry.remove("value")
                } else {
                    entry.remove("Value")
                };
                (key, value)
            }
        };
        let Some(Json::String(key)) = key else {
            return None;
        };
        out.insert(key, value.unwrap_or(Json::Null));
    }
    Some(Json::Object(out))
}

/// The jaq values of the current input and of the environment, and the input as JSON for the
/// native evaluator, each built at most once.
#[derive(Default)]
pub(crate) struct ValCache {
    input: Option<jaq_json::Val>,
    env: Option<jaq_json::Val>,
    json: Option<Json>,
}

impl ValCache {
    fn json<'a>(&'a mut self, input: &'a Input) -> &'a Json {
        match input {
            Input::Json(json) => json,
            Input::Item(item) => self.json.get_or_insert_with(|| item.to_mapping_input()),
        }
    }

    fn get(&mut self, input: &Input) -> jaq_json::Val {
        self.input.get_or_insert_with(|| input.to_val()).clone()
    }

    fn env(&mut self, env: &jq::Env) -> jaq_json::Val {
        self.env.get_or_insert_with(|| env.to_val()).clone()
    }
}

/// Walks `path` from `value`; `None` when a step indexes a value of the wrong type (jq raises
/// an error there, which the interpreter reports with jq's wording).
fn walk(mut value: &Json, path: &[Step]) -> Option<Json> {
    for step in path {
        let next = match (step, value) {
            (_, Json::Null) => None,
            (Step::Key(key), Json::Object(map)) => map.get(key),
            (Step::Index(i), Json::Array(items)) => {
                let len = items.len() as i64;
                let at = if *i < 0 { len + i } else { *i };
                usize::try_from(at).ok().and_then(|at| items.get(at))
            }
            _ => return None,
        };
        match next {
            Some(v) => value = v,
            None => return Some(Json::Null),
        }
    }
    Some(value.clone())
}

impl Input<'_> {
    /// A plain path's value, without building the whole input.
    fn lookup(&self, path: &[Step]) -> Option<Json> {
        let item = match self {
            Input::Json(json) => return walk(json, path),
            Input::Item(item) => item,
        };
        let (Step::Key(first), rest) = path.split_first()? else {
            return None;
        };
        let text = |s: &str| Some(Json::String(s.to_string()));
        let given = |s: &str| Some(given(s).map_or(Json::Null, |s| Json::String(s.to_string())));
        match (first.as_str(), rest.is_empty()) {
            ("Properties", _) => walk(&item.properties, rest),
            ("Identifier", true) => text(&item.identifier),
            ("Type" | "__Kind", true) => text(&item.kind),
            ("__AccountId", true) => given(&item.account),
            ("__Region", true) => given(&item.region),
            ("__ExtraContext", _) => walk(&extra_context(item), rest),
            ("Identifier" | "Type" | "__Kind" | "__AccountId" | "__Region", false) => None,
            _ => Some(Json::Null),
        }
    }

    fn to_val(&self) -> jaq_json::Val {
        match self {
            Input::Json(json) => jq::to_val(json),
            Input::Item(item) => item_val(item),
        }
    }
}

fn extra_context(item: &RawItem) -> Json {
    serde_json::json!({
        "AccountId": given(&item.account),
        "AccountName": item.account_name,
        "Region": given(&item.region),
    })
}

/// The item as a mapping sees it (`RawItem::to_mapping_input`), built straight into jaq's value.
fn item_val(item: &RawItem) -> jaq_json::Val {
    use jq::{obj_val, str_val};
    let optional = |s: Option<&str>| s.map_or(jaq_json::Val::Null, str_val);
    let (account, region) = (
        optional(given(&item.account)),
        optional(given(&item.region)),
    );
    obj_val([
        ("Identifier", str_val(&item.identifier)),
        ("Type", str_val(&item.kind)),
        ("Properties", jq::to_val(&item.properties)),
        (
            "__ExtraContext",
            obj_val([
                ("AccountId", account.clone()),
                ("AccountName", optional(item.account_name.as_deref())),
                ("Region", region.clone()),
            ]),
        ),
        ("__AccountId", account),
        ("__Region", region),
        ("__Kind", str_val(&item.kind)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item() -> RawItem {
        RawItem {
            account: "111111111111".into(),
            account_name: Some("prod".into()),
            region: "us-east-1".into(),
            kind: "AWS::S3::Bucket".into(),
            identifier: "b1".into(),
            model: None,
            properties: json!({"BucketName": "b1", "Tags": [{"Key": "env", "Value": "prod"}, {"Key": "b", "Value": "2"}], "S": "x",
                "Odd": [{"key": "k", "Key": "K", "Value": 1}, {"name": false, "Name": "N", "value": null, "Value": 2}, {"Key": null}]}),
        }
    }

    fn eval(expr: &str) -> Eval {
        let e = Expr::compile(expr).expect("compiles");
        let env = jq::Env::default();
        e.eval(&Input::Item(&item()), &mut ValCache::default(), &env)
    }

    #[test]
    fn single_quoted_delimiters_become_double_quotes_as_in_ocean() {
        assert_eq!(rewrite_single_quotes("'awsS3Bucket'"), "\"awsS3Bucket\"");
        assert_eq!(rewrite_single_quotes(".a + '-' + .b"), ".a + \"-\" + .b");
        assert_eq!(rewrite_single_quotes("\"it's\""), "\"it's\"");
        assert_eq!(eval("'arn:' + .Identifier"), Eval::Value(json!("arn:b1")));
    }

    #[test]
    fn fast_forms_agree_with_the_interpreter() {
        let env = jq::Env::default();
        let raw = item();
        for text in [
            ".Properties.BucketName",
            ".Properties.Missing.Deeper",
            ".Properties.Tags[0].Key",
            ".Properties.Tags[-1].Value",
            ".Properties.Tags[5]",
            ".Properties.BucketName[0]",
            ".__ExtraContext.AccountName",
            ".Identifier",
            ".__Kind",
            "\"x\" + .Properties.BucketName",
            ".Properties.Nope + \"-s\"",
            "\"lit\"",
            "42",
            "[]",
            ".Properties.Tags | map({(.Key): .Value}) | add",
            ".Properties.Tags // [] | from_entries",
            ".Properties.Nope // [] | map({(.Key): .Value}) | add",
            ".Properties.Nope // [] | from_entries",
            ".Properties.Nope | from_entries",
            ".Properties.Odd | from_entries",
            ".Properties.Odd | map({(.Key): .Value}) | add",
            ".Properties.S | from_entries",
        ] {
            let e = Expr::compile(text).expect("compiles");
            assert!(!matches!(e.form, Form::Jq), "{text} has a fast form");
            let fast = e.eval(&Input::Item(&raw), &mut ValCache::default(), &env);
            let slow = match e.program.first(item_val(&raw), env.to_val()) {
                Outcome::Value(v) => jq::to_json(&v).map_or_else(Eval::Error, Eval::Value),
                Outcome::Empty => Eval::Empty,
                Outcome::Error(m) => Eval::Error(m),
            };
            assert_eq!(fast, slow, "{text}");
        }
    }

    #[test]
    fn paths_through_non_objects_fall_back_to_the_interpreter_error() {
        assert!(matches!(eval(".Properties.S.x"), Eval::Error(_)));
        assert!(matches!(eval(".Identifier.x"), Eval::Error(_)));
    }

    #[test]
    fn interpreted_expressions_see_the_documented_input() {
        assert_eq!(
            eval("[.Properties.Tags[] | {(.Key): .Value}] | add | .env"),
            Eval::Value(json!("prod"))
        );
        assert_eq!(eval("empty"), Eval::Empty);
        assert_eq!(eval("error(\"boom\")"), Eval::Error("boom".into()));
        assert_eq!(
            eval("keys_unsorted | first"),
            Eval::Value(json!("Identifier"))
        );
    }
}
