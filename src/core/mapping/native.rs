//! A native evaluator for the jq that mappings are mostly written in: paths, pipes, literals,
//! object and array construction, interpolation, `//`, `and`/`or`, comparisons, arithmetic,
//! `if`, `. as $x`, and about forty builtins (`select`, `map`, `add`, `first`, `join`, `split`,
//! `test`, `to_entries`, `sort_by`, `paths`, …), evaluated straight on the item's JSON with no
//! conversion to jaq's values and no interpreter.
//!
//! It is an accelerator, never an authority: anything it is not certain to evaluate exactly as
//! the interpreter would gives up ([`Stop::Fallback`]) and the expression is evaluated by jaq
//! instead. That covers every error (jq's message comes from the interpreter), numbers it would
//! have to print that are not integers, comparisons of objects, generators whose several outputs
//! meet in one object or string, and any syntax or builtin it does not know, which is decided
//! once at compile time. It is at least as eager as jaq: where jaq would stop early, it stops at
//! the same output; it never skips work that jaq would do and that could fail.

use std::borrow::Cow;
use std::cmp::Ordering;

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Pattern, Term};
use jaq_core::ops::{Cmp, Math};
use jaq_core::path::{Opt, Part};
use regex_bites::bytes::Regex;
use serde_json::{Map, Value as Json};

/// Why evaluation stopped before the end of a generator.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The consumer has what it wants (the first output).
    Done,
    /// Evaluate with the interpreter instead.
    Fallback,
}

type Res = Result<(), Stop>;
type V<'a> = Cow<'a, Json>;

/// A compiled expression.
pub(crate) struct Native {
    node: Node,
}

