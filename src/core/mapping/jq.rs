//! The only place that knows jaq: compiling one jq expression, running it on one input, and
//! converting values between serde_json and jaq. Where jaq and jq 1.7 disagree on a builtin that
//! mappings use, the definitions in `JQ_COMPAT` and the natives in `compat_funs` replace jaq's;
//! where they give the same syntax different meanings (interpolation, `/`, `%`), `rewrite`
//! changes the parsed expression to call those natives. `prelude` parses the library once and
//! hands each expression only the definitions it can reach.

mod prelude;
mod rewrite;

use jaq_core::load::parse::Def;
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Cv, ValXs, Vars, data, load, unwrap_valr};
use jaq_json::{Map, Num, Rc, Val};
use serde_json::{Map as JsonMap, Number, Value as Json};

type D = data::JustLut<Val>;

/// jq 1.7 definitions of builtins whose jaq versions give different results. Each has a
/// conformance case in `tests/fixtures/jq/cases.json`.
const JQ_COMPAT: &str = r#"
def tostring: _tm_tostring;
def @text: _tm_tostring;
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

/// The name the expression is defined under: it is compiled as the body of a library
/// definition so that the compiler sees the rewritten syntax tree, not the text.
const MAIN: &str = "_tm_main";

/// Compiles one expression with the part of jaq's standard library and of the jq 1.7
/// compatibility definitions that it can reach.
pub(crate) fn compile(code: &str) -> Result<Program, Vec<CompileError>> {
    let library = prelude::prelude(JQ_COMPAT);
    match load::parse(code, |p| p.term()) {
        Some(term) => {
            let term = rewrite::expression(term);
            let mut defs: Vec<prelude::Def> = library.reachable_from(&term);
            defs.push(Def {
                name: MAIN,
                args: Vec::new(),
                body: term,
            });
            build(defs, MAIN, code)
        }
        // A syntax error, which the loader reports with its position, or module directives,
        // which it refuses.
        None => build(library.all(), code, code),
    }
}

/// The expression compiled for the native evaluator, when all of it is in its subset.
pub(crate) fn native(code: &str) -> Option<super::native::Native> {
    let term = load::parse(code, |p| p.term())?;
    super::native::compile(&term)
}

/// Loads `main` with `defs` as its library and compiles it; errors point into `code`.
fn build(defs: Vec<prelude::Def>, main: &str, code: &str) -> Result<Program, Vec<CompileError>> {
    // Our natives come first: the compiler takes the first native with a matching name.
    let funs = compat_funs()
        .chain(jaq_core::funs())
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let arena = Arena::default();
    let modules = Loader::new(defs)
        .load(
            &arena,
            File {
                code: main,
                path: (),
            },
        )
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
            let mut out: Vec<_> = errs
                .into_iter()
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
                .collect();
            // The rewrite can move operands (jq evaluates the right side of `+` first), which
            // the compiler then visits first; report in the order of the text.
            out.sort_by_key(|e| e.offset);
            out
        })?;
    Ok(Program { filter })
}

/// Natives that replace jaq's where jq 1.7 prints values differently, and the ones the
/// rewritten syntax calls (see `rewrite`).
fn compat_funs() -> impl Iterator<Item = jaq_core::native::Fun<D>> {
    use jaq_core::native::{Filter, run, v};
    let natives: [Filter<jaq_core::RunPtr<D>>; 4] = [
        ("tojson", v(0), tojson),
        (rewrite::TOSTRING, v(0), tostring),
        (rewrite::DIV, v(2), div),
        (rewrite::REM, v(2), rem),
    ];
    natives.into_iter().map(run::<D>)
}

fn tojson<'a>(cv: Cv<'a, D>) -> ValXs<'a, Val> {
    let mut out = String::new();
    write_jq_json(&mut out, &cv.1);
    jaq_core::native::bome(Ok(Val::from(out)))
}

/// jq's `tostring`: strings as they are, anything else as `tojson` prints it.
fn tostring<'a>(cv: Cv<'a, D>) -> ValXs<'a, Val> {
    match cv.1 {
        Val::TStr(_) | Val::BStr(_) => jaq_core::native::bome(Ok(cv.1)),
        other => tojson((cv.0, other)),
    }
}

/// jq's `$dividend / $divisor`: dividing a number by zero is an error; strings split as in jaq.
fn div<'a>(mut cv: Cv<'a, D>) -> ValXs<'a, Val> {
    let dividend = cv.0.pop_var();
    let divisor = cv.0.pop_var();
    jaq_core::native::bome(match (&dividend, &divisor) {
        (Val::Num(_), Val::Num(d)) if num_f64(d) == 0.0 => Err(operand_error(
            &dividend,
            &divisor,
            "cannot be divided because the divisor is zero",
        )),
        (Val::Num(_), Val::Num(_))
        | (Val::TStr(_), Val::TStr(_))
        | (Val::BStr(_), Val::BStr(_)) => dividend / divisor,
        _ => Err(operand_error(&dividend, &divisor, "cannot be divided")),
    })
}

