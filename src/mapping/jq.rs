//! The only place that knows jaq: compiling one jq expression, running it on one input, and
//! converting values between serde_json and jaq. Where jaq and jq 1.7 disagree on a builtin that
//! mappings use, the definitions in `JQ_COMPAT` replace jaq's so results equal jq's.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Cv, ValXs, Vars, data, load, unwrap_valr};
use jaq_json::{Map, Num, Rc, Val};
use serde_json::{Map as JsonMap, Number, Value as Json};

type D = data::JustLut<Val>;

/// jq 1.7 definitions of builtins whose jaq versions give different results. Each has a
/// conformance case in `tests/fixtures/jq/cases.json`.
const JQ_COMPAT: &str = r#"
def tostring: if type == "string" then . else tojson end;
def @text: tostring;
def join($x): reduce .[] as $i (null;
  (if . == null then "" else . + $x end) +
  ($i | if . == null then "" elif type == "boolean" or type == "number" then tojson else . end)) // "";
def _tm_object_key: if type == "string" then .
  else error("Cannot use \(type) (\(tojson)) as object key") end;
def from_entries: reduce .[] as $x ({};
  . + { ($x | .key // .name // .Name // .Key | _tm_object_key):
        ($x | if has("value") then .value else .Value end) });
def with_entries(f): to_entries | map(f) | from_entries;
def ltrimstr($x): if type == "string" and ($x | type == "string") and startswith($x)
  then .[($x | length):] else . end;
def rtrimstr($x): if type == "string" and ($x | type == "string") and endswith($x) and ($x | length) > 0
  then .[:length - ($x | length)] else . end;
def env: $ENV;
def IN(s): any(s == .; .);
def IN(src; s): any(src == s; .);
def test($re): if ($re | type) == "array" then test($re[0]; $re[1] // "") else test($re; "") end;
def match($re): if ($re | type) == "array" then match($re[0]; $re[1] // "") else match($re; "") end;
def capture($re):
  if ($re | type) == "array" then capture($re[0]; $re[1] // "") else capture($re; "") end;
def @csv: if type != "array" then error("\(type) (\(tojson)) cannot be csv-formatted, only an array can be")
  else map(if type == "number" then tojson
    elif type == "string" then "\"" + gsub("\""; "\"\"") + "\""
    elif type == "boolean" then tojson
    elif . == null then ""
    else error("\(type) (\(tojson)) is not valid in a csv row") end) | join(",") end;
"#;

/// The global variable that holds the environment jq may see.
const ENV_VAR: &str = "$ENV";

/// A compiled jq expression.
pub(crate) struct Program {
    filter: jaq_core::Filter<D>,
}

/// A jq expression that did not compile: where in the expression, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CompileError {
    pub offset: usize,
    pub message: String,
}

/// Byte offset of `part` within `whole`, when `part` is a slice of it.
fn offset_in(whole: &str, part: &str) -> usize {
    let start = whole.as_ptr() as usize;
    let at = part.as_ptr() as usize;
    if at >= start && at <= start + whole.len() {
        at - start
    } else {
        0
    }
}

fn found(token: &str) -> String {
    let token: String = token.chars().take(20).collect();
    if token.is_empty() {
        "end of expression".to_string()
    } else {
        format!("{token:?}")
    }
}

/// Compiles one expression with jaq's standard library and the jq 1.7 compatibility definitions.
pub(crate) fn compile(code: &str) -> Result<Program, Vec<CompileError>> {
    let compat = load::parse(JQ_COMPAT, |p| p.defs()).unwrap_or_default();
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs())
        .chain(compat);
    // Our natives come first: the compiler takes the first native with a matching name.
    let funs = compat_funs()
        .chain(jaq_core::funs())
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let arena = Arena::default();
    let modules = Loader::new(defs)
        .load(&arena, File { code, path: () })
        .map_err(|errs| {
            let mut out = Vec::new();
            for (_file, err) in errs {
                match err {
                    load::Error::Io(items) => {
                        for (path, msg) in items {
                            out.push(CompileError {
                                offset: offset_in(code, path),
                                message: format!("cannot load module {path}: {msg}"),
                            });
                        }
                    }
                    load::Error::Lex(items) => {
                        for (expect, token) in items {
                            out.push(CompileError {
                                offset: offset_in(code, token),
                                message: format!(
                                    "expected {}, found {}",
                                    expect.as_str(),
                                    found(token)
                                ),
                            });
                        }
                    }
                    load::Error::Parse(items) => {
                        for (expect, token) in items {
                            out.push(CompileError {
                                offset: offset_in(code, token),
                                message: format!(
                                    "expected {}, found {}",
                                    expect.as_str(),
                                    found(token)
                                ),
                            });
                        }
                    }
                }
            }
            out
        })?;
    let filter = Compiler::<_, D>::default()
        .with_funs(funs)
        .with_global_vars([ENV_VAR])
        .compile(modules)
        .map_err(|errs| {
            errs.into_iter()
                .flat_map(|(_file, undefined)| undefined)
                .map(|(name, kind)| CompileError {
                    offset: offset_in(code, name),
                    message: match kind {
                        jaq_core::compile::Undefined::Filter(arity) => {
                            format!("undefined filter {name}/{arity}")
                        }
                        other => format!("undefined {} {name}", other.as_str()),
                    },
                })
                .collect::<Vec<_>>()
        })?;
    Ok(Program { filter })
}

/// Natives that replace jaq's where jq 1.7 prints values differently.
fn compat_funs() -> impl Iterator<Item = jaq_core::native::Fun<D>> {
    use jaq_core::native::{Filter, run, v};
    let natives: [Filter<jaq_core::RunPtr<D>>; 1] = [("tojson", v(0), tojson)];
    natives.into_iter().map(run::<D>)
}

fn tojson<'a>(cv: Cv<'a, D>) -> ValXs<'a, Val> {
    let mut out = String::new();
    write_jq_json(&mut out, &cv.1);
    jaq_core::native::bome(Ok(Val::from(out)))
}