enum Node {
    Id,
    Lit(Json),
    Path(Box<Node>, Vec<(Step, bool)>),
    Pipe(Box<Node>, Box<Node>),
    /// `l as $x | r`: `$x` is the innermost variable in `r`.
    Bind(Box<Node>, Box<Node>),
    /// A variable by distance from the innermost binding.
    Var(usize),
    Comma(Box<Node>, Box<Node>),
    Alt(Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Math(Math, Box<Node>, Box<Node>),
    Cmp(Cmp, Box<Node>, Box<Node>),
    Neg(Box<Node>),
    Arr(Option<Box<Node>>),
    Obj(Vec<(Node, Node)>),
    Str(Vec<Piece>),
    If(Vec<(Node, Node)>, Box<Node>),
    Call(Builtin, Vec<Node>),
    /// `test("constant pattern")`.
    Matches(Regex),
}

enum Step {
    Key(String),
    Index(i64),
    Iter,
    Slice(Option<i64>, Option<i64>),
}

enum Piece {
    Text(String),
    Term(Node),
}

#[derive(Clone, Copy)]
enum Builtin {
    Empty,
    Not,
    Length,
    Keys,
    KeysUnsorted,
    Add,
    Any,
    All,
    ToEntries,
    FromEntries,
    AsciiDowncase,
    AsciiUpcase,
    ToString,
    ToNumber,
    Type,
    Sort,
    Unique,
    Paths,
    Values,
    Select,
    Map,
    MapValues,
    WithEntries,
    First,
    FirstOf,
    Last,
    Has,
    Split,
    Join,
    StartsWith,
    EndsWith,
    LtrimStr,
    RtrimStr,
    SortBy,
    Index,
    AnyOf,
    AllOf,
    AnyGen,
    AllGen,
}

fn builtin(name: &str, arity: usize) -> Option<Builtin> {
    use Builtin::*;
    Some(match (name, arity) {
        ("empty", 0) => Empty,
        ("not", 0) => Not,
        ("length", 0) => Length,
        ("keys", 0) => Keys,
        ("keys_unsorted", 0) => KeysUnsorted,
        ("add", 0) => Add,
        ("any", 0) => Any,
        ("all", 0) => All,
        ("to_entries", 0) => ToEntries,
        ("from_entries", 0) => FromEntries,
        ("ascii_downcase", 0) => AsciiDowncase,
        ("ascii_upcase", 0) => AsciiUpcase,
        ("tostring", 0) => ToString,
        ("tonumber", 0) => ToNumber,
        ("type", 0) => Type,
        ("sort", 0) => Sort,
        ("unique", 0) => Unique,
        ("paths", 0) => Paths,
        ("values", 0) => Values,
        ("first", 0) => First,
        ("last", 0) => Last,
        ("select", 1) => Select,
        ("map", 1) => Map,
        ("map_values", 1) => MapValues,
        ("with_entries", 1) => WithEntries,
        ("first", 1) => FirstOf,
        ("has", 1) => Has,
        ("split", 1) => Split,
        ("join", 1) => Join,
        ("startswith", 1) => StartsWith,
        ("endswith", 1) => EndsWith,
        ("ltrimstr", 1) => LtrimStr,
        ("rtrimstr", 1) => RtrimStr,
        ("sort_by", 1) => SortBy,
        ("index", 1) => Index,
        ("any", 1) => AnyOf,
        ("all", 1) => AllOf,
        ("any", 2) => AnyGen,
        ("all", 2) => AllGen,
        _ => return None,
    })
}

/// Compiles a parsed expression (before the interpreter's rewrites); `None` when any part of
/// it is outside the native subset.
pub(crate) fn compile(term: &Term<&str>) -> Option<Native> {
    let mut vars = Vec::new();
    Some(Native {
        node: node(term, &mut vars)?,
    })
}

fn int_literal(text: &str) -> Option<Json> {
    if text.is_empty() || text.len() > 15 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<i64>().ok().map(Json::from)
}

fn const_index(term: &Term<&str>) -> Option<Step> {
    match term {
        Term::Num(n) => int_literal(n).and_then(|v| v.as_i64()).map(Step::Index),
        Term::Neg(t) => match &**t {
            Term::Num(n) => int_literal(n)
                .and_then(|v| v.as_i64())
                .map(|i| Step::Index(-i)),
            _ => None,
        },
        Term::Str(None, parts) => plain_string(parts).map(Step::Key),
        _ => None,
    }
}

fn const_bound(term: &Option<Term<&str>>) -> Option<Option<i64>> {
    match term {
        None => Some(None),
        Some(t) => match const_index(t)? {
            Step::Index(i) => Some(Some(i)),
            _ => None,
        },
    }
}

fn plain_string(parts: &[StrPart<&str, Term<&str>>]) -> Option<String> {
    let mut out = String::new();
    for part in parts {
        match part {
            StrPart::Str(s) => out.push_str(s),
            StrPart::Char(c) => out.push(*c),
            StrPart::Term(_) => return None,
        }
    }
    Some(out)
}

fn node<'s>(term: &Term<&'s str>, vars: &mut Vec<&'s str>) -> Option<Node> {
    let bx = |t: &Term<&'s str>, vars: &mut Vec<&'s str>| node(t, vars).map(Box::new);
    Some(match term {
        Term::Id => Node::Id,
        Term::Num(n) => Node::Lit(int_literal(n)?),
        Term::Str(None, parts) => {
            let mut pieces = Vec::new();
            for part in parts {
                match part {
                    StrPart::Str(s) => pieces.push(Piece::Text((*s).to_string())),
                    StrPart::Char(c) => pieces.push(Piece::Text(c.to_string())),
                    StrPart::Term(t) => pieces.push(Piece::Term(node(t, vars)?)),
                }
            }
            match pieces.as_slice() {
                [] => Node::Lit(Json::String(String::new())),
                [Piece::Text(s)] => Node::Lit(Json::String(s.clone())),
                _ => Node::Str(pieces),
            }
        }
        Term::Arr(inner) => Node::Arr(match inner {
            None => None,
            Some(t) => Some(bx(t, vars)?),
        }),
        Term::Obj(entries) => {
            let mut out = Vec::new();
            for (k, v) in entries {
                let key = match k {
                    Term::Var(name) if v.is_none() => {
                        let value = var(name, vars)?;
                        let name = name.strip_prefix('$')?;
                        out.push((Node::Lit(Json::String(name.to_string())), value));
                        continue;
                    }
                    other => node(other, vars)?,
                };
                let value = match v {
                    Some(v) => node(v, vars)?,
                    None => match &key {
                        Node::Lit(Json::String(s)) => {
                            Node::Path(Box::new(Node::Id), vec![(Step::Key(s.clone()), false)])
                        }
                        _ => return None,
                    },
                };
                out.push((key, value));
            }
            Node::Obj(out)
        }
        Term::Neg(t) => Node::Neg(bx(t, vars)?),
        Term::BinOp(l, op, r) => match op {
            BinaryOp::Pipe(None) => Node::Pipe(bx(l, vars)?, bx(r, vars)?),
            BinaryOp::Pipe(Some(Pattern::Var(name))) => {
                let bound = bx(l, vars)?;
                vars.push(name);
                let body = bx(r, vars);
                vars.pop();
                Node::Bind(bound, body?)
            }
            BinaryOp::Comma => Node::Comma(bx(l, vars)?, bx(r, vars)?),
            BinaryOp::Alt => Node::Alt(bx(l, vars)?, bx(r, vars)?),
            BinaryOp::And => Node::And(bx(l, vars)?, bx(r, vars)?),
            BinaryOp::Or => Node::Or(bx(l, vars)?, bx(r, vars)?),
            BinaryOp::Math(m @ (Math::Add | Math::Sub | Math::Mul | Math::Div)) => {
                Node::Math(*m, bx(l, vars)?, bx(r, vars)?)
            }
            BinaryOp::Cmp(c) => Node::Cmp(*c, bx(l, vars)?, bx(r, vars)?),
            _ => return None,
        },
        Term::IfThenElse(branches, otherwise) => {
            let mut out = Vec::new();
            for (c, t) in branches {
                out.push((node(c, vars)?, node(t, vars)?));
            }
            let otherwise = match otherwise {
                Some(e) => node(e, vars)?,
                None => Node::Id,
            };
            Node::If(out, Box::new(otherwise))
        }
        Term::Call(name, args) => {
            match (*name, args.len()) {
                ("true", 0) => return Some(Node::Lit(Json::Bool(true))),
                ("false", 0) => return Some(Node::Lit(Json::Bool(false))),
                ("null", 0) => return Some(Node::Lit(Json::Null)),
                _ => {}
            }
            if let ("test", [pattern]) = (*name, &args[..]) {
                return matches(pattern);
            }
            let b = builtin(name, args.len())?;
            let mut out = Vec::new();
            for a in args {
                out.push(node(a, vars)?);
            }
            Node::Call(b, out)
        }
        Term::Var(name) => var(name, vars)?,
        Term::Path(head, path) => {
            let head = bx(head, vars)?;
            let mut steps = Vec::new();
            for (part, opt) in &path.0 {
                let step = match part {
                    Part::Index(t) => const_index(t)?,
                    Part::Range(None, None) => Step::Iter,
                    Part::Range(from, to) => Step::Slice(const_bound(from)?, const_bound(to)?),
                };
                steps.push((step, matches!(opt, Opt::Optional)));
            }
            Node::Path(head, steps)
        }
        _ => return None,
    })
}

/// `test($re)` with a constant pattern, compiled once here as jaq compiles it (flags ""); any
/// other pattern, or one the regex engine refuses, is left to the interpreter.
fn matches(pattern: &Term<&str>) -> Option<Node> {
    let Term::Str(None, parts) = pattern else {
        return None;
    };
    let pattern = plain_string(parts)?;
    let regex = regex_bites::bytes::RegexBuilder::new(&pattern)
        .case_insensitive(false)
        .multi_line(false)
        .dot_matches_new_line(false)
        .swap_greed(false)
        .ignore_whitespace(false)
        .build()
        .ok()?;
    Some(Node::Matches(regex))
}

