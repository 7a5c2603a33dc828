//! Where jq 1.7 and jaq give the same syntax different meanings, the parsed expression is
//! rewritten to call natives that behave like jq (defined in `jq.rs`):
//! - `"\(x)"` interpolates with jq's `tostring`: jaq prints a computed integral number as `3.0`,
//!   jq as `3`. This also applies to the library, whose `tostring`, `@text` and `@sh` interpolate.
//! - `a / b` and `a % b` (and `/=`, `%=`) raise jq's error for a zero divisor, where jaq gives
//!   infinity or NaN, and `%` truncates both sides to integers as jq does (jaq keeps fractions).
//! - `l + r`, `l == r` and the other arithmetic and comparison operators loop over `r`'s outputs
//!   outermost, as jq does (jaq loops over `l` outermost), where both sides may give several.
//!
//! Division, remainder and operand order are rewritten only in mapping expressions: the library
//! defines `infinite` as `1 / 0`, and its definitions were written for jaq's order.

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Pattern, Term};
use jaq_core::ops::Math;
use jaq_core::path::{Part, Path};

use super::prelude::Def;

/// jq's `tostring`.
pub(super) const TOSTRING: &str = "_tm_tostring";
/// `_tm_div($divisor; $dividend)`: jq's `/`.
pub(super) const DIV: &str = "_tm_div";
/// `_tm_rem($divisor; $dividend)`: jq's `%`.
pub(super) const REM: &str = "_tm_rem";
/// Holds the right-hand side of `l /= r` while `l` is updated.
const UPDATE_VAR: &str = "$__tm_operand";
/// Hold the two sides of a binary operator whose operands both may give several outputs.
const LEFT_VAR: &str = "$__tm_left";
const RIGHT_VAR: &str = "$__tm_right";

/// A mapping expression with jq 1.7's interpolation, division and operand order.
pub(super) fn expression(term: Term<&str>) -> Term<&str> {
    rewrite(term, true)
}

/// A library definition with jq 1.7's interpolation.
pub(super) fn library_def(def: Def<'static>) -> Def<'static> {
    Def {
        body: rewrite(def.body, false),
        ..def
    }
}

/// `operators`: whether `/`, `%` and operand order are rewritten too (not in the library).
fn rewrite<'s>(term: Term<&'s str>, operators: bool) -> Term<&'s str> {
    let go = |t: Term<&'s str>| rewrite(t, operators);
    let go_box = |t: Box<Term<&'s str>>| Box::new(rewrite(*t, operators));
    match term {
        Term::Id | Term::Recurse | Term::Num(_) | Term::Var(_) | Term::Break(_) => term,
        Term::Str(fmt, parts) => {
            let parts = parts.into_iter().map(|part| match part {
                StrPart::Term(t) => StrPart::Term(go(t)),
                other => other,
            });
            Term::Str(Some(fmt.unwrap_or(TOSTRING)), parts.collect())
        }
        Term::Arr(t) => Term::Arr(t.map(go_box)),
        Term::Obj(entries) => Term::Obj(
            entries
                .into_iter()
                .map(|(k, v)| (go(k), v.map(go)))
                .collect(),
        ),
        Term::Neg(t) => Term::Neg(go_box(t)),
        Term::Label(label, t) => Term::Label(label, go_box(t)),
        Term::BinOp(l, op, r) => {
            let both_may_repeat = !at_most_one(&l) && !at_most_one(&r);
            let (l, r) = (go(*l), go(*r));
            match op {
                BinaryOp::Math(math @ (Math::Div | Math::Rem)) if operators => {
                    // jq evaluates the right side in the outer loop: `[(1,2) / (1,2)]` is
                    // `[1,2,0.5,1]`; a native binds its first argument outermost.
                    Term::Call(native(math), vec![r, l])
                }
                BinaryOp::UpdateMath(math @ (Math::Div | Math::Rem)) if operators => {
                    // jq defines `l /= r` as `r as $x | l |= . / $x`.
                    let update = Term::Call(native(math), vec![Term::Var(UPDATE_VAR), Term::Id]);
                    let update = Term::BinOp(Box::new(l), BinaryOp::Update, Box::new(update));
                    let bind = BinaryOp::Pipe(Some(Pattern::Var(UPDATE_VAR)));
                    Term::BinOp(Box::new(r), bind, Box::new(update))
                }
                op @ (BinaryOp::Math(_) | BinaryOp::Cmp(_)) if operators && both_may_repeat => {
                    // jaq loops over the left side outermost, jq over the right:
                    // `[(1,2) + (10,20)]` is `[11,12,21,22]` in jq. Binding the right side
                    // first restores jq's order; one output on either side makes it moot.
                    let (lv, rv) = (Term::Var(LEFT_VAR), Term::Var(RIGHT_VAR));
                    let apply = Term::BinOp(Box::new(lv), op, Box::new(rv));
                    let bind_l = BinaryOp::Pipe(Some(Pattern::Var(LEFT_VAR)));
                    let inner = Term::BinOp(Box::new(l), bind_l, Box::new(apply));
                    let bind_r = BinaryOp::Pipe(Some(Pattern::Var(RIGHT_VAR)));
                    Term::BinOp(Box::new(r), bind_r, Box::new(inner))
                }
                BinaryOp::Pipe(Some(pattern)) => Term::BinOp(
                    Box::new(l),
                    BinaryOp::Pipe(Some(rewrite_pattern(pattern, operators))),
                    Box::new(r),
                ),
                op => Term::BinOp(Box::new(l), op, Box::new(r)),
            }
        }
        Term::Fold(name, xs, pattern, args) => Term::Fold(
            name,
            go_box(xs),
            rewrite_pattern(pattern, operators),
            args.into_iter().map(go).collect(),
        ),
        Term::TryCatch(t, catch) => Term::TryCatch(go_box(t), catch.map(go_box)),
        Term::IfThenElse(branches, otherwise) => Term::IfThenElse(
            branches.into_iter().map(|(c, t)| (go(c), go(t))).collect(),
            otherwise.map(go_box),
        ),
        Term::Def(defs, t) => {
            let defs = defs.into_iter().map(|d| jaq_core::load::parse::Def {
                body: go(d.body),
                ..d
            });
            Term::Def(defs.collect(), go_box(t))
        }
        Term::Call(name, args) => Term::Call(name, args.into_iter().map(go).collect()),
        Term::Path(t, path) => {
            let parts = path.0.into_iter().map(|(part, opt)| {
                let part = match part {
                    Part::Index(i) => Part::Index(go(i)),
                    Part::Range(from, to) => Part::Range(from.map(go), to.map(go)),
                };
                (part, opt)
            });
            Term::Path(go_box(t), Path(parts.collect()))
        }
    }
}

