//! Item → entities for one resources entry: itemsToParse, the selector, then each entity's
//! expressions. Optional fields that fail become null with a warning; a bad identifier, blueprint
//! or selector is a mapping error that skips the entity.

use serde_json::{Map, Value as Json};

use super::expr::{Eval, Expr, Input, ValCache};
use super::file::{EntityTemplate, Entry, Field, RuleTemplate, SearchTemplate, Template};
use super::{ItemOutcome, MappedEntity};
use crate::core::model::{Entity, RawItem};
use crate::core::validate::is_valid_identifier;

/// Longest value quoted in a message.
const MAX_SHOWN: usize = 120;

fn show(v: &Json) -> String {
    let text = v.to_string();
    if text.len() > MAX_SHOWN {
        let cut: String = text.chars().take(MAX_SHOWN).collect();
        format!("{cut}…")
    } else {
        text
    }
}

pub(super) fn map_entry(
    entry: &Entry,
    item: &RawItem,
    env: &super::jq::Env,
    outcome: &mut ItemOutcome,
) {
    let Some(items) = &entry.items_to_parse else {
        let input = Input::Item(item);
        map_input(entry, &input, &mut ValCache::default(), env, outcome);
        return;
    };
    let whole = Input::Item(item);
    let mut cache = ValCache::default();
    let at = &items.expr.at;
    let elements = match items.expr.expr.eval(&whole, &mut cache, env) {
        Eval::Value(Json::Array(elements)) => elements,
        Eval::Value(other) => {
            outcome.errors.push(format!(
                "{at}: itemsToParse `{}` gave {}, not an array",
                items.expr.expr.text,
                show(&other)
            ));
            return;
        }
        Eval::Empty => {
            outcome.errors.push(format!(
                "{at}: itemsToParse `{}` gave no output",
                items.expr.expr.text
            ));
            return;
        }
        Eval::Error(e) => {
            outcome.errors.push(format!(
                "{at}: itemsToParse `{}` failed: {e}",
                items.expr.expr.text
            ));
            return;
        }
    };
    if elements.is_empty() {
        return;
    }
    // Ocean removes the parsed array from the item before adding each element to it.
    let base = match &items.strip {
        None => item.to_mapping_input(),
        Some(strip) => match strip.eval(&whole, &mut cache, env) {
            Eval::Value(v @ Json::Object(_)) => v,
            other => {
                let got = match other {
                    Eval::Value(v) => show(&v),
                    Eval::Empty => "no output".into(),
                    Eval::Error(e) => e,
                };
                outcome.warnings.push(format!(
                    "itemsToParse: `{}` on the item gave {got}; the item is skipped as Ocean does",
                    strip.text
                ));
                return;
            }
        },
    };
    for element in elements {
        let mut merged = base.clone();
        if let Json::Object(map) = &mut merged {
            map.insert(items.name.clone(), element);
        }
        let input = Input::Json(merged);
        map_input(entry, &input, &mut ValCache::default(), env, outcome);
    }
}

fn map_input(
    entry: &Entry,
    input: &Input,
    cache: &mut ValCache,
    env: &super::jq::Env,
    outcome: &mut ItemOutcome,
) {
    let at = &entry.query.at;
    match entry.query.expr.eval(input, cache, env) {
        Eval::Value(Json::Bool(true)) => {}
        Eval::Value(Json::Bool(false)) => return,
        Eval::Value(other) => {
            outcome.errors.push(format!(
                "{at}: selector.query `{}` gave {}, not a boolean",
                entry.query.expr.text,
                show(&other)
            ));
            return;
        }
        Eval::Empty => {
            outcome.errors.push(format!(
                "{at}: selector.query `{}` gave no output, not a boolean",
                entry.query.expr.text
            ));
            return;
        }
        Eval::Error(e) => {
            outcome.errors.push(format!(
                "{at}: selector.query `{}` failed: {e}",
                entry.query.expr.text
            ));
            return;
        }
    }
    for template in &entry.entities {
        let mut ev = Evaluator {
            input,
            cache,
            env,
            warnings: &mut outcome.warnings,
        };
        match ev.entity(template) {
            Ok(entity) => outcome.entities.push(MappedEntity {
                entity,
                write: entry.write,
            }),
            Err(e) => outcome.errors.push(e),
        }
    }
}

struct Evaluator<'a, 'i> {
    input: &'a Input<'i>,
    cache: &'a mut ValCache,
    env: &'a super::jq::Env,
    warnings: &'a mut Vec<String>,
}