fn var(name: &str, vars: &[&str]) -> Option<Node> {
    vars.iter().rev().position(|v| *v == name).map(Node::Var)
}

/// Variables in scope, innermost first.
struct Vars<'p, 'a> {
    value: Option<&'p V<'a>>,
    outer: Option<&'p Vars<'p, 'a>>,
}

impl<'a> Vars<'_, 'a> {
    fn get(&self, mut depth: usize) -> Option<&V<'a>> {
        let mut at = self;
        loop {
            if depth == 0 {
                return at.value;
            }
            depth -= 1;
            at = at.outer?;
        }
    }
}

/// The outcome of [`Native::first`]: a value, no output, or "use the interpreter".
pub(crate) enum First {
    Value(Json),
    Empty,
    Fallback,
}

impl Native {
    /// The first output on `input`.
    pub(crate) fn first(&self, input: &Json) -> First {
        let mut got = None;
        let vars = Vars {
            value: None,
            outer: None,
        };
        let r = run(&self.node, &vars, Cow::Borrowed(input), &mut |v| {
            got = Some(v.into_owned());
            Err(Stop::Done)
        });
        match (r, got) {
            (Err(Stop::Fallback), _) => First::Fallback,
            (_, Some(v)) => First::Value(v),
            (Ok(()), None) => First::Empty,
            (Err(Stop::Done), None) => First::Fallback,
        }
    }
}

fn fallback<T>() -> Result<T, Stop> {
    Err(Stop::Fallback)
}

fn truthy(v: &Json) -> bool {
    !matches!(v, Json::Null | Json::Bool(false))
}

/// Every output of `n` on `input`, collected.
fn collect<'a>(n: &Node, vars: &Vars<'_, 'a>, input: V<'a>) -> Result<Vec<V<'a>>, Stop> {
    let mut out = Vec::new();
    run(n, vars, input, &mut |v| {
        out.push(v);
        Ok(())
    })?;
    Ok(out)
}

/// The single output of `n`; several outputs fall back (their order in a product is jq's).
fn single<'a>(n: &Node, vars: &Vars<'_, 'a>, input: V<'a>) -> Result<Option<V<'a>>, Stop> {
    let mut out = collect(n, vars, input)?;
    match out.len() {
        0 => Ok(None),
        1 => Ok(out.pop()),
        _ => fallback(),
    }
}

type Sink<'o, 'a> = dyn FnMut(V<'a>) -> Res + 'o;

fn run<'a>(n: &Node, vars: &Vars<'_, 'a>, input: V<'a>, out: &mut Sink<'_, 'a>) -> Res {
    match n {
        Node::Id => out(input),
        Node::Lit(v) => out(Cow::Owned(v.clone())),
        Node::Var(depth) => match vars.get(*depth) {
            Some(v) => out(v.clone()),
            None => fallback(),
        },
        Node::Path(head, steps) => run(head, vars, input, &mut |v| path(v, steps, out)),
        Node::Pipe(l, r) => run(l, vars, input, &mut |v| run(r, vars, v, out)),
        Node::Bind(bound, body) => {
            let values = collect(bound, vars, input.clone())?;
            for value in &values {
                let inner = Vars {
                    value: Some(value),
                    outer: Some(vars),
                };
                run(body, &inner, input.clone(), out)?;
            }
            Ok(())
        }
        Node::Comma(l, r) => {
            run(l, vars, input.clone(), out)?;
            run(r, vars, input, out)
        }
        Node::Alt(l, r) => {
            let left: Vec<V<'a>> = collect(l, vars, input.clone())?
                .into_iter()
                .filter(|v| truthy(v))
                .collect();
            if left.is_empty() {
                run(r, vars, input, out)
            } else {
                left.into_iter().try_for_each(&mut *out)
            }
        }
        Node::And(l, r) | Node::Or(l, r) => {
            let and = matches!(n, Node::And(..));
            run(l, vars, input.clone(), &mut |lv| {
                let lt = truthy(&lv);
                if and != lt {
                    return out(Cow::Owned(Json::Bool(lt)));
                }
                run(r, vars, input.clone(), &mut |rv| {
                    out(Cow::Owned(Json::Bool(truthy(&rv))))
                })
            })
        }
        Node::Math(op, l, r) => {
            let (Some(lv), Some(rv)) = (single(l, vars, input.clone())?, single(r, vars, input)?)
            else {
                return Ok(());
            };
            out(Cow::Owned(math(*op, lv, rv)?))
        }
        Node::Cmp(op, l, r) => {
            let (Some(lv), Some(rv)) = (single(l, vars, input.clone())?, single(r, vars, input)?)
            else {
                return Ok(());
            };
            let result = match op {
                Cmp::Eq => jq_eq(&lv, &rv),
                Cmp::Ne => !jq_eq(&lv, &rv),
                Cmp::Lt => jq_cmp(&lv, &rv)? == Ordering::Less,
                Cmp::Le => jq_cmp(&lv, &rv)? != Ordering::Greater,
                Cmp::Gt => jq_cmp(&lv, &rv)? == Ordering::Greater,
                Cmp::Ge => jq_cmp(&lv, &rv)? != Ordering::Less,
            };
            out(Cow::Owned(Json::Bool(result)))
        }
        Node::Neg(t) => run(t, vars, input, &mut |v| match v.as_i64() {
            Some(i) if i != i64::MIN => out(Cow::Owned(Json::from(-i))),
            _ => fallback(),
        }),
        Node::Arr(None) => out(Cow::Owned(Json::Array(Vec::new()))),
        Node::Arr(Some(t)) => {
            let items = collect(t, vars, input)?;
            out(Cow::Owned(Json::Array(
                items.into_iter().map(Cow::into_owned).collect(),
            )))
        }
        Node::Obj(entries) => object(entries, vars, input, out),
        Node::Str(pieces) => interpolate(pieces, vars, input, out),
        Node::If(branches, otherwise) => if_chain(branches, otherwise, vars, input, out),
        Node::Call(b, args) => call(*b, args, vars, input, out),
        Node::Matches(regex) => match &*input {
            Json::String(s) => out(Cow::Owned(Json::Bool(regex.is_match(s.as_bytes())))),
            _ => fallback(),
        },
    }
}

