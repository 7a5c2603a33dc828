//! Plans as people and programs read them: text with a coloured unified diff per entity (like
//! `terraform plan`), markdown for pull-request comments, and JSON (`format_version` "1").

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value as Json;
use similar::{ChangeTag, TextDiff};

use crate::catalog::ApplyReport;
use crate::reconcile::plan::{AccountStatus, Action, Change, Plan, ScopeLine};

/// Output styling for text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

fn symbol(action: Action) -> &'static str {
    match action {
        Action::Create => "+",
        Action::Update => "~",
        Action::Delete => "-",
    }
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::Create => "create",
        Action::Update => "update",
        Action::Delete => "delete",
    }
}

fn color_of(action: Action) -> &'static str {
    match action {
        Action::Create => "32",
        Action::Update => "33",
        Action::Delete => "31",
    }
}

/// The snake_case name an enum has in the JSON plan (`account_unassumable`, `regions_failed`).
fn name_of(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

pub fn summary_line(plan: &Plan) -> String {
    let s = &plan.summary;
    if !plan.has_changes() && s.withheld == 0 {
        return format!(
            "No changes: the catalog matches the resources ({} unchanged).",
            s.unchanged
        );
    }
    let bp = if plan.blueprints.is_empty() {
        String::new()
    } else {
        format!(
            "{} blueprint {}, ",
            plan.blueprints.len(),
            if plan.blueprints.len() == 1 {
                "change"
            } else {
                "changes"
            }
        )
    };
    format!(
        "Plan: {bp}{} to create, {} to update, {} to delete, {} unchanged, {} withheld.",
        s.create, s.update, s.delete, s.unchanged, s.withheld
    )
}

fn pretty(value: Option<&Json>) -> String {
    match value {
        None => String::new(),
        Some(v) => {
            let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
            s.push('\n');
            s
        }
    }
}

/// The unified diff lines of a change's compared fields (no headers).
fn diff_lines(change: &Change) -> Vec<(ChangeTag, String)> {
    let before = pretty(change.before.as_ref());
    let after = pretty(change.after.as_ref());
    let diff = TextDiff::from_lines(&before, &after);
    let mut out = Vec::new();
    for (i, group) in diff.grouped_ops(3).iter().enumerate() {
        if i > 0 {
            out.push((ChangeTag::Equal, "...".to_string()));
        }
        for op in group {
            for c in diff.iter_changes(op) {
                out.push((c.tag(), c.value().trim_end_matches('\n').to_string()));
            }
        }
    }
    out
}

fn headline(change: &Change) -> String {
    let mut context = Vec::new();
    if let Some(a) = &change.account {
        context.push(format!("account {a}"));
    }
    if let Some(k) = &change.kind {
        context.push(k.clone());
    }
    if let Some(prev) = &change.previous_account {
        context.push(format!("moves from account {prev}"));
    }
    if let Some(owner) = &change.adopted_from {
        context.push(format!("adopted from {owner:?}"));
    }
    let context = if context.is_empty() {
        String::new()
    } else {
        format!(" ({})", context.join(", "))
    };
    format!(
        "{} {} {} {}{context}",
        symbol(change.action),
        verb(change.action),
        change.blueprint,
        change.identifier
    )
}

/// The text plan.
pub fn text(plan: &Plan, style: Style) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", style.paint("1", &summary_line(plan)));
    if !plan.blueprints.is_empty() {
        let _ = writeln!(out, "\nBlueprints:");
        for b in &plan.blueprints {
            let detail = match b.action {
                Action::Create => String::new(),
                _ => {
                    let mut parts = Vec::new();
                    if !b.add_properties.is_empty() {
                        parts.push(format!(
                            "add properties {}",
                            b.add_properties
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                    if !b.add_relations.is_empty() {
                        parts.push(format!(
                            "add relations {}",
                            b.add_relations
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                    format!(" ({})", parts.join("; "))
                }
            };
            let line = format!(
                "  {} {} {}{detail}",
                symbol(b.action),
                verb(b.action),
                b.identifier
            );
            let _ = writeln!(out, "{}", style.paint(color_of(b.action), &line));
        }
    }
    for change in &plan.changes {
        let _ = writeln!(
            out,
            "\n{}",
            style.paint(color_of(change.action), &headline(change))
        );
        for (tag, line) in diff_lines(change) {
            let text = match tag {
                ChangeTag::Delete => style.paint("31", &format!("    - {line}")),
                ChangeTag::Insert => style.paint("32", &format!("    + {line}")),
                ChangeTag::Equal => format!("      {line}"),
            };
            let _ = writeln!(out, "{text}");
        }
    }
    if !plan.withheld.is_empty() {
        let _ = writeln!(
            out,
            "\n{}",
            style.paint("1;33", &format!("Withheld ({}):", plan.withheld.len()))
        );
        for w in &plan.withheld {
            let account = w.account.as_deref().unwrap_or("unknown account");
            let reason = name_of(&w.reason);
            let _ = writeln!(
                out,
                "  {} {} {} ({account}): {reason}: {}",
                verb(w.action),
                w.blueprint,
                w.identifier,
                w.detail
            );
        }
    }
    if !plan.discovery.is_complete() {
        let status = name_of(&plan.discovery.status);
        let _ = writeln!(
            out,
            "\n{} {}",
            style.paint("1;33", &format!("Account discovery: {status}:")),
            plan.discovery.error.as_deref().unwrap_or("")
        );
    }
    let troubled: Vec<_> = plan
        .accounts
        .iter()
        .filter(|a| a.status != AccountStatus::Ok)
        .collect();
    if !troubled.is_empty() {
        let _ = writeln!(out, "\n{}", style.paint("1;33", "Accounts:"));
        for a in troubled {
            let status = name_of(&a.status);
            let name = a
                .name
                .as_deref()
                .map(|n| format!(" {n}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {}{name}: {status}: {}",
                a.id,
                a.error.as_deref().unwrap_or("")
            );
        }
    }
    if !plan.scopes.is_empty() {
        let _ = writeln!(
            out,
            "\n{}",
            style.paint("1;33", &format!("Failed scopes ({}):", plan.scopes.len()))
        );
        for s in &plan.scopes {
            let _ = writeln!(
                out,
                "  {} {} {}: {}",
                s.account,
                s.region,
                scope_kind(s),
                s.error.as_deref().unwrap_or("")
            );
        }
    }
    if !plan.mapping_errors.is_empty() {
        let _ = writeln!(
            out,
            "\n{}",
            style.paint(
                "1;31",
                &format!("Mapping errors ({}):", plan.mapping_errors.len())
            )
        );
        for e in &plan.mapping_errors {
            let _ = writeln!(out, "  {}", issue_line(e));
        }
    }
    if !plan.warnings.is_empty() {
        let _ = writeln!(out, "\nWarnings ({}):", plan.warnings.len());
        for w in &plan.warnings {
            let _ = writeln!(out, "  {}", issue_line(w));
        }
    }
    out
}

fn issue_line(issue: &crate::reconcile::Issue) -> String {
    let parts: Vec<&str> = [&issue.account, &issue.region, &issue.kind, &issue.item]
        .iter()
        .filter_map(|p| p.as_deref())
        .collect();
    if parts.is_empty() {
        issue.message.clone()
    } else {
        format!("{}: {}", parts.join(" "), issue.message)
    }
}

/// Markdown for a pull-request comment: collapsible per blueprint.
pub fn markdown(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### tidemark plan for `{}`\n", plan.integration);
    let _ = writeln!(out, "{}\n", summary_line(plan));
    if !plan.blueprints.is_empty() {
        let _ = writeln!(out, "**Blueprints**\n");
        for b in &plan.blueprints {
            let _ = writeln!(out, "- {} `{}`", verb(b.action), b.identifier);
        }
        out.push('\n');
    }
    let mut by_blueprint: BTreeMap<&str, Vec<&Change>> = BTreeMap::new();
    for c in &plan.changes {
        by_blueprint.entry(&c.blueprint).or_default().push(c);
    }
    for (blueprint, changes) in by_blueprint {
        let count = |a: Action| changes.iter().filter(|c| c.action == a).count();
        let _ = writeln!(
            out,
            "<details><summary><code>{}</code>: {} to create, {} to update, {} to delete</summary>\n",
            escape_html(blueprint),
            count(Action::Create),
            count(Action::Update),
            count(Action::Delete)
        );
        for c in changes {
            let _ = writeln!(out, "**{}**\n", escape_md(&headline(c)));
            let _ = writeln!(out, "```diff");
            for (tag, line) in diff_lines(c) {
                let prefix = match tag {
                    ChangeTag::Delete => "-",
                    ChangeTag::Insert => "+",
                    ChangeTag::Equal => " ",
                };
                let _ = writeln!(out, "{prefix} {}", line.replace("```", "'''"));
            }
            let _ = writeln!(out, "```\n");
        }
        let _ = writeln!(out, "</details>\n");
    }
    if !plan.withheld.is_empty() {
        let _ = writeln!(
            out,
            "#### Withheld\n\n| action | blueprint | identifier | account | reason | detail |\n|---|---|---|---|---|---|"
        );
        for w in &plan.withheld {
            let reason = name_of(&w.reason);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                verb(w.action),
                cell(&w.blueprint),
                cell(&w.identifier),
                cell(w.account.as_deref().unwrap_or("unknown")),
                reason,
                cell(&w.detail)
            );
        }
        out.push('\n');
    }
    let troubled: Vec<_> = plan
        .accounts
        .iter()
        .filter(|a| a.status != AccountStatus::Ok)
        .collect();
    if !troubled.is_empty() {
        let _ = writeln!(
            out,
            "#### Accounts\n\n| account | name | status | error |\n|---|---|---|---|"
        );
        for a in troubled {
            let status = name_of(&a.status);
            let _ = writeln!(
                out,
                "| {} | {} | {status} | {} |",
                a.id,
                cell(a.name.as_deref().unwrap_or("")),
                cell(a.error.as_deref().unwrap_or(""))
            );
        }
        out.push('\n');
    }
    if !plan.scopes.is_empty() {
        let _ = writeln!(
            out,
            "#### Failed scopes\n\n| account | region | kind | error |\n|---|---|---|---|"
        );
        for s in &plan.scopes {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                s.account,
                s.region,
                cell(&scope_kind(s)),
                cell(s.error.as_deref().unwrap_or(""))
            );
        }
        out.push('\n');
    }
    for (title, issues) in [
        ("Mapping errors", &plan.mapping_errors),
        ("Warnings", &plan.warnings),
    ] {
        if !issues.is_empty() {
            let _ = writeln!(out, "#### {title}\n");
            for i in issues {
                let _ = writeln!(out, "- {}", escape_md(&issue_line(i)));
            }
            out.push('\n');
        }
    }
    out
}

fn cell(s: &str) -> String {
    escape_md(s).replace('|', "\\|").replace('\n', " ")
}

fn escape_md(s: &str) -> String {
    escape_html(s)
        .replace('`', "\\`")
        .replace('*', "\\*")
        .replace('_', "\\_")
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The JSON plan.
pub fn json(plan: &Plan) -> String {
    let mut s = serde_json::to_string_pretty(plan).unwrap_or_default();
    s.push('\n');
    s
}

/// What `apply` wrote.
pub fn apply_report(report: &ApplyReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Applied: {} blueprint changes, {} entities written, {} deleted, {} rejected ({} write requests).",
        report.blueprints_written.len(),
        report.upserted.len(),
        report.deleted.len(),
        report.rejected.len(),
        report.write_requests
    );
    for r in &report.rejected {
        let _ = writeln!(out, "  rejected {} {}: {}", r.action, r.key, r.message);
    }
    if let Some(why) = &report.stopped {
        let _ = writeln!(out, "Stopped before finishing: {why}");
    }
    out
}

/// A failed scope's kind, with the resource model it was listed with, if any.
fn scope_kind(scope: &ScopeLine) -> String {
    match &scope.model {
        Some(model) => format!("{} (resource model {model})", scope.kind),
        None => scope.kind.clone(),
    }
}

#[cfg(test)]
mod tests;