/// jq's `$dividend % $divisor`: both sides are truncated to integers (saturating, as jq's
/// `dtoi`), a divisor that truncates to zero is an error, NaN on either side gives NaN.
fn rem<'a>(mut cv: Cv<'a, D>) -> ValXs<'a, Val> {
    let dividend = cv.0.pop_var();
    let divisor = cv.0.pop_var();
    let (Val::Num(a), Val::Num(b)) = (&dividend, &divisor) else {
        let why = "cannot be divided (remainder)";
        return jaq_core::native::bome(Err(operand_error(&dividend, &divisor, why)));
    };
    let (a, b) = (num_f64(a), num_f64(b));
    let result = if a.is_nan() || b.is_nan() {
        Ok(Val::Num(Num::Float(f64::NAN)))
    } else {
        // `as` saturates at the i64 bounds, which is what jq's `dtoi` does.
        let (a, b) = (a as i64, b as i64);
        match b {
            0 => Err(operand_error(
                &dividend,
                &divisor,
                "cannot be divided (remainder) because the divisor is zero",
            )),
            // `i64::MIN % -1` overflows; jq special-cases it the same way.
            -1 => Ok(Val::Num(Num::Int(0))),
            b => Ok(Val::Num(Num::from_integral(a % b))),
        }
    };
    jaq_core::native::bome(result)
}

/// jq's message for an operation two values do not allow: `number (1) and number (0) …`.
fn operand_error(l: &Val, r: &Val, why: &str) -> jaq_core::Error<Val> {
    let (lk, lv, rk, rv) = (kind_name(l), dump_short(l), kind_name(r), dump_short(r));
    jaq_core::Error::new(Val::from(format!("{lk} ({lv}) and {rk} ({rv}) {why}")))
}

/// Longest value jq shows in an error message, in bytes.
const ERROR_DUMP_MAX: usize = 14;

/// A value as jq shows it in error messages: JSON cut to 11 bytes plus `...` when longer than
/// 14 (jq's `jv_dump_string_trunc` with its 15-byte buffer), cut here on a character boundary.
fn dump_short(v: &Val) -> String {
    let mut text = String::new();
    write_jq_json(&mut text, v);
    if text.len() > ERROR_DUMP_MAX {
        let mut cut = ERROR_DUMP_MAX - 3;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// jq's name for a value's type.
fn kind_name(v: &Val) -> &'static str {
    match v {
        Val::Null => "null",
        Val::Bool(_) => "boolean",
        Val::Num(_) => "number",
        Val::TStr(_) | Val::BStr(_) => "string",
        Val::Arr(_) => "array",
        Val::Obj(_) => "object",
    }
}

/// A number as a double, as jq holds every number.
fn num_f64(n: &Num) -> f64 {
    match n {
        Num::Int(i) => *i as f64,
        Num::Float(f) => *f,
        Num::BigInt(b) => b.to_string().parse().unwrap_or(f64::NAN),
        Num::Dec(text) => text.parse().unwrap_or(f64::NAN),
    }
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

pub(crate) fn write_jq_string(out: &mut String, s: &str) {
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

/// What an evaluation sees besides its input: the environment jq's `env` and `$ENV` see, and
/// the observer told which expression runs (the caller's time limit). The variables are kept as
/// plain strings so that compiled mappings are `Send + Sync` (jaq values are reference-counted
/// with `Rc`); the object is built only for the rare expressions that mention the environment.
#[derive(Clone, Default)]
pub(crate) struct Env {
    vars: Vec<(String, String)>,
    observer: Option<std::sync::Arc<dyn super::Observer>>,
}

impl Env {
    pub(crate) fn new(
        vars: impl Iterator<Item = (String, String)>,
        observer: Option<std::sync::Arc<dyn super::Observer>>,
    ) -> Env {
        Env {
            vars: vars.collect(),
            observer,
        }
    }

    /// Tells the observer that expression `id` (see [`super::Observer::item_started`]) is about
    /// to be interpreted.
    pub(crate) fn evaluating(&self, id: usize) {
        if let Some(observer) = &self.observer {
            observer.evaluating(id);
        }
    }

    pub(crate) fn to_val(&self) -> Val {
        let mut map = Map::default();
        for (k, v) in &self.vars {
            map.insert(str_val(k), str_val(v));
        }
        Val::obj(map)
    }
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
                        let kind = kind_name(other);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(code: &str) -> Outcome {
        let program = compile(code).unwrap_or_else(|e| panic!("{code}: {e:?}"));
        program.first(Val::Null, Val::Null)
    }

    #[test]
    fn undefined_names_are_reported_where_they_are_in_the_expression() {
        let code = r#""\(nosuch)" + (1 / nosuch2(1)) + $nope"#;
        let errs = compile(code).err().expect("does not compile");
        let at = |s: &str| code.find(s).expect("present");
        let got: Vec<_> = errs
            .iter()
            .map(|e| (e.offset, e.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (at("nosuch)"), "undefined filter nosuch/0"),
                (at("nosuch2"), "undefined filter nosuch2/1"),
                (at("$nope"), "undefined variable $nope"),
            ]
        );
    }

    #[test]
    fn syntax_errors_are_reported_where_the_parser_stopped() {
        let errs = compile(".a | (.b").err().expect("does not compile");
        assert_eq!(
            errs,
            [CompileError {
                offset: 8,
                message: "expected closing parenthesis, found end of expression".into()
            }]
        );
        let errs = compile("include \"x\"; .").err().expect("does not compile");
        assert!(
            errs[0].message.starts_with("cannot load module"),
            "{errs:?}"
        );
    }

    #[test]
    fn interpolation_and_division_behave_as_in_jq() {
        let text = |o: Outcome| match o {
            Outcome::Value(Val::TStr(b)) => String::from_utf8_lossy(&b).into_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(text(run(r#""\(1.5 + 1.5)""#)), "3");
        assert_eq!(text(run(r#"def f: "\(. * 2)"; 1.5 | f"#)), "3");
        assert!(matches!(run("1 / 0"), Outcome::Error(m) if m.ends_with("divisor is zero")));
        assert!(matches!(
            run("reduce (1, 0) as $x (1; . / $x)"),
            Outcome::Error(_)
        ));
    }
}