/// `{k: v, …}`: one object, or none when an entry has no output.
fn object<'a>(
    entries: &[(Node, Node)],
    vars: &Vars<'_, 'a>,
    input: V<'a>,
    out: &mut Sink<'_, 'a>,
) -> Res {
    // Every entry is evaluated before an empty one ends the object: jq may evaluate
    // them in another order, and an error anywhere must fall back.
    let mut map = Map::with_capacity(entries.len());
    let mut empty = false;
    for (k, v) in entries {
        let key = single(k, vars, input.clone())?;
        let value = single(v, vars, input.clone())?;
        match (key, value) {
            (Some(key), Some(value)) => {
                let Json::String(key) = key.into_owned() else {
                    return fallback();
                };
                map.insert(key, value.into_owned());
            }
            _ => empty = true,
        }
    }
    if empty {
        return Ok(());
    }
    out(Cow::Owned(Json::Object(map)))
}

/// `"text \(term)"`: one string, or none when a term has no output.
fn interpolate<'a>(
    pieces: &[Piece],
    vars: &Vars<'_, 'a>,
    input: V<'a>,
    out: &mut Sink<'_, 'a>,
) -> Res {
    let mut text = String::new();
    let mut empty = false;
    for piece in pieces {
        match piece {
            Piece::Text(s) => text.push_str(s),
            Piece::Term(t) => match single(t, vars, input.clone())? {
                Some(v) => to_string(&v, &mut text)?,
                None => empty = true,
            },
        }
    }
    if empty {
        return Ok(());
    }
    out(Cow::Owned(Json::String(text)))
}

fn if_chain<'a>(
    branches: &[(Node, Node)],
    otherwise: &Node,
    vars: &Vars<'_, 'a>,
    input: V<'a>,
    out: &mut Sink<'_, 'a>,
) -> Res {
    let Some(((cond, then), rest)) = branches.split_first() else {
        return run(otherwise, vars, input, out);
    };
    run(cond, vars, input.clone(), &mut |c| {
        if truthy(&c) {
            run(then, vars, input.clone(), out)
        } else {
            if_chain(rest, otherwise, vars, input.clone(), out)
        }
    })
}

/// Applies path steps; a wrong type is jq's error, or nothing after `?`.
fn path<'a>(v: V<'a>, steps: &[(Step, bool)], out: &mut Sink<'_, 'a>) -> Res {
    let Some(((step, optional), rest)) = steps.split_first() else {
        return out(v);
    };
    let wrong = |optional: bool| if optional { Ok(()) } else { fallback() };
    match step {
        Step::Key(key) => match v {
            Cow::Borrowed(Json::Object(m)) => path(
                m.get(key).map_or(Cow::Owned(Json::Null), Cow::Borrowed),
                rest,
                out,
            ),
            Cow::Owned(Json::Object(mut m)) => path(
                Cow::Owned(m.swap_remove(key).unwrap_or(Json::Null)),
                rest,
                out,
            ),
            Cow::Borrowed(Json::Null) | Cow::Owned(Json::Null) => {
                path(Cow::Owned(Json::Null), rest, out)
            }
            _ => wrong(*optional),
        },
        Step::Index(i) => {
            let at = |len: usize| {
                let len = len as i64;
                let at = if *i < 0 { len + i } else { *i };
                usize::try_from(at).ok()
            };
            match v {
                Cow::Borrowed(Json::Array(a)) => path(
                    at(a.len())
                        .and_then(|i| a.get(i))
                        .map_or(Cow::Owned(Json::Null), Cow::Borrowed),
                    rest,
                    out,
                ),
                Cow::Owned(Json::Array(mut a)) => {
                    let got = match at(a.len()) {
                        Some(i) if i < a.len() => a.swap_remove(i),
                        _ => Json::Null,
                    };
                    path(Cow::Owned(got), rest, out)
                }
                Cow::Borrowed(Json::Null) | Cow::Owned(Json::Null) => {
                    path(Cow::Owned(Json::Null), rest, out)
                }
                _ => wrong(*optional),
            }
        }
        Step::Iter => match v {
            Cow::Borrowed(Json::Array(a)) => {
                a.iter().try_for_each(|x| path(Cow::Borrowed(x), rest, out))
            }
            Cow::Borrowed(Json::Object(m)) => m
                .values()
                .try_for_each(|x| path(Cow::Borrowed(x), rest, out)),
            Cow::Owned(Json::Array(a)) => a
                .into_iter()
                .try_for_each(|x| path(Cow::Owned(x), rest, out)),
            Cow::Owned(Json::Object(m)) => m
                .into_iter()
                .try_for_each(|(_, x)| path(Cow::Owned(x), rest, out)),
            _ => wrong(*optional),
        },
        Step::Slice(from, to) => {
            let len_of = |len: usize| {
                let len = len as i64;
                let clamp = |b: i64| {
                    let b = if b < 0 { len + b } else { b };
                    b.clamp(0, len) as usize
                };
                let start = from.map_or(0, clamp);
                let end = to.map_or(len as usize, clamp);
                (start, end.max(start))
            };
            match &*v {
                Json::Null => path(Cow::Owned(Json::Null), rest, out),
                Json::Array(a) => {
                    let (s, e) = len_of(a.len());
                    path(Cow::Owned(Json::Array(a[s..e].to_vec())), rest, out)
                }
                // Strings slice by code point in jq; only ASCII is certain to agree.
                Json::String(s) if s.is_ascii() => {
                    let (b, e) = len_of(s.len());
                    path(Cow::Owned(Json::String(s[b..e].to_string())), rest, out)
                }
                _ => fallback(),
            }
        }
    }
}

