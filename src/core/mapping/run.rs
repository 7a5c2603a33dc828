//! `tidemark map`: JSON items in, one entity per output line, skipped items and warnings to the
//! diagnostics writer. Items may be raw Cloud Control descriptions or items as mappings see them.

use std::io::{BufRead, Write};

use serde_json::{Map, Value as Json};

use super::redact::Redactor;
use super::{ItemOutcome, MapInputError, MapOptions, MapSummary};
use crate::core::model::RawItem;

fn input_error(message: impl Into<String>) -> MapInputError {
    MapInputError {
        message: message.into(),
    }
}

fn take_str(obj: &mut Map<String, Json>, key: &str) -> Option<String> {
    match obj.remove(key) {
        Some(Json::String(s)) => Some(s),
        _ => None,
    }
}

/// Turns one input object into a raw item, or says why it cannot be one.
fn to_raw_item(value: Json, options: &MapOptions) -> Result<RawItem, String> {
    let Json::Object(mut obj) = value else {
        return Err(format!(
            "an item must be a JSON object, found {}",
            match value {
                Json::Array(_) => "an array",
                Json::String(_) => "a string",
                Json::Number(_) => "a number",
                Json::Bool(_) => "a boolean",
                _ => "null",
            }
        ));
    };
    let mut extra = match obj.remove("__ExtraContext") {
        Some(Json::Object(m)) => m,
        _ => Map::new(),
    };
    let type_name = take_str(&mut obj, "TypeName");
    let type_field = take_str(&mut obj, "Type");
    let kind_field = take_str(&mut obj, "__Kind");
    let kind = options
        .kind
        .clone()
        .or(type_name)
        .or(type_field)
        .or(kind_field)
        .ok_or("the item has no Type, TypeName or __Kind; pass --kind")?;
    let identifier = match obj.remove("Identifier") {
        Some(Json::String(s)) => s,
        Some(Json::Number(n)) => n.to_string(),
        _ => return Err(format!("the {kind} item has no Identifier")),
    };
    let properties = match obj.remove("Properties") {
        // Cloud Control returns the model as a JSON string.
        Some(Json::String(text)) => serde_json::from_str(&text)
            .map_err(|e| format!("{kind} {identifier}: Properties is not valid JSON: {e}"))?,
        Some(other) => other,
        None => Json::Object(Map::new()),
    };
    let account = take_str(&mut obj, "__AccountId")
        .or_else(|| take_str(&mut extra, "AccountId"))
        .or_else(|| options.account.clone())
        .unwrap_or_default();
    let region = take_str(&mut obj, "__Region")
        .or_else(|| take_str(&mut extra, "Region"))
        .or_else(|| options.region.clone())
        .unwrap_or_default();
    Ok(RawItem {
        account,
        account_name: take_str(&mut extra, "AccountName"),
        region,
        kind,
        identifier,
        model: None,
        properties,
    })
}

/// Items mapped at a time: outcomes are written per chunk, so output streams while memory stays
/// bounded, and a worker child gets batches large enough to keep its pipe busy.
const CHUNK: usize = 512;

/// Maps a chunk of items, one outcome per item in order; an error stops the run.
pub type MapItems<'a> = dyn FnMut(&[RawItem]) -> Result<Vec<ItemOutcome>, String> + 'a;

