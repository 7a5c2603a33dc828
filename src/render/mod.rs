//! Plans as people and programs read them: text with a coloured unified diff per entity (like
//! `terraform plan`), markdown for pull-request comments, and JSON (`format_version` "1").

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value as Json;
use similar::{ChangeTag, TextDiff};

use crate::core::reconcile::plan::{AccountStatus, Action, Change, Plan, ScopeLine};
use crate::core::writes::ApplyReport;

/// Output styling for text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
    /// Show the `null` fields of created entities (left out by default: a first plan of the
    /// default mappings is mostly properties that resources do not set).
    pub show_nulls: bool,
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
        if plan.is_partial() {
            // Never "the catalog matches" when part of the resources could not be read or
            // mapped: their entities are kept, not proven current.
            return format!(
                "No changes to apply, but the plan is incomplete ({}): the entities of those scopes are kept as they are ({} unchanged).",
                incompleteness(plan),
                s.unchanged
            );
        }
        return format!(
            "No changes: the catalog matches the resources ({} unchanged).",
            s.unchanged
        );
    }
    let bp = if plan.blueprints.is_empty() {
        String::new()
    } else {
        let n = plan.blueprints.len();
        format!("{n} blueprint {}, ", plural(n, "change", "changes"))
    };
    format!(
        "Plan: {bp}{} to create, {} to update, {} to delete, {} unchanged, {} withheld.",
        s.create, s.update, s.delete, s.unchanged, s.withheld
    )
}