fn as_f64(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        _ => None,
    }
}

fn math(op: Math, l: V<'_>, r: V<'_>) -> Result<Json, Stop> {
    match (op, &*l, &*r) {
        (Math::Add, Json::Null, _) => Ok(r.into_owned()),
        (Math::Add, _, Json::Null) => Ok(l.into_owned()),
        (_, Json::Number(a), Json::Number(b)) => {
            if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
                let exact = match op {
                    Math::Add => a.checked_add(b),
                    Math::Sub => a.checked_sub(b),
                    Math::Mul => a.checked_mul(b),
                    _ => None,
                };
                // On overflow jaq widens to a big integer; leave that to it.
                return match exact {
                    Some(x) => Ok(Json::from(x)),
                    None if matches!(op, Math::Div) => Ok(super::jq::float_to_json(if b == 0 {
                        return fallback();
                    } else {
                        a as f64 / b as f64
                    })),
                    None => fallback(),
                };
            }
            let (Some(a), Some(b)) = (a.as_f64(), b.as_f64()) else {
                return fallback();
            };
            let x = match op {
                Math::Add => a + b,
                Math::Sub => a - b,
                Math::Mul => a * b,
                Math::Div if b != 0.0 => a / b,
                _ => return fallback(),
            };
            if !x.is_finite() {
                return fallback();
            }
            Ok(super::jq::float_to_json(x))
        }
        (Math::Add, Json::String(a), Json::String(b)) => {
            let mut s = String::with_capacity(a.len() + b.len());
            s.push_str(a);
            s.push_str(b);
            Ok(Json::String(s))
        }
        (Math::Add, Json::Array(_), Json::Array(b)) => {
            let mut a = match l.into_owned() {
                Json::Array(a) => a,
                _ => return fallback(),
            };
            a.extend(b.iter().cloned());
            Ok(Json::Array(a))
        }
        (Math::Add, Json::Object(_), Json::Object(b)) => {
            let mut a = match l.into_owned() {
                Json::Object(a) => a,
                _ => return fallback(),
            };
            for (k, v) in b {
                a.insert(k.clone(), v.clone());
            }
            Ok(Json::Object(a))
        }
        _ => fallback(),
    }
}

fn kind_rank(v: &Json) -> u8 {
    match v {
        Json::Null => 0,
        Json::Bool(false) => 1,
        Json::Bool(true) => 2,
        Json::Number(_) => 3,
        Json::String(_) => 4,
        Json::Array(_) => 5,
        Json::Object(_) => 6,
    }
}

/// jq's equality: numbers compare as doubles, objects regardless of key order.
fn jq_eq(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| jq_eq(a, b))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| jq_eq(v, w)))
        }
        _ => a == b,
    }
}

/// jq's order; objects fall back.
fn jq_cmp(a: &Json, b: &Json) -> Result<Ordering, Stop> {
    let (ra, rb) = (kind_rank(a), kind_rank(b));
    if ra != rb {
        return Ok(ra.cmp(&rb));
    }
    match (a, b) {
        (Json::Number(_), Json::Number(_)) => {
            let (Some(x), Some(y)) = (as_f64(a), as_f64(b)) else {
                return fallback();
            };
            x.partial_cmp(&y).map_or_else(fallback, Ok)
        }
        (Json::String(x), Json::String(y)) => Ok(x.as_bytes().cmp(y.as_bytes())),
        (Json::Array(x), Json::Array(y)) => {
            for (a, b) in x.iter().zip(y) {
                let o = jq_cmp(a, b)?;
                if o != Ordering::Equal {
                    return Ok(o);
                }
            }
            Ok(x.len().cmp(&y.len()))
        }
        (Json::Object(_), _) => fallback(),
        _ => Ok(Ordering::Equal),
    }
}

/// jq's `tostring`, appended; numbers that are not integers fall back (jq's number format).
fn to_string(v: &Json, out: &mut String) -> Res {
    match v {
        Json::String(s) => {
            out.push_str(s);
            Ok(())
        }
        other => to_json(other, out),
    }
}

fn to_json(v: &Json, out: &mut String) -> Res {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) if n.is_i64() || n.is_u64() => out.push_str(&n.to_string()),
        Json::Number(_) => return fallback(),
        Json::String(s) => super::jq::write_jq_string(out, s),
        Json::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                to_json(x, out)?;
            }
            out.push(']');
        }
        Json::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                super::jq::write_jq_string(out, k);
                out.push(':');
                to_json(x, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn string_arg<'a>(
    arg: &Node,
    vars: &Vars<'_, 'a>,
    input: &V<'a>,
    each: &mut dyn FnMut(&str) -> Res,
) -> Res {
    run(arg, vars, input.clone(), &mut |a| match &*a {
        Json::String(s) => each(s),
        _ => fallback(),
    })
}

fn values_of<'a>(v: V<'a>) -> Result<Vec<V<'a>>, Stop> {
    Ok(match v {
        Cow::Borrowed(Json::Array(a)) => a.iter().map(Cow::Borrowed).collect(),
        Cow::Borrowed(Json::Object(m)) => m.values().map(Cow::Borrowed).collect(),
        Cow::Owned(Json::Array(a)) => a.into_iter().map(Cow::Owned).collect(),
        Cow::Owned(Json::Object(m)) => m.into_iter().map(|(_, x)| Cow::Owned(x)).collect(),
        _ => return fallback(),
    })
}

fn call<'a>(
    b: Builtin,
    args: &[Node],
    vars: &Vars<'_, 'a>,
    input: V<'a>,
    out: &mut Sink<'_, 'a>,
) -> Res {
    use Builtin::*;
    match b {
        Select | Map | MapValues | WithEntries | FirstOf => call_filter(b, args, vars, input, out),
        AnyOf | AllOf | AnyGen | AllGen | SortBy => call_each(b, args, vars, input, out),
        Has | Index | Split | Join | StartsWith | EndsWith | LtrimStr | RtrimStr => {
            call_argument(b, args, vars, input, out)
        }
        Length | Keys | KeysUnsorted | Add | Any | All | ToEntries | FromEntries | Sort
        | Unique | Paths | First | Last => call_collection(b, input, out),
        Empty | Not | AsciiDowncase | AsciiUpcase | ToString | ToNumber | Type | Values => {
            call_scalar(b, input, out)
        }
    }
}