/// Runs `tidemark map`: items in (a JSON object, array, or JSON lines; raw Cloud Control
/// descriptions or items as mappings see them), one entity per output line, skipped items and
/// warnings to `diagnostics`. `map_items` maps them, here or in a worker child; `maps_kind`
/// says which kinds the mapping has entries for, so that items nothing maps are reported.
pub fn run_map(
    map_items: &mut MapItems<'_>,
    maps_kind: &dyn Fn(&str) -> bool,
    options: &MapOptions,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    diagnostics: &mut dyn Write,
) -> Result<MapSummary, MapInputError> {
    let mut text = String::new();
    input
        .read_to_string(&mut text)
        .map_err(|e| input_error(format!("reading input: {e}")))?;
    let redactor = Redactor::new("", &[]).map_err(|_| input_error("default redactions"))?;
    let mut summary = MapSummary::default();
    let mut chunk: Vec<RawItem> = Vec::with_capacity(CHUNK);
    let mut writer = Output {
        out,
        diagnostics,
        line: Vec::with_capacity(512),
    };
    let mut add = |value: Json,
                   chunk: &mut Vec<RawItem>,
                   summary: &mut MapSummary,
                   writer: &mut Output<'_>| {
        summary.items += 1;
        match to_raw_item(value, options) {
            Ok(item) if !maps_kind(&item.kind) => {
                summary.skipped += 1;
                *summary.unmapped.entry(item.kind).or_default() += 1;
            }
            Ok(mut item) => {
                redactor.redact(&mut item);
                chunk.push(item);
            }
            Err(message) => {
                summary.skipped += 1;
                writeln!(
                    writer.diagnostics,
                    "warning: item {} skipped: {message}",
                    summary.items
                )
                .map_err(write_error)?;
            }
        }
        if chunk.len() == CHUNK {
            writer.flush_chunk(map_items, chunk, summary)?;
        }
        Ok::<(), MapInputError>(())
    };
    let stream = serde_json::Deserializer::from_str(&text).into_iter::<Json>();
    for value in stream {
        let value = value.map_err(|e| {
            input_error(format!(
                "input is not JSON at line {}, column {}: {e}",
                e.line(),
                e.column()
            ))
        })?;
        match value {
            Json::Array(items) => {
                for item in items {
                    add(item, &mut chunk, &mut summary, &mut writer)?;
                }
            }
            other => add(other, &mut chunk, &mut summary, &mut writer)?,
        }
    }
    writer.flush_chunk(map_items, &mut chunk, &mut summary)?;
    writer.out.flush().map_err(write_error)?;
    for (kind, count) in &summary.unmapped {
        let items = if *count == 1 { "item" } else { "items" };
        writeln!(
            writer.diagnostics,
            "warning: {count} {items} of kind {kind} skipped: no entry of the mapping maps this kind (pass --kind to map them as another)"
        )
        .map_err(write_error)?;
    }
    Ok(summary)
}

fn write_error(e: std::io::Error) -> MapInputError {
    input_error(format!("writing output: {e}"))
}

/// Where `tidemark map` writes.
struct Output<'w> {
    out: &'w mut dyn Write,
    diagnostics: &'w mut dyn Write,
    line: Vec<u8>,
}

impl Output<'_> {
    /// Maps the chunk's items and writes their entities and diagnostics; empties the chunk.
    fn flush_chunk(
        &mut self,
        map_items: &mut MapItems<'_>,
        chunk: &mut Vec<RawItem>,
        summary: &mut MapSummary,
    ) -> Result<(), MapInputError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let outcomes = map_items(chunk).map_err(input_error)?;
        for (item, outcome) in chunk.drain(..).zip(outcomes) {
            let place = format!(
                "{} {} (account {:?}, region {:?})",
                item.kind, item.identifier, item.account, item.region
            );
            for w in &outcome.warnings {
                summary.warnings += 1;
                writeln!(self.diagnostics, "warning: {place}: {w}").map_err(write_error)?;
            }
            if !outcome.errors.is_empty() {
                summary.skipped += 1;
                summary.mapping_errors += 1;
            }
            for e in &outcome.errors {
                writeln!(self.diagnostics, "error: {place}: {e}").map_err(write_error)?;
            }
            for mapped in &outcome.entities {
                summary.entities += 1;
                self.line.clear();
                serde_json::to_writer(&mut self.line, &mapped.entity)
                    .map_err(|e| input_error(format!("writing output: {e}")))?;
                self.line.push(b'\n');
                self.out.write_all(&self.line).map_err(write_error)?;
            }
        }
        Ok(())
    }
}