/// Writes a value as jq 1.7's `tojson` does: keys in insertion order, no spaces, jq's number format.
pub(crate) fn write_jq_json(out: &mut String, val: &Val) {
    match val {
        Val::Null => out.push_str("null"),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Num(n) => out.push_str(&jq_number(n)),
        Val::TStr(b) | Val::BStr(b) => write_jq_string(out, &String::from_utf8_lossy(b)),
        Val::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_jq_json(out, item);
            }
            out.push(']');
        }
        Val::Obj(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match k {
                    Val::TStr(b) | Val::BStr(b) => {
                        write_jq_string(out, &String::from_utf8_lossy(b))
                    }
                    other => {
                        let mut key = String::new();
                        write_jq_json(&mut key, other);
                        write_jq_string(out, &key);
                    }
                }
                out.push(':');
                write_jq_json(out, v);
            }
            out.push('}');
        }
    }
}

fn write_jq_string(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A number as jq 1.7 prints it: literals keep their text, computed doubles use the shortest
/// round-trip digits, in exponent form when far from 1.
pub(crate) fn jq_number(n: &Num) -> String {
    match n {
        Num::Int(i) => i.to_string(),
        Num::BigInt(b) => b.to_string(),
        Num::Dec(text) => text.to_string(),
        Num::Float(f) => jq_double(*f),
    }
}

/// jq's dtoa formatting (David Gay's `g_fmt` rules): exponent form when the decimal point lies
/// before the fourth digit after it or more than 15 places past the last significant digit.
pub(crate) fn jq_double(f: f64) -> String {
    if f.is_nan() {
        return "null".to_string();
    }
    let f = if f.is_infinite() {
        f64::MAX.copysign(f)
    } else {
        f
    };
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // `{:e}` gives the shortest round-trip digits: "d.ddde±x".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let ndigits = digits.len() as i32;
    let decpt = exp + 1;
    let sign = if f < 0.0 { "-" } else { "" };
    if decpt <= -4 || decpt > ndigits + 15 {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{esign}{:02}", exp.abs())
    } else if decpt <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-decpt) as usize))
    } else if decpt >= ndigits {
        format!("{sign}{digits}{}", "0".repeat((decpt - ndigits) as usize))
    } else {
        let (int, frac) = digits.split_at(decpt as usize);
        format!("{sign}{int}.{frac}")
    }
}

/// What running an expression gave: its first output, nothing, or an error.
#[derive(Debug)]
pub(crate) enum Outcome {
    Value(Val),
    Empty,
    Error(String),
}

impl Program {
    /// Runs the program on `input` and keeps the first output, as Ocean does.
    pub(crate) fn first(&self, input: Val, env: Val) -> Outcome {
        let ctx = Ctx::<D>::new(&self.filter.lut, Vars::new([env]));
        let mut outputs = self.filter.id.run((ctx, input)).map(unwrap_valr);
        match outputs.next() {
            None => Outcome::Empty,
            Some(Ok(v)) => Outcome::Value(v),
            Some(Err(e)) => Outcome::Error(error_message(e)),
        }
    }
}

/// jq's wording for errors: a string raised with `error(msg)` is the message itself; other
/// values are shown as JSON.
fn error_message(e: jaq_core::Error<Val>) -> String {
    match e.into_val() {
        Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(&b).into_owned(),
        other => {
            let mut text = String::new();
            write_jq_json(&mut text, &other);
            format!("{text} (not a string)")
        }
    }
}

/// The environment jq's `env` and `$ENV` see. Kept as plain strings so that compiled mappings
/// are `Send + Sync` (jaq values are reference-counted with `Rc`); the object is built only for
/// the rare expressions that mention the environment.
#[derive(Clone, Debug, Default)]
pub(crate) struct Env(Vec<(String, String)>);