/// Builtins that run a filter argument on (parts of) the input.
fn call_filter<'a>(
    b: Builtin,
    args: &[Node],
    vars: &Vars<'_, 'a>,
    input: V<'a>,
    out: &mut Sink<'_, 'a>,
) -> Res {
    use Builtin::*;
    let arg = |i: usize| args.get(i).ok_or(Stop::Fallback);
    let owned = |v: Json| Cow::Owned(v);
    match b {
        Select => run(arg(0)?, vars, input.clone(), &mut |c| {
            if truthy(&c) {
                out(input.clone())
            } else {
                Ok(())
            }
        }),
        Map => {
            let f = arg(0)?;
            let mut items = Vec::new();
            for x in values_of(input)? {
                run(f, vars, x, &mut |y| {
                    items.push(y.into_owned());
                    Ok(())
                })?;
            }
            out(owned(Json::Array(items)))
        }
        MapValues => {
            let f = arg(0)?;
            let first = |x: V<'a>| -> Result<Json, Stop> {
                let mut got = None;
                match run(f, vars, x, &mut |y| {
                    got = Some(y.into_owned());
                    Err(Stop::Done)
                }) {
                    Err(Stop::Fallback) => fallback(),
                    _ => got.ok_or(Stop::Fallback),
                }
            };
            match &*input {
                Json::Object(m) => {
                    let mut r = serde_json::Map::with_capacity(m.len());
                    for (k, v) in m {
                        r.insert(k.clone(), first(Cow::Owned(v.clone()))?);
                    }
                    out(owned(Json::Object(r)))
                }
                Json::Array(a) => {
                    let mut r = Vec::with_capacity(a.len());
                    for v in a {
                        r.push(first(Cow::Owned(v.clone()))?);
                    }
                    out(owned(Json::Array(r)))
                }
                _ => fallback(),
            }
        }
        WithEntries => {
            let Json::Object(m) = &*input else {
                return fallback();
            };
            let f = arg(0)?;
            let mut mapped = Vec::with_capacity(m.len());
            for (k, v) in m {
                let mut e = serde_json::Map::with_capacity(2);
                e.insert("key".into(), Json::String(k.clone()));
                e.insert("value".into(), v.clone());
                run(f, vars, owned(Json::Object(e)), &mut |x| {
                    mapped.push(x.into_owned());
                    Ok(())
                })?;
            }
            out(owned(from_entries(&Json::Array(mapped))?))
        }
        FirstOf => {
            let mut got = None;
            match run(arg(0)?, vars, input, &mut |y| {
                got = Some(y);
                Err(Stop::Done)
            }) {
                Err(Stop::Fallback) => return fallback(),
                Err(Stop::Done) | Ok(()) => {}
            }
            match got {
                Some(v) => out(v),
                None => Ok(()),
            }
        }
        _ => fallback(),
    }
}

/// Builtins that run a filter on each element to decide (`any`, `all`) or to order (`sort_by`).
fn call_each<'a>(
    b: Builtin,
    args: &[Node],
    vars: &Vars<'_, 'a>,
    input: V<'a>,
    out: &mut Sink<'_, 'a>,
) -> Res {
    use Builtin::*;
    let arg = |i: usize| args.get(i).ok_or(Stop::Fallback);
    let owned = |v: Json| Cow::Owned(v);
    match b {
        AnyOf | AllOf | AnyGen | AllGen => {
            let want = matches!(b, AnyOf | AnyGen);
            let (generator, cond) = match b {
                AnyGen | AllGen => (Some(arg(0)?), arg(1)?),
                _ => (None, arg(0)?),
            };
            let mut found = false;
            let mut check = |x: V<'a>| {
                run(cond, vars, x, &mut |c| {
                    if truthy(&c) == want {
                        found = true;
                        Err(Stop::Done)
                    } else {
                        Ok(())
                    }
                })
            };
            let r = match generator {
                Some(g) => run(g, vars, input, &mut check),
                None => values_of(input)?.into_iter().try_for_each(&mut check),
            };
            match r {
                Err(Stop::Fallback) => return fallback(),
                Err(Stop::Done) | Ok(()) => {}
            }
            out(owned(Json::Bool(found == want)))
        }
        SortBy => {
            let Json::Array(a) = &*input else {
                return fallback();
            };
            let f = arg(0)?;
            let mut keyed = Vec::with_capacity(a.len());
            for x in a {
                let key: Vec<Json> = collect(f, vars, Cow::Borrowed(x))?
                    .into_iter()
                    .map(Cow::into_owned)
                    .collect();
                keyed.push((Json::Array(key), x));
            }
            let mut failed = false;
            keyed.sort_by(|(ka, _), (kb, _)| {
                jq_cmp(ka, kb).unwrap_or_else(|_| {
                    failed = true;
                    Ordering::Equal
                })
            });
            if failed {
                return fallback();
            }
            out(owned(Json::Array(
                keyed.into_iter().map(|(_, x)| x.clone()).collect(),
            )))
        }
        _ => fallback(),
    }
}