fn rewrite_pattern(pattern: Pattern<&str>, operators: bool) -> Pattern<&str> {
    match pattern {
        Pattern::Var(_) => pattern,
        Pattern::Arr(items) => Pattern::Arr(
            items
                .into_iter()
                .map(|p| rewrite_pattern(p, operators))
                .collect(),
        ),
        Pattern::Obj(entries) => Pattern::Obj(
            entries
                .into_iter()
                .map(|(k, p)| (rewrite(k, operators), rewrite_pattern(p, operators)))
                .collect(),
        ),
    }
}

/// Whether a term gives at most one output for any input, judged from its shape alone: `false`
/// means "may give more" (calls are not looked into, since a definition can shadow any name).
fn at_most_one(term: &Term<&str>) -> bool {
    match term {
        Term::Id | Term::Num(_) | Term::Var(_) | Term::Arr(_) => true,
        // A format (`@sh "…"`) is a call.
        Term::Str(Some(_), _) => false,
        Term::Str(None, parts) => parts.iter().all(|p| match p {
            StrPart::Term(t) => at_most_one(t),
            _ => true,
        }),
        Term::Obj(entries) => entries
            .iter()
            .all(|(k, v)| at_most_one(k) && v.as_ref().is_none_or(at_most_one)),
        Term::Neg(t) => at_most_one(t),
        Term::Path(t, path) => {
            at_most_one(t)
                && path.0.iter().all(|(part, _)| match part {
                    Part::Index(i) => at_most_one(i),
                    Part::Range(None, None) => false,
                    Part::Range(from, to) => from.iter().chain(to).all(at_most_one),
                })
        }
        Term::BinOp(l, op, r) => {
            matches!(
                op,
                BinaryOp::Pipe(None)
                    | BinaryOp::Alt
                    | BinaryOp::Or
                    | BinaryOp::And
                    | BinaryOp::Math(_)
                    | BinaryOp::Cmp(_)
            ) && at_most_one(l)
                && at_most_one(r)
        }
        Term::IfThenElse(branches, otherwise) => {
            branches
                .iter()
                .all(|(c, t)| at_most_one(c) && at_most_one(t))
                && otherwise.as_deref().is_none_or(at_most_one)
        }
        Term::TryCatch(t, catch) => at_most_one(t) && catch.as_deref().is_none_or(at_most_one),
        Term::Call(..) | Term::Recurse | Term::Fold(..) | Term::Def(..) => false,
        Term::Label(..) | Term::Break(_) => false,
    }
}

fn native(math: Math) -> &'static str {
    if matches!(math, Math::Div) { DIV } else { REM }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(code: &str) -> String {
        let term = jaq_core::load::parse(code, |p| p.term()).expect("parses");
        format!("{:?}", expression(term))
    }

    #[test]
    fn operands_are_rebound_only_where_both_sides_may_give_several_outputs() {
        // The common mapping shapes keep jaq's direct evaluation.
        for code in [
            r#""arn:" + .a + ":" + (.b | tostring)"#,
            ".a.b[0] == .c",
            r#"(.x // "") + "-" + .y"#,
        ] {
            assert!(!rewritten(code).contains(LEFT_VAR), "{code}");
        }
        for code in [".a[] + .b[]", "(.a | tostring) + (.b | tostring)"] {
            assert!(rewritten(code).contains(LEFT_VAR), "{code}");
        }
    }

    #[test]
    fn interpolation_division_and_remainder_call_the_jq_natives() {
        let text = rewritten(r#""\(.a / .b) \(.c % 2)""#);
        for native in [TOSTRING, DIV, REM] {
            assert!(text.contains(native), "{native} in {text}");
        }
    }
}