impl Evaluator<'_, '_> {
    fn eval(&mut self, expr: &Expr) -> Eval {
        expr.eval(self.input, self.cache, self.env)
    }

    /// A required string field: identifier or blueprint.
    fn key(&mut self, name: &str, field: Option<&Field>) -> Result<String, String> {
        let Some(field) = field else {
            return Err(format!("{name} is not mapped"));
        };
        let (text, at) = (&field.expr.text, &field.at);
        match self.eval(&field.expr) {
            Eval::Value(Json::String(s)) if is_valid_identifier(&s) => Ok(s),
            Eval::Value(Json::String(s)) => Err(format!(
                "{at}: {name} {} (from `{text}`) is not a valid Port identifier (letters, digits, @ _ . + : \\ / = -, at most 1000 characters)",
                show(&Json::String(s))
            )),
            Eval::Value(Json::Null) => Err(format!("{at}: {name} is null (from `{text}`)")),
            Eval::Value(other) => Err(format!(
                "{at}: {name} {} is not a string (from `{text}`)",
                show(&other)
            )),
            Eval::Empty => Err(format!("{at}: {name} `{text}` gave no output")),
            Eval::Error(e) => Err(format!("{at}: {name} `{text}` failed: {e}")),
        }
    }

    /// An optional field: failures and no output become null with a warning.
    fn optional(&mut self, name: &str, field: &Field) -> Json {
        let (expr, at) = (&field.expr, &field.at);
        match self.eval(expr) {
            Eval::Value(v) => v,
            Eval::Empty => {
                self.warnings.push(format!(
                    "{at}: {name} `{}` gave no output; using null",
                    expr.text
                ));
                Json::Null
            }
            Eval::Error(e) => {
                self.warnings.push(format!(
                    "{at}: {name} `{}` failed: {e}; using null",
                    expr.text
                ));
                Json::Null
            }
        }
    }

    fn template(&mut self, name: &str, template: &Template) -> Json {
        match template {
            Template::Expr(field) => self.optional(name, field),
            Template::Object(entries) => Json::Object(self.object(name, entries)),
            Template::Search(search) => self.search(name, search).unwrap_or(Json::Null),
        }
    }

    /// A search relation's query, `{combinator, rules: [{property, operator, value}]}`, with every
    /// jq value evaluated; a part that fails gives `None` with a warning, so the relation is null.
    fn search(&mut self, name: &str, search: &SearchTemplate) -> Option<Json> {
        let string = |this: &mut Self, part: &str, field: &Field| match this.eval(&field.expr) {
            Eval::Value(Json::String(s)) => Some(Json::String(s)),
            other => {
                let got = match other {
                    Eval::Value(v) => format!("gave {}, not a string", show(&v)),
                    Eval::Empty => "gave no output".into(),
                    Eval::Error(e) => format!("failed: {e}"),
                };
                this.warnings.push(format!(
                    "{}: {name} search {part} `{}` {got}; using null",
                    field.at, field.expr.text
                ));
                None
            }
        };
        let combinator = string(self, "combinator", &search.combinator)?;
        let mut rules = Vec::new();
        for rule in &search.rules {
            rules.push(match rule {
                RuleTemplate::Nested(nested) => self.search(name, nested)?,
                RuleTemplate::Property(rule) => {
                    let property = string(self, "property", &rule.property)?;
                    let operator = string(self, "operator", &rule.operator)?;
                    let value = self.optional(&format!("{name} search value"), &rule.value);
                    serde_json::json!({"property": property, "operator": operator, "value": value})
                }
            });
        }
        Some(serde_json::json!({"combinator": combinator, "rules": rules}))
    }

    fn object(&mut self, name: &str, entries: &[(String, Template)]) -> Map<String, Json> {
        entries
            .iter()
            .map(|(k, t)| (k.clone(), self.template(&format!("{name}.{k}"), t)))
            .collect()
    }

    fn entity(&mut self, t: &EntityTemplate) -> Result<Entity, String> {
        let identifier = self.key("identifier", t.identifier.as_ref())?;
        let blueprint = self.key("blueprint", t.blueprint.as_ref())?;
        let mut entity = Entity::new(blueprint, identifier);
        entity.title = t.title.as_ref().map(|f| self.optional("title", f));
        entity.icon = t.icon.as_ref().map(|f| self.optional("icon", f));
        entity.team = t.team.as_ref().map(|f| self.optional("team", f));
        entity.properties = t.properties.as_ref().map(|p| self.object("properties", p));
        entity.relations = t.relations.as_ref().map(|r| self.object("relations", r));
        Ok(entity)
    }
}