/// What made a plan incomplete, counted: `2 items failed to map, 1 listing failed`.
fn incompleteness(plan: &Plan) -> String {
    let mut parts = Vec::new();
    let n = plan.mapping_errors.len();
    if n > 0 {
        parts.push(format!(
            "{n} {} to map",
            plural(n, "item failed", "items failed")
        ));
    }
    let n = plan.scopes.len();
    if n > 0 {
        parts.push(format!(
            "{n} {}",
            plural(n, "listing failed", "listings failed")
        ));
    }
    let n = plan
        .accounts
        .iter()
        .filter(|a| {
            matches!(
                a.status,
                AccountStatus::Unassumable | AccountStatus::RegionsFailed
            )
        })
        .count();
    if n > 0 {
        parts.push(format!(
            "{n} {} could not be read",
            plural(n, "account", "accounts")
        ));
    }
    if !plan.discovery.is_complete() {
        parts.push("account discovery did not complete".to_string());
    }
    parts.join(", ")
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

/// A created entity's fields without the `null` ones (inside properties and relations too), as
/// a create shows them unless asked for every field.
fn without_nulls(value: &Json) -> Json {
    match value {
        Json::Object(map) => Json::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null() && v.as_object().is_none_or(|o| !o.is_empty()))
                .map(|(k, v)| match (k.as_str(), v) {
                    ("properties" | "relations", Json::Object(_)) => (k.clone(), without_nulls(v)),
                    _ => (k.clone(), v.clone()),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The unified diff lines of a change's compared fields (no headers).
fn diff_lines(change: &Change, show_nulls: bool) -> Vec<(ChangeTag, String)> {
    let before = pretty(change.before.as_ref());
    let after = match (&change.after, change.action, show_nulls) {
        (Some(after), Action::Create, false) => pretty(Some(&without_nulls(after))),
        (after, _, _) => pretty(after.as_ref()),
    };
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
    text_blueprints(&mut out, plan, style);
    text_changes(&mut out, plan, style);
    text_problems(&mut out, plan, style);
    out
}

/// The blueprint changes, one line each.
fn text_blueprints(out: &mut String, plan: &Plan, style: Style) {
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
}

/// Every entity change with its field diff.
fn text_changes(out: &mut String, plan: &Plan, style: Style) {
    for change in &plan.changes {
        let _ = writeln!(
            out,
            "\n{}",
            style.paint(color_of(change.action), &headline(change))
        );
        for (tag, line) in diff_lines(change, style.show_nulls) {
            let text = match tag {
                ChangeTag::Delete => style.paint("31", &format!("    - {line}")),
                ChangeTag::Insert => style.paint("32", &format!("    + {line}")),
                ChangeTag::Equal => format!("      {line}"),
            };
            let _ = writeln!(out, "{text}");
        }
    }
}

/// What the plan could not do or prove: withheld deletes, discovery, accounts, failed scopes,
/// mapping errors and warnings.
fn text_problems(out: &mut String, plan: &Plan, style: Style) {
    if !plan.withheld.is_empty() {
        let _ = writeln!(
            out,
            "\n{}",
            style.paint("1;33", &format!("Withheld ({}):", plan.withheld.len()))
        );
        for group in withheld_groups(plan) {
            let _ = writeln!(out, "  {}", group.line());
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
}

/// Withheld changes with the same (account, reason), printed once with a count: a denied
/// account can hold back thousands of deletes for one reason.
struct WithheldGroup<'p> {
    first: &'p crate::core::reconcile::plan::Withheld,
    count: usize,
}

impl WithheldGroup<'_> {
    fn line(&self) -> String {
        let w = self.first;
        let account = w.account.as_deref().unwrap_or("unknown account");
        let reason = name_of(&w.reason);
        if self.count == 1 {
            return format!(
                "{} {} {} ({account}): {reason}: {}",
                verb(w.action),
                w.blueprint,
                w.identifier,
                w.detail
            );
        }
        format!(
            "{} changes ({} each, {account}): {reason}: {} (the first: {} {})",
            self.count,
            verb(w.action),
            w.detail,
            w.blueprint,
            w.identifier
        )
    }
}

fn withheld_groups(plan: &Plan) -> Vec<WithheldGroup<'_>> {
    let mut groups: Vec<WithheldGroup<'_>> = Vec::new();
    let mut index: BTreeMap<(Option<&str>, String), usize> = BTreeMap::new();
    for w in &plan.withheld {
        let key = (w.account.as_deref(), name_of(&w.reason));
        match index.get(&key) {
            Some(&i) => groups[i].count += 1,
            None => {
                index.insert(key, groups.len());
                groups.push(WithheldGroup { first: w, count: 1 });
            }
        }
    }
    groups
}

fn issue_line(issue: &crate::core::reconcile::Issue) -> String {
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

/// The most a markdown plan holds: pull-request comments on the common forges take 65,536
/// characters, and a plan posted there must fit with room for a bot's own text.
pub const MARKDOWN_LIMIT: usize = 60_000;
/// Rows of one table or list in a markdown plan before the rest are counted instead.
const MARKDOWN_ROWS: [usize; 3] = [100, 20, 5];
/// Lines of one change's diff in a markdown plan before the rest are cut.
const MARKDOWN_DIFF_LINES: usize = 80;

/// Markdown for a pull-request comment: collapsible per blueprint, never more than
/// [`MARKDOWN_LIMIT`] characters. What does not fit is counted, with a pointer to the JSON plan.
pub fn markdown(plan: &Plan, show_nulls: bool) -> String {
    let mut head = String::new();
    let _ = writeln!(head, "### tidemark plan for `{}`\n", plan.integration);
    let _ = writeln!(head, "{}\n", summary_line(plan));
    // The lists around the changes are shortened until they leave at least half the room.
    let (blueprints, tail) = MARKDOWN_ROWS
        .iter()
        .map(|&rows| (markdown_blueprints(plan, rows), markdown_tail(plan, rows)))
        .find(|(b, t)| head.len() + b.len() + t.len() < MARKDOWN_LIMIT / 2)
        .unwrap_or_else(|| (markdown_blueprints(plan, 1), markdown_tail(plan, 1)));
    head.push_str(&blueprints);
    let budget = MARKDOWN_LIMIT.saturating_sub(head.len() + tail.len() + 400);
    let (changes, left_out) = markdown_changes(plan, show_nulls, budget);
    let mut out = head;
    out.push_str(&changes);
    if left_out > 0 {
        let _ = writeln!(
            out,
            "_{left_out} more {} not shown, to keep this comment under {MARKDOWN_LIMIT} characters; the full plan is in the JSON artifact (`tidemark plan --out plan.json`)._\n",
            plural(left_out, "change", "changes")
        );
    }
    out.push_str(&tail);
    out
}

/// Up to `rows` items, and how many are left out.
fn capped<T>(items: &[T], rows: usize) -> (&[T], usize) {
    let shown = items.len().min(rows);
    (&items[..shown], items.len() - shown)
}

fn more_rows(out: &mut String, left_out: usize) {
    if left_out > 0 {
        let _ = writeln!(out, "\n_… and {left_out} more in the JSON plan._");
    }
}

fn markdown_blueprints(plan: &Plan, rows: usize) -> String {
    let mut out = String::new();
    if plan.blueprints.is_empty() {
        return out;
    }
    let _ = writeln!(out, "**Blueprints**\n");
    let (shown, left_out) = capped(&plan.blueprints, rows);
    for b in shown {
        let _ = writeln!(out, "- {} `{}`", verb(b.action), b.identifier);
    }
    more_rows(&mut out, left_out);
    out.push('\n');
    out
}

/// The changes, collapsible per blueprint, as many as fit in `budget` characters, and the
/// number left out.
fn markdown_changes(plan: &Plan, show_nulls: bool, budget: usize) -> (String, usize) {
    let mut by_blueprint: BTreeMap<&str, Vec<&Change>> = BTreeMap::new();
    for c in &plan.changes {
        by_blueprint.entry(&c.blueprint).or_default().push(c);
    }
    let close = "</details>\n\n";
    let mut out = String::new();
    let mut left_out = 0;
    for (blueprint, changes) in by_blueprint {
        let count = |a: Action| changes.iter().filter(|c| c.action == a).count();
        let mut section = format!(
            "<details><summary><code>{}</code>: {} to create, {} to update, {} to delete</summary>\n\n",
            escape_html(blueprint),
            count(Action::Create),
            count(Action::Update),
            count(Action::Delete)
        );
        if out.len() + section.len() + close.len() > budget {
            left_out += changes.len();
            continue;
        }
        for (i, c) in changes.iter().enumerate() {
            let block = markdown_change(c, show_nulls);
            if out.len() + section.len() + block.len() + close.len() > budget {
                left_out += changes.len() - i;
                break;
            }
            section.push_str(&block);
        }
        section.push_str(close);
        out.push_str(&section);
    }
    (out, left_out)
}

fn markdown_change(c: &Change, show_nulls: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "**{}**\n", escape_md(&headline(c)));
    let _ = writeln!(out, "```diff");
    let lines = diff_lines(c, show_nulls);
    let (shown, cut) = capped(&lines, MARKDOWN_DIFF_LINES);
    for (tag, line) in shown {
        let prefix = match tag {
            ChangeTag::Delete => "-",
            ChangeTag::Insert => "+",
            ChangeTag::Equal => " ",
        };
        let _ = writeln!(out, "{prefix} {}", line.replace("```", "'''"));
    }
    if cut > 0 {
        let _ = writeln!(out, "  … {cut} more lines");
    }
    let _ = writeln!(out, "```\n");
    out
}

/// Withheld changes, troubled accounts, failed scopes, mapping errors and warnings, each list
/// at most `rows` long.
fn markdown_tail(plan: &Plan, rows: usize) -> String {
    let mut out = String::new();
    let groups = withheld_groups(plan);
    if !groups.is_empty() {
        let _ = writeln!(
            out,
            "#### Withheld\n\n| count | action | account | reason | detail (of the first) |\n|---|---|---|---|---|"
        );
        let (shown, left_out) = capped(&groups, rows);
        for g in shown {
            let w = g.first;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                g.count,
                verb(w.action),
                cell(w.account.as_deref().unwrap_or("unknown")),
                name_of(&w.reason),
                cell(&format!("{} {}: {}", w.blueprint, w.identifier, w.detail))
            );
        }
        more_rows(&mut out, left_out);
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
        let (shown, left_out) = capped(&troubled, rows);
        for a in shown {
            let status = name_of(&a.status);
            let _ = writeln!(
                out,
                "| {} | {} | {status} | {} |",
                a.id,
                cell(a.name.as_deref().unwrap_or("")),
                cell(a.error.as_deref().unwrap_or(""))
            );
        }
        more_rows(&mut out, left_out);
        out.push('\n');
    }
    if !plan.scopes.is_empty() {
        let _ = writeln!(
            out,
            "#### Failed scopes\n\n| account | region | kind | error |\n|---|---|---|---|"
        );
        let (shown, left_out) = capped(&plan.scopes, rows);
        for s in shown {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                s.account,
                s.region,
                cell(&scope_kind(s)),
                cell(s.error.as_deref().unwrap_or(""))
            );
        }
        more_rows(&mut out, left_out);
        out.push('\n');
    }
    for (title, issues) in [
        ("Mapping errors", &plan.mapping_errors),
        ("Warnings", &plan.warnings),
    ] {
        if !issues.is_empty() {
            let _ = writeln!(out, "#### {title}\n");
            let (shown, left_out) = capped(issues, rows);
            for i in shown {
                let _ = writeln!(out, "- {}", escape_md(&issue_line(i)));
            }
            more_rows(&mut out, left_out);
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
/// `tidemark accounts`: one row per account, its role, whether it was assumed (and why not, with
/// the fix to try, on the line below) and its regions.
pub fn accounts_table(
    accounts: &[crate::core::report::AccountReport],
    shard: Option<&crate::core::shard::Shard>,
) -> String {
    let mut out = String::new();
    if let Some(shard) = shard {
        // A sharded listing shows only this shard's accounts; say so, or a reader counts them
        // as the whole organisation.
        let _ = writeln!(
            out,
            "shard {shard}: {} accounts (the other shards own the rest)",
            accounts.len()
        );
    }
    let _ = writeln!(
        out,
        "{:<14} {:<24} {:<9} {:<50} REGIONS",
        "ACCOUNT", "NAME", "ASSUMED", "ROLE"
    );
    for a in accounts {
        let regions = match &a.regions_error {
            Some(e) => format!("(failed: {e})"),
            None => a.regions.join(","),
        };
        let _ = writeln!(
            out,
            "{:<14} {:<24} {:<9} {:<50} {}",
            a.id,
            a.name.as_deref().unwrap_or("-"),
            if a.assumed { "yes" } else { "NO" },
            a.role_arn.as_deref().unwrap_or("-"),
            regions
        );
        if let Some(e) = &a.error {
            let _ = writeln!(out, "    {e}");
        }
    }
    out
}

/// `tidemark accounts --format json`: one document with how discovery went and every account;
/// sharded, only the shard's accounts, with `"shard": {"index", "count"}` on the document and
/// on each account.
pub fn accounts_json(
    discovery: &crate::core::report::Discovery,
    accounts: &[crate::core::report::AccountReport],
    shard: Option<&crate::core::shard::Shard>,
) -> String {
    let doc = match shard {
        None => serde_json::json!({"discovery": discovery, "accounts": accounts}),
        Some(shard) => {
            let accounts: Vec<serde_json::Value> = accounts
                .iter()
                .map(|a| {
                    let mut v = serde_json::to_value(a).unwrap_or_default();
                    if let Some(fields) = v.as_object_mut() {
                        fields.insert("shard".into(), serde_json::json!(shard));
                    }
                    v
                })
                .collect();
            serde_json::json!({"discovery": discovery, "shard": shard, "accounts": accounts})
        }
    };
    format!(
        "{}\n",
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    )
}

/// `tidemark entities`: one JSON line per owned entity (the shape docs/contract.md gives).
pub fn entities_json(owned: &[crate::core::model::OwnedEntity]) -> String {
    let mut out = String::new();
    for o in owned {
        let line = serde_json::json!({
            "blueprint": o.entity.blueprint,
            "identifier": o.entity.identifier,
            "account": o.account,
            "kind": o.kind,
            "entity": o.entity,
        });
        let _ = writeln!(out, "{line}");
    }
    out
}

/// `tidemark entities --format table`: blueprint, account, kind, identifier and title.
pub fn entities_table(owned: &[crate::core::model::OwnedEntity]) -> String {
    let width = |f: &dyn Fn(&crate::core::model::OwnedEntity) -> usize, header: &str| {
        owned.iter().map(f).max().unwrap_or(0).max(header.len())
    };
    let bp = width(&|o| o.entity.blueprint.len(), "BLUEPRINT");
    let kind = width(&|o| o.kind.as_deref().map_or(1, str::len), "KIND");
    let mut out = format!(
        "{:<bp$} {:<14} {:<kind$} {} (TITLE)\n",
        "BLUEPRINT", "ACCOUNT", "KIND", "IDENTIFIER"
    );
    for o in owned {
        let title = o
            .entity
            .title
            .as_ref()
            .and_then(Json::as_str)
            .map(|t| format!(" ({t})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<bp$} {:<14} {:<kind$} {}{title}",
            o.entity.blueprint,
            o.account.as_deref().unwrap_or("-"),
            o.kind.as_deref().unwrap_or("-"),
            o.entity.identifier
        );
    }
    let count = owned.len();
    let _ = writeln!(out, "{count} {}", plural(count, "entity", "entities"));
    out
}

/// `singular` for one, `plural` otherwise.
pub fn plural<'a>(n: usize, singular: &'a str, plural: &'a str) -> &'a str {
    if n == 1 { singular } else { plural }
}

/// `validate --catalog`: one line per read, grouped by blueprint, then a verdict.
pub fn preflight(
    catalog: &str,
    checks: &[crate::adapters::ReadCheck],
    defined: &dyn Fn(&str) -> bool,
) -> String {
    use crate::adapters::ReadOutcome;
    use std::fmt::Write as _;
    let mut out = format!("{catalog}: the reads tidemark makes\n");
    let mut failures = 0;
    for check in checks {
        let scope = check.blueprint.as_deref().unwrap_or("catalog");
        let (word, detail) = match &check.outcome {
            ReadOutcome::Accepted => ("ok", String::new()),
            ReadOutcome::Refused(message) => ("refused", format!(": {message}")),
            ReadOutcome::Missing if check.blueprint.as_deref().is_some_and(defined) => (
                "new",
                ": not in the catalog yet; apply creates it from blueprints.json".to_string(),
            ),
            ReadOutcome::Missing => (
                "missing",
                ": not in the catalog and no blueprints.json defines it; create it in the catalog or add it to blueprints.json".to_string(),
            ),
        };
        if check.is_failure(defined) {
            failures += 1;
        }
        let _ = writeln!(out, "  {word:<8} {scope}: {}{detail}", check.read);
    }
    if failures == 0 {
        let _ = writeln!(out, "Every read was accepted.");
    } else {
        let _ = writeln!(
            out,
            "{failures} of {} reads would fail; apply would stop on them.",
            checks.len()
        );
    }
    out
}

pub fn apply_report(report: &ApplyReport) -> String {
    let mut out = String::new();
    let (blueprints, written) = (report.blueprints_written.len(), report.upserted.len());
    let _ = writeln!(
        out,
        "Applied: {blueprints} blueprint {}, {written} {} written, {} deleted, {} rejected ({} write {}).",
        plural(blueprints, "change", "changes"),
        plural(written, "entity", "entities"),
        report.deleted.len(),
        report.rejected.len(),
        report.write_requests,
        plural(report.write_requests, "request", "requests")
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