impl Env {
    pub(crate) fn to_val(&self) -> Val {
        let mut map = Map::default();
        for (k, v) in &self.0 {
            map.insert(str_val(k), str_val(v));
        }
        Val::obj(map)
    }
}

pub(crate) fn env_object(vars: impl Iterator<Item = (String, String)>) -> Env {
    Env(vars.collect())
}

/// Whether an expression may read the environment (a cheap, conservative text check).
pub(crate) fn mentions_env(code: &str) -> bool {
    code.contains("env") || code.contains("ENV")
}

/// A jaq string from text.
pub(crate) fn str_val(s: &str) -> Val {
    Val::from(s.to_string())
}

/// Builds a jaq object from keys and values.
pub(crate) fn obj_val<'a>(entries: impl IntoIterator<Item = (&'a str, Val)>) -> Val {
    let mut map = Map::default();
    for (k, v) in entries {
        map.insert(str_val(k), v);
    }
    Val::obj(map)
}

/// Converts a JSON value to jaq's value.
pub(crate) fn to_val(json: &Json) -> Val {
    match json {
        Json::Null => Val::Null,
        Json::Bool(b) => Val::Bool(*b),
        Json::Number(n) => number_to_val(n),
        Json::String(s) => str_val(s),
        Json::Array(items) => Val::Arr(Rc::new(items.iter().map(to_val).collect())),
        Json::Object(map) => {
            let mut out = Map::default();
            out.reserve(map.len());
            for (k, v) in map {
                out.insert(str_val(k), to_val(v));
            }
            Val::obj(out)
        }
    }
}

fn number_to_val(n: &Number) -> Val {
    if let Some(i) = n.as_i64().and_then(|i| isize::try_from(i).ok()) {
        Val::Num(Num::Int(i))
    } else if let Some(u) = n.as_u64() {
        Val::Num(Num::from_integral(u))
    } else {
        // jq 1.7 keeps the text of number literals until arithmetic changes them, so `1.0`
        // stays "1.0" under `tostring`; jaq's decimal numbers behave the same way.
        Val::Num(Num::Dec(Rc::new(n.to_string())))
    }
}

/// Converts jaq's value to JSON, formatting numbers as jq 1.7 prints them. jaq allows objects
/// with non-string keys, jq does not: those are jq's error.
pub(crate) fn to_json(val: &Val) -> Result<Json, String> {
    Ok(match val {
        Val::Null => Json::Null,
        Val::Bool(b) => Json::Bool(*b),
        Val::Num(n) => num_to_json(n),
        Val::TStr(b) | Val::BStr(b) => Json::String(String::from_utf8_lossy(b).into_owned()),
        Val::Arr(items) => Json::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Val::Obj(map) => {
            let mut out = JsonMap::new();
            for (k, v) in map.iter() {
                let key = match k {
                    Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(b).into_owned(),
                    other => {
                        let mut text = String::new();
                        write_jq_json(&mut text, other);
                        let kind = match other {
                            Val::Null => "null",
                            Val::Bool(_) => "boolean",
                            Val::Num(_) => "number",
                            Val::Arr(_) => "array",
                            _ => "object",
                        };
                        return Err(format!("Cannot use {kind} ({text}) as object key"));
                    }
                };
                out.insert(key, to_json(v)?);
            }
            Json::Object(out)
        }
    })
}

fn num_to_json(n: &Num) -> Json {
    match n {
        Num::Int(i) => Json::from(*i as i64),
        Num::BigInt(b) => float_to_json(b.to_string().parse::<f64>().unwrap_or(f64::NAN)),
        Num::Float(f) => float_to_json(*f),
        Num::Dec(text) => match serde_json::from_str::<Json>(text) {
            Ok(Json::Number(n)) => match n.as_f64() {
                Some(f) if n.is_f64() => float_to_json(f),
                _ => Json::Number(n),
            },
            _ => float_to_json(text.parse::<f64>().unwrap_or(f64::NAN)),
        },
    }
}

/// Largest integer a double holds exactly; beyond it jq prints doubles in exponent form anyway.
const EXACT_INT_LIMIT: f64 = 9_007_199_254_740_992.0;

/// jq 1.7 numbers are doubles: integral ones print without a fraction, NaN prints as null and
/// infinities as the largest finite double.
pub(crate) fn float_to_json(f: f64) -> Json {
    if f.is_nan() {
        return Json::Null;
    }
    let f = if f.is_infinite() {
        f64::MAX.copysign(f)
    } else {
        f
    };
    if f.fract() == 0.0 && f.abs() < EXACT_INT_LIMIT {
        return Json::from(f as i64);
    }
    Number::from_f64(f).map_or(Json::Null, Json::Number)
}