/// Builtins whose argument is a value (a key, a separator, a prefix).
fn call_argument<'a>(
    b: Builtin,
    args: &[Node],
    vars: &Vars<'_, 'a>,
    input: V<'a>,
    out: &mut Sink<'_, 'a>,
) -> Res {
    use Builtin::*;
    let arg = |i: usize| args.get(i).ok_or(Stop::Fallback);
    let owned = |v: Json| Cow::Owned(v);
    match b {
        Has => run(arg(0)?, vars, input.clone(), &mut |k| {
            let has = match (&*input, &*k) {
                (Json::Object(m), Json::String(k)) => m.contains_key(k),
                (Json::Array(a), Json::Number(n)) => match n.as_i64() {
                    Some(i) if i >= 0 => (i as u64) < a.len() as u64,
                    _ => return fallback(),
                },
                _ => return fallback(),
            };
            out(owned(Json::Bool(has)))
        }),
        Index => run(
            arg(0)?,
            vars,
            input.clone(),
            &mut |x| match (&*input, &*x) {
                (Json::Array(a), Json::Array(_) | Json::Object(_)) => {
                    let _ = a;
                    fallback()
                }
                (Json::Array(a), needle) => {
                    let at = a.iter().position(|e| jq_eq(e, needle));
                    out(owned(at.map_or(Json::Null, Json::from)))
                }
                _ => fallback(),
            },
        ),
        Split => string_arg(arg(0)?, vars, &input, &mut |sep| match &*input {
            // jq splits "" into no parts at all.
            Json::String(s) if s.is_empty() => out(owned(Json::Array(Vec::new()))),
            Json::String(s) if !sep.is_empty() => out(owned(Json::Array(
                s.split(sep).map(|p| Json::String(p.to_string())).collect(),
            ))),
            _ => fallback(),
        }),
        Join => string_arg(arg(0)?, vars, &input, &mut |sep| {
            let Json::Array(a) = &*input else {
                return fallback();
            };
            let mut s = String::new();
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    s.push_str(sep);
                }
                match x {
                    Json::Null => {}
                    Json::String(t) => s.push_str(t),
                    Json::Bool(_) | Json::Number(_) => to_json(x, &mut s)?,
                    _ => return fallback(),
                }
            }
            out(owned(Json::String(s)))
        }),
        StartsWith | EndsWith => string_arg(arg(0)?, vars, &input, &mut |p| match &*input {
            Json::String(s) => out(owned(Json::Bool(if matches!(b, StartsWith) {
                s.starts_with(p)
            } else {
                s.ends_with(p)
            }))),
            _ => fallback(),
        }),
        LtrimStr | RtrimStr => run(arg(0)?, vars, input.clone(), &mut |p| {
            let trimmed = match (&*input, &*p) {
                (Json::String(s), Json::String(p)) => {
                    if matches!(b, LtrimStr) {
                        s.strip_prefix(p.as_str())
                    } else if p.is_empty() {
                        None
                    } else {
                        s.strip_suffix(p.as_str())
                    }
                }
                _ => None,
            };
            match trimmed {
                Some(t) => out(owned(Json::String(t.to_string()))),
                None => out(input.clone()),
            }
        }),
        _ => fallback(),
    }
}

/// Builtins on an array or object as a whole.
fn call_collection<'a>(b: Builtin, input: V<'a>, out: &mut Sink<'_, 'a>) -> Res {
    use Builtin::*;
    let owned = |v: Json| Cow::Owned(v);
    match b {
        Length => out(owned(match &*input {
            Json::Null => Json::from(0),
            Json::Number(n) => match n.as_i64() {
                Some(i) if i != i64::MIN => Json::from(i.abs()),
                _ => return fallback(),
            },
            Json::String(s) => Json::from(s.chars().count()),
            Json::Array(a) => Json::from(a.len()),
            Json::Object(m) => Json::from(m.len()),
            Json::Bool(_) => return fallback(),
        })),
        Keys | KeysUnsorted => out(owned(match &*input {
            Json::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                if matches!(b, Keys) {
                    keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
                }
                Json::Array(keys.into_iter().map(|k| Json::String(k.clone())).collect())
            }
            Json::Array(a) => Json::Array((0..a.len()).map(Json::from).collect()),
            _ => return fallback(),
        })),
        Add => {
            let mut acc: V<'a> = owned(Json::Null);
            for x in values_of(input)? {
                acc = owned(math(Math::Add, acc, x)?);
            }
            out(acc)
        }
        Any | All => {
            let want = matches!(b, Any);
            let found = values_of(input)?.iter().any(|x| truthy(x) == want);
            out(owned(Json::Bool(found == want)))
        }
        ToEntries => match &*input {
            Json::Object(m) => out(owned(Json::Array(
                m.iter()
                    .map(|(k, v)| {
                        let mut e = serde_json::Map::with_capacity(2);
                        e.insert("key".into(), Json::String(k.clone()));
                        e.insert("value".into(), v.clone());
                        Json::Object(e)
                    })
                    .collect(),
            ))),
            _ => fallback(),
        },
        FromEntries => out(owned(from_entries(&input)?)),
        Sort | Unique => {
            let Json::Array(a) = &*input else {
                return fallback();
            };
            let mut items: Vec<&Json> = a.iter().collect();
            sort_values(&mut items)?;
            if matches!(b, Unique) {
                items.dedup_by(|x, y| jq_eq(x, y));
            }
            out(owned(Json::Array(items.into_iter().cloned().collect())))
        }
        Paths => {
            let mut prefix = Vec::new();
            paths(&input, &mut prefix, out)
        }
        First | Last => {
            let i = if matches!(b, First) { 0 } else { -1 };
            path(input, &[(Step::Index(i), false)], out)
        }
        _ => fallback(),
    }
}

