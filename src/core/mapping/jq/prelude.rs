//! jaq's standard library and tidemark's jq 1.7 definitions, parsed once per process, and the
//! part of them one expression can reach.
//!
//! jaq compiles every definition it is given, and the library is a few hundred of them, so
//! compiling each mapping expression against all of it cost far more than the expression itself
//! (most of the 1.6 s of CPU a debug build spent loading `builtin:aws`, paid again by every
//! mapping worker start and every test; see BENCHMARKS.md). An expression can only reach the
//! definitions whose names it calls, and those they call in turn, so each one is compiled with
//! just that closure. Name resolution is unchanged: every definition of a reachable name is kept,
//! in library order, so the same one shadows the others as before; anything unreachable could
//! never be called.

use std::collections::HashMap;
use std::sync::OnceLock;

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Pattern, Term};
use jaq_core::path::Part;

use super::rewrite;

pub(super) type Def<'s> = jaq_core::load::parse::Def<&'s str>;

pub(super) struct Prelude {
    defs: Vec<Def<'static>>,
    /// For each definition, the names its body calls.
    calls: Vec<Vec<&'static str>>,
    /// Where each name is defined, in library order.
    by_name: HashMap<&'static str, Vec<usize>>,
}

/// The library, parsed on first use. `compat` is tidemark's own definitions, which come last so
/// that they shadow jaq's.
pub(super) fn prelude(compat: &'static str) -> &'static Prelude {
    static PRELUDE: OnceLock<Prelude> = OnceLock::new();
    PRELUDE.get_or_init(|| {
        // The compatibility definitions are a constant that unit tests compile, so they parse.
        let compat = jaq_core::load::parse(compat, |p| p.defs()).unwrap_or_default();
        let defs: Vec<Def> = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs())
            .chain(compat)
            .map(rewrite::library_def)
            .collect();
        let calls = defs
            .iter()
            .map(|def| {
                let mut names = Vec::new();
                called_names(&def.body, &mut names);
                names
            })
            .collect();
        let mut by_name: HashMap<&'static str, Vec<usize>> = HashMap::new();
        for (i, def) in defs.iter().enumerate() {
            by_name.entry(def.name).or_default().push(i);
        }
        Prelude {
            defs,
            calls,
            by_name,
        }
    })
}

impl Prelude {
    /// Every definition, for expressions the loader must see as written.
    pub(super) fn all(&self) -> Vec<Def<'static>> {
        self.defs.clone()
    }

    /// The definitions `term` can reach, in library order.
    pub(super) fn reachable_from(&self, term: &Term<&str>) -> Vec<Def<'static>> {
        let mut pending = Vec::new();
        called_names(term, &mut pending);
        let mut seen = vec![false; self.defs.len()];
        while let Some(name) = pending.pop() {
            for &i in self.by_name.get(name).into_iter().flatten() {
                if !seen[i] {
                    seen[i] = true;
                    pending.extend(self.calls[i].iter().copied());
                }
            }
        }
        let kept = self.defs.iter().zip(seen).filter(|(_, keep)| *keep);
        kept.map(|(def, _)| def.clone()).collect()
    }
}

/// Collects the names a term calls: filters (`f`, `f(x)`, `m::f`) and string formats (`@csv "…"`).
/// Over-collecting is harmless (a local definition's name pulls in library ones it shadows).
fn called_names<'s>(term: &Term<&'s str>, out: &mut Vec<&'s str>) {
    match term {
        Term::Id | Term::Recurse | Term::Num(_) | Term::Var(_) | Term::Break(_) => {}
        Term::Call(name, args) => {
            out.push(name);
            args.iter().for_each(|a| called_names(a, out));
        }
        Term::Str(fmt, parts) => {
            out.extend(fmt);
            for part in parts {
                if let StrPart::Term(t) = part {
                    called_names(t, out);
                }
            }
        }
        Term::Arr(t) => t.iter().for_each(|t| called_names(t, out)),
        Term::Obj(entries) => {
            for (k, v) in entries {
                called_names(k, out);
                v.iter().for_each(|v| called_names(v, out));
            }
        }
        Term::Neg(t) | Term::Label(_, t) => called_names(t, out),
        Term::BinOp(l, op, r) => {
            if let BinaryOp::Pipe(Some(pattern)) = op {
                pattern_names(pattern, out);
            }
            called_names(l, out);
            called_names(r, out);
        }
        Term::Fold(_, xs, pattern, args) => {
            called_names(xs, out);
            pattern_names(pattern, out);
            args.iter().for_each(|a| called_names(a, out));
        }
        Term::TryCatch(t, catch) => {
            called_names(t, out);
            catch.iter().for_each(|c| called_names(c, out));
        }
        Term::IfThenElse(branches, otherwise) => {
            for (cond, then) in branches {
                called_names(cond, out);
                called_names(then, out);
            }
            otherwise.iter().for_each(|t| called_names(t, out));
        }
        Term::Def(defs, t) => {
            defs.iter().for_each(|d| called_names(&d.body, out));
            called_names(t, out);
        }
        Term::Path(t, path) => {
            called_names(t, out);
            for (part, _) in &path.0 {
                match part {
                    Part::Index(i) => called_names(i, out),
                    Part::Range(from, to) => {
                        from.iter().chain(to).for_each(|t| called_names(t, out));
                    }
                }
            }
        }
    }
}

fn pattern_names<'s>(pattern: &Pattern<&'s str>, out: &mut Vec<&'s str>) {
    match pattern {
        Pattern::Var(_) => {}
        Pattern::Arr(items) => items.iter().for_each(|p| pattern_names(p, out)),
        Pattern::Obj(entries) => {
            for (key, p) in entries {
                called_names(key, out);
                pattern_names(p, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn library() -> &'static Prelude {
        prelude(super::super::JQ_COMPAT)
    }

    fn reachable(code: &str) -> Vec<&'static str> {
        let term = jaq_core::load::parse(code, |p| p.term()).expect("parses");
        let defs = library().reachable_from(&term);
        defs.iter().map(|d| d.name).collect()
    }

    #[test]
    fn the_compatibility_definitions_parse() {
        assert!(jaq_core::load::parse(super::super::JQ_COMPAT, |p| p.defs()).is_some());
    }

    #[test]
    fn an_expression_gets_the_definitions_it_calls_and_theirs() {
        let names = reachable(".Tags | from_entries | with_entries(.)");
        assert!(names.contains(&"from_entries") && names.contains(&"with_entries"));
        // Reached only through `with_entries`.
        assert!(names.contains(&"to_entries"), "{names:?}");
        assert!(!names.contains(&"splits"), "{names:?}");
        assert!(reachable(".a.b").is_empty());
    }

    #[test]
    fn every_library_definition_compiles_with_what_it_reaches() {
        // Calls each definition once, with `.` for every argument: an undefined name would mean
        // the closure missed a definition that the full library would have supplied.
        let mut failures = Vec::new();
        for def in &library().defs {
            if def.name.starts_with('_') || def.name.starts_with('!') {
                continue;
            }
            let args = vec!["."; def.args.len()].join("; ");
            let code = if args.is_empty() {
                def.name.to_string()
            } else {
                format!("{}({args})", def.name)
            };
            if let Err(errs) = super::super::compile(&code) {
                failures.push(format!("{code}: {errs:?}"));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }
}