/// Builtins on a single value.
fn call_scalar<'a>(b: Builtin, input: V<'a>, out: &mut Sink<'_, 'a>) -> Res {
    use Builtin::*;
    let owned = |v: Json| Cow::Owned(v);
    match b {
        Empty => Ok(()),
        Not => out(owned(Json::Bool(!truthy(&input)))),
        AsciiDowncase | AsciiUpcase => match &*input {
            Json::String(s) => out(owned(Json::String(if matches!(b, AsciiDowncase) {
                s.to_ascii_lowercase()
            } else {
                s.to_ascii_uppercase()
            }))),
            _ => fallback(),
        },
        ToString => {
            if let Json::String(_) = &*input {
                return out(input);
            }
            let mut s = String::new();
            to_json(&input, &mut s)?;
            out(owned(Json::String(s)))
        }
        ToNumber => match &*input {
            Json::Number(_) => out(input),
            Json::String(s) => match int_literal(s) {
                Some(n) => out(owned(n)),
                None => fallback(),
            },
            _ => fallback(),
        },
        Type => out(owned(Json::String(
            match &*input {
                Json::Null => "null",
                Json::Bool(_) => "boolean",
                Json::Number(_) => "number",
                Json::String(_) => "string",
                Json::Array(_) => "array",
                Json::Object(_) => "object",
            }
            .into(),
        ))),
        Values => {
            if matches!(&*input, Json::Null) {
                Ok(())
            } else {
                out(input)
            }
        }
        _ => fallback(),
    }
}

/// Sorts by jq's order; objects fall back.
fn sort_values(items: &mut [&Json]) -> Res {
    let mut failed = false;
    items.sort_by(|a, b| {
        jq_cmp(a, b).unwrap_or_else(|_| {
            failed = true;
            Ordering::Equal
        })
    });
    if failed { fallback() } else { Ok(()) }
}

/// tidemark's `from_entries` (jq 1.7's): key from `key`, `name`, `Name` or `Key` (the first
/// that is neither null nor false), which must be a string; value from `value` if present,
/// else `Value`.
fn from_entries(list: &Json) -> Result<Json, Stop> {
    let Json::Array(items) = list else {
        return fallback();
    };
    let mut out = Map::with_capacity(items.len());
    for item in items {
        let Json::Object(e) = item else {
            return fallback();
        };
        let key = ["key", "name", "Name", "Key"]
            .iter()
            .find_map(|k| e.get(*k).filter(|v| truthy(v)));
        let Some(Json::String(key)) = key else {
            return fallback();
        };
        let value = if e.contains_key("value") {
            e.get("value")
        } else {
            e.get("Value")
        };
        out.insert(key.clone(), value.cloned().unwrap_or(Json::Null));
    }
    Ok(Json::Object(out))
}

/// `paths`: every path below `v`, in pre-order, as arrays of keys and indices.
fn paths<'a>(v: &Json, prefix: &mut Vec<Json>, out: &mut Sink<'_, 'a>) -> Res {
    match v {
        Json::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                prefix.push(Json::from(i));
                out(Cow::Owned(Json::Array(prefix.clone())))?;
                paths(x, prefix, out)?;
                prefix.pop();
            }
        }
        Json::Object(m) => {
            for (k, x) in m {
                prefix.push(Json::String(k.clone()));
                out(Cow::Owned(Json::Array(prefix.clone())))?;
                paths(x, prefix, out)?;
                prefix.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::Value as Json;

    use super::First;
    use crate::core::mapping::jq;

    /// Numbers compare as jq's doubles.
    fn same(a: &Json, b: &Json) -> bool {
        match (a, b) {
            (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
            (Json::Array(x), Json::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
            }
            (Json::Object(x), Json::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
            }
            _ => a == b,
        }
    }

    /// The conformance cases (recorded with jq 1.7.1) that the native evaluator takes on: each
    /// either answers exactly as jq 1.7.1 did or gives up, and never answers where jq failed.
    #[test]
    fn native_answers_agree_with_jq_1_7_1_or_give_up() {
        let cases: Json =
            serde_json::from_str(include_str!("../../../tests/fixtures/jq/cases.json"))
                .expect("cases.json is JSON");
        let expected: Json =
            serde_json::from_str(include_str!("../../../tests/fixtures/jq/expected.json"))
                .expect("expected.json is JSON");
        let (mut compiled, mut answered) = (0, 0);
        for (case, want) in cases
            .as_array()
            .expect("cases is an array")
            .iter()
            .zip(expected.as_array().expect("expected is an array"))
        {
            let filter = case["filter"].as_str().expect("a filter");
            let Some(native) = jq::native(filter) else {
                continue;
            };
            compiled += 1;
            let name = &case["name"];
            match (native.first(&case["input"]), want["outcome"].as_str()) {
                (First::Fallback, _) => continue,
                (First::Value(v), Some("value")) => assert!(
                    same(&v, &want["output"]),
                    "{name}: `{filter}` gave {v}, jq 1.7.1 {}",
                    want["output"]
                ),
                (First::Empty, Some("empty")) => {}
                (First::Value(v), outcome) => {
                    panic!("{name}: `{filter}` gave {v}; jq: {outcome:?}")
                }
                (First::Empty, outcome) => {
                    panic!("{name}: `{filter}` gave nothing; jq: {outcome:?}")
                }
            }
            answered += 1;
        }
        // The fast path must really be taken on the common idioms, or this test proves nothing.
        assert!(compiled >= 120, "only {compiled} cases compile natively");
        assert!(answered >= 90, "only {answered} cases answered natively");
    }

    #[test]
    fn outside_the_subset_nothing_compiles() {
        for filter in [
            "def f: .; f",
            ".a |= 1",
            "reduce .[] as $x (0; . + $x)",
            "input",
            "$ENV",
        ] {
            assert!(jq::native(filter).is_none(), "{filter} compiled natively");
        }
    }

    #[test]
    fn a_constant_regex_is_compiled_once_and_a_computed_one_left_to_jaq() {
        assert!(jq::native(r#"test("^prod-[0-9]+$")"#).is_some());
        assert!(jq::native(r#"test(.pattern)"#).is_none());
        let native = jq::native(r#"test("^prod-[0-9]+$")"#).expect("in the subset");
        assert!(matches!(
            native.first(&Json::from("prod-42")),
            First::Value(Json::Bool(true))
        ));
        assert!(matches!(
            native.first(&Json::from("dev-42")),
            First::Value(Json::Bool(false))
        ));
        // jq fails on a non-string input; the interpreter gives that error.
        assert!(matches!(native.first(&Json::from(42)), First::Fallback));
    }
}
