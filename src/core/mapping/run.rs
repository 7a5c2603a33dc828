//! `tidemark map`: JSON items in, one entity per output line, skipped items and warnings to the
//! diagnostics writer. Items may be raw Cloud Control descriptions or items as mappings see them.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Mutex, OnceLock};

use serde_json::value::RawValue;
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
const CHUNK: usize = 2048;

/// Maps a chunk of items, one outcome per item in order; an error stops the run. It may be
/// called from another thread than the one that started the run.
pub type MapItems<'a> = dyn FnMut(&[RawItem]) -> Result<Vec<ItemOutcome>, String> + Send + 'a;

/// Runs independent jobs, on this thread or on several. The core holds no threads; the caller
/// decides how to spread.
pub trait Spread: Sync {
    /// `job(i)` once for every `i` below `count`, in any order.
    fn each(&self, count: usize, job: &(dyn Fn(usize) + Sync));

    /// `a` and `b` once each, one after the other or at the same time.
    fn both(&self, a: &mut (dyn FnMut() + Send), b: &mut (dyn FnMut() + Send)) {
        a();
        b();
    }
}

/// One job after the other, on this thread.
pub struct InOrder;

impl Spread for InOrder {
    fn each(&self, count: usize, job: &(dyn Fn(usize) + Sync)) {
        (0..count).for_each(job);
    }
}

/// `f` on every item through `spread`; the results are in the items' order.
pub fn spread_map<T: Sync, U: Send + Sync>(
    spread: &dyn Spread,
    items: &[T],
    f: impl Fn(&T) -> U + Sync,
) -> Vec<U> {
    let slots: Vec<OnceLock<U>> = items.iter().map(|_| OnceLock::new()).collect();
    spread.each(items.len(), &|i| {
        let _ = slots[i].set(f(&items[i]));
    });
    slots
        .into_iter()
        .map(|slot| slot.into_inner().expect("Spread::each runs every job"))
        .collect()
}

/// As [`spread_map`], but `f` takes each item whole, so that it is also dropped where it was
/// used rather than all on this thread.
fn spread_into<T: Send, U: Send + Sync>(
    spread: &dyn Spread,
    items: Vec<T>,
    f: impl Fn(T) -> U + Sync,
) -> Vec<U> {
    let items: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
    spread_map(spread, &items, |slot| {
        let item = slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .expect("Spread::each runs each job once");
        f(item)
    })
}

/// Runs `tidemark map` on the input `text`: items in (a JSON object, array, or JSON lines; raw
/// Cloud Control descriptions or items as mappings see them), one entity per output line,
/// skipped items and warnings to `diagnostics`. `map_items` maps them, here or in a worker
/// child; `maps_kind` says which kinds the mapping has entries for, so that items nothing maps
/// are reported.
///
/// The run is a pipeline of chunks through `spread`: while one chunk's items are read, mapped
/// and formatted (each of those spread over the items), the chunk before it is written and
/// the one after it is found in the input. Only finding where values begin and end, and
/// writing in order, are serial, and they overlap with the rest.
pub fn run_map(
    map_items: &mut MapItems<'_>,
    maps_kind: &(dyn Fn(&str) -> bool + Sync),
    spread: &dyn Spread,
    options: &MapOptions,
    text: &str,
    out: &mut (dyn Write + Send),
    diagnostics: &mut (dyn Write + Send),
) -> Result<MapSummary, MapInputError> {
    let mut prepare = Prepare {
        map_items,
        maps_kind,
        spread,
        options,
        redactor: Redactor::new("", &[]).map_err(|_| input_error("default redactions"))?,
    };
    let mut write = Output {
        summary: MapSummary::default(),
        out,
        diagnostics,
    };
    let mut chunks = Chunks::new(text);
    let mut next = chunks.next();
    let mut ready: Option<Prepared> = None;
    loop {
        let current = match next {
            Ok(current) => current,
            Err(e) => {
                // What was read before the error is written, as a serial run would have.
                if let Some(ready) = ready.take() {
                    write.chunk(ready)?;
                }
                return Err(e);
            }
        };
        if current.is_none() && ready.is_none() {
            break;
        }
        let (mut written, mut prepared) = (Ok(()), None);
        next = Ok(None);
        spread.both(
            &mut || {
                if let Some(ready) = ready.take() {
                    written = write.chunk(ready);
                }
                if current.is_some() {
                    next = chunks.next();
                }
            },
            &mut || {
                prepared = current
                    .as_ref()
                    .map(|(first, values)| prepare.chunk(*first, values))
            },
        );
        written?;
        ready = prepared.transpose()?;
    }
    write.finish()
}

/// A chunk of the input's values, with the index of its first value in the input.
type Chunk<'t> = (usize, Vec<&'t RawValue>);

/// The input's values a chunk at a time, each chunk with the index of its first item. Only the
/// bounds of each value are found here; reading it happens in [`Prepare::chunk`].
struct Chunks<'t> {
    stream: serde_json::StreamDeserializer<'t, serde_json::de::StrRead<'t>, &'t RawValue>,
    pending: VecDeque<&'t RawValue>,
    taken: usize,
}

impl<'t> Chunks<'t> {
    fn new(text: &'t str) -> Chunks<'t> {
        Chunks {
            stream: serde_json::Deserializer::from_str(text).into_iter(),
            pending: VecDeque::with_capacity(CHUNK),
            taken: 0,
        }
    }

    /// The next [`CHUNK`] values, fewer only at the end of the input; `None` after the last.
    fn next(&mut self) -> Result<Option<Chunk<'t>>, MapInputError> {
        let not_json = |e: serde_json::Error| {
            input_error(format!(
                "input is not JSON at line {}, column {}: {e}",
                e.line(),
                e.column()
            ))
        };
        while self.pending.len() < CHUNK {
            let Some(value) = self.stream.next() else {
                break;
            };
            let value = value.map_err(not_json)?;
            if value.get().trim_start().starts_with('[') {
                let items: Vec<&RawValue> = serde_json::from_str(value.get()).map_err(not_json)?;
                self.pending.extend(items);
            } else {
                self.pending.push_back(value);
            }
        }
        if self.pending.is_empty() {
            return Ok(None);
        }
        let take = self.pending.len().min(CHUNK);
        let values: Vec<&RawValue> = self.pending.drain(..take).collect();
        let first = self.taken;
        self.taken += take;
        Ok(Some((first, values)))
    }
}

fn write_error(e: std::io::Error) -> MapInputError {
    input_error(format!("writing output: {e}"))
}

/// One mapped item as it is written: its entities' lines, its warnings and errors, each naming
/// the item, and their counts.
struct Written {
    lines: Vec<u8>,
    diagnostics: Vec<u8>,
    entities: usize,
    warnings: usize,
    failed: bool,
}

impl Written {
    fn new(item: &RawItem, outcome: &ItemOutcome) -> std::io::Result<Written> {
        let mut lines = Vec::new();
        for mapped in &outcome.entities {
            serde_json::to_writer(&mut lines, &mapped.entity)?;
            lines.push(b'\n');
        }
        let mut diagnostics = Vec::new();
        if !outcome.warnings.is_empty() || !outcome.errors.is_empty() {
            let place = format!(
                "{} {} (account {:?}, region {:?})",
                item.kind, item.identifier, item.account, item.region
            );
            for w in &outcome.warnings {
                writeln!(diagnostics, "warning: {place}: {w}")?;
            }
            for e in &outcome.errors {
                writeln!(diagnostics, "error: {place}: {e}")?;
            }
        }
        Ok(Written {
            lines,
            diagnostics,
            entities: outcome.entities.len(),
            warnings: outcome.warnings.len(),
            failed: !outcome.errors.is_empty(),
        })
    }
}

/// A chunk read, mapped and formatted, waiting to be written.
struct Prepared {
    /// Values in the chunk.
    values: usize,
    /// Each mapped item, in order.
    written: Vec<std::io::Result<Written>>,
    /// Unreadable items, each with the number of mapped ones before it, so that every
    /// diagnostic is written in the input's order.
    unreadable: Vec<(usize, String)>,
    /// The kind of each item that no entry maps.
    unmapped: Vec<String>,
}

/// What `tidemark map` reads and maps with.
struct Prepare<'r, 'w> {
    map_items: &'r mut MapItems<'w>,
    maps_kind: &'r (dyn Fn(&str) -> bool + Sync),
    spread: &'r dyn Spread,
    options: &'r MapOptions,
    redactor: Redactor,
}

impl Prepare<'_, '_> {
    /// Reads a chunk's items, maps them and formats their entities and diagnostics; `first`
    /// is the index of the chunk's first value in the input.
    fn chunk(&mut self, first: usize, values: &[&RawValue]) -> Result<Prepared, MapInputError> {
        let (options, redactor) = (self.options, &self.redactor);
        let read = spread_map(self.spread, values, |value| {
            let value: Json = serde_json::from_str(value.get()).map_err(|e| e.to_string())?;
            let mut item = to_raw_item(value, options)?;
            redactor.redact(&mut item);
            Ok::<RawItem, String>(item)
        });
        let mut items = Vec::with_capacity(read.len());
        let (mut unreadable, mut unmapped) = (Vec::new(), Vec::new());
        for (at, item) in read.into_iter().enumerate() {
            match item {
                Ok(item) if !(self.maps_kind)(&item.kind) => unmapped.push(item.kind),
                Ok(item) => items.push(item),
                Err(message) => {
                    let warning = format!("warning: item {} skipped: {message}", first + at + 1);
                    unreadable.push((items.len(), warning));
                }
            }
        }
        let outcomes = if items.is_empty() {
            Vec::new()
        } else {
            (self.map_items)(&items).map_err(input_error)?
        };
        let written = spread_into(
            self.spread,
            items.into_iter().zip(outcomes).collect(),
            |(item, outcome)| Written::new(&item, &outcome),
        );
        Ok(Prepared {
            values: values.len(),
            written,
            unreadable,
            unmapped,
        })
    }
}

/// Where `tidemark map` writes, and what it has counted.
struct Output<'r> {
    summary: MapSummary,
    out: &'r mut (dyn Write + Send),
    diagnostics: &'r mut (dyn Write + Send),
}

impl Output<'_> {
    /// Writes a prepared chunk's entities and diagnostics, in order, and counts them.
    fn chunk(&mut self, prepared: Prepared) -> Result<(), MapInputError> {
        self.summary.items += prepared.values;
        self.summary.skipped += prepared.unreadable.len() + prepared.unmapped.len();
        for kind in prepared.unmapped {
            *self.summary.unmapped.entry(kind).or_default() += 1;
        }
        let mut unreadable = prepared.unreadable.into_iter().peekable();
        for (at, written) in prepared.written.into_iter().enumerate() {
            while let Some((_, warning)) = unreadable.next_if(|(before, _)| *before == at) {
                writeln!(self.diagnostics, "{warning}").map_err(write_error)?;
            }
            let written = written.map_err(write_error)?;
            self.summary.entities += written.entities;
            self.summary.warnings += written.warnings;
            if written.failed {
                self.summary.skipped += 1;
                self.summary.mapping_errors += 1;
            }
            self.diagnostics
                .write_all(&written.diagnostics)
                .map_err(write_error)?;
            self.out.write_all(&written.lines).map_err(write_error)?;
        }
        for (_, warning) in unreadable {
            writeln!(self.diagnostics, "{warning}").map_err(write_error)?;
        }
        self.diagnostics.flush().map_err(write_error)
    }

    /// Flushes the output and reports the kinds nothing mapped.
    fn finish(self) -> Result<MapSummary, MapInputError> {
        self.out.flush().map_err(write_error)?;
        for (kind, count) in &self.summary.unmapped {
            let items = if *count == 1 { "item" } else { "items" };
            writeln!(
                self.diagnostics,
                "warning: {count} {items} of kind {kind} skipped: no entry of the mapping maps this kind (pass --kind to map them as another)"
            )
            .map_err(write_error)?;
        }
        self.diagnostics.flush().map_err(write_error)?;
        Ok(self.summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::mapping::MappedEntity;
    use crate::core::model::{Entity, WriteOptions};

    /// Runs the jobs last to first, as a pool may.
    struct Backwards;

    impl Spread for Backwards {
        fn each(&self, count: usize, job: &(dyn Fn(usize) + Sync)) {
            (0..count).rev().for_each(job);
        }

        fn both(&self, a: &mut (dyn FnMut() + Send), b: &mut (dyn FnMut() + Send)) {
            b();
            a();
        }
    }

    /// One entity per item named after it; an item named `bad-…` has a mapping error, one named
    /// `warn-…` a warning.
    fn outcome(item: &RawItem) -> ItemOutcome {
        let id = &item.identifier;
        if id.starts_with("bad-") {
            return ItemOutcome {
                errors: vec!["identifier is not a string".into()],
                ..ItemOutcome::default()
            };
        }
        let entity = Entity {
            identifier: id.clone(),
            blueprint: "thing".into(),
            title: None,
            icon: None,
            team: None,
            properties: None,
            relations: None,
        };
        ItemOutcome {
            entities: vec![MappedEntity {
                entity,
                write: WriteOptions {
                    merge: false,
                    create_missing_related: false,
                },
            }],
            warnings: if id.starts_with("warn-") {
                vec!["title gave no output".into()]
            } else {
                Vec::new()
            },
            errors: Vec::new(),
        }
    }

    /// Maps `input` with [`outcome`]; a chunk with an item named `fail-…` fails as a whole, as
    /// a worker child that died would. Gives the output, the diagnostics, and the summary or the
    /// error.
    fn try_run(spread: &dyn Spread, input: &str) -> (String, String, Result<MapSummary, String>) {
        let mut map_items = |items: &[RawItem]| {
            if items.iter().any(|i| i.identifier.starts_with("fail-")) {
                return Err("the worker died".to_string());
            }
            Ok(items.iter().map(outcome).collect())
        };
        let (mut out, mut diagnostics) = (Vec::new(), Vec::new());
        let options = MapOptions {
            region: Some("eu-west-1".into()),
            ..MapOptions::default()
        };
        let summary = run_map(
            &mut map_items,
            &|kind| kind == "AWS::S3::Bucket",
            spread,
            &options,
            input,
            &mut out,
            &mut diagnostics,
        );
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("UTF-8");
        (text(out), text(diagnostics), summary.map_err(|e| e.message))
    }

    fn run(spread: &dyn Spread, input: &str) -> (String, String, MapSummary) {
        let (out, diagnostics, summary) = try_run(spread, input);
        (out, diagnostics, summary.expect("the input is JSON"))
    }

    fn buckets(ids: impl Iterator<Item = String>) -> Vec<String> {
        ids.map(|id| format!(r#"{{"TypeName":"AWS::S3::Bucket","Identifier":"{id}"}}"#))
            .collect()
    }

    #[test]
    fn a_failure_later_in_the_input_keeps_the_whole_chunks_before_it() {
        // Two whole chunks, then a third that breaks: by bad JSON, or by a failed mapping.
        let mut lines = buckets((0..2 * CHUNK + 5).map(|i| format!("b{i}")));
        let broken_json = format!("{}\n{{\"TypeName\":", lines.join("\n"));
        lines[2 * CHUNK + 1] = buckets(["fail-1".to_string()].into_iter()).remove(0);
        let failed_mapping = lines.join("\n");
        for spread in [&InOrder as &dyn Spread, &Backwards] {
            let (out, _, result) = try_run(spread, &broken_json);
            assert_eq!(out.lines().count(), 2 * CHUNK);
            let error = result.expect_err("the input ends inside an object");
            assert!(
                error.starts_with(&format!("input is not JSON at line {}", 2 * CHUNK + 6)),
                "{error}"
            );
            let (out, _, result) = try_run(spread, &failed_mapping);
            assert_eq!(out.lines().count(), 2 * CHUNK);
            assert_eq!(
                result.expect_err("the third chunk fails"),
                "the worker died"
            );
        }
    }

    #[test]
    fn output_and_diagnostics_keep_the_input_order_whatever_order_the_jobs_run_in() {
        let item = |id: &str| format!(r#"{{"TypeName":"AWS::S3::Bucket","Identifier":"{id}"}}"#);
        let mut lines: Vec<String> = (0..3000).map(|i| item(&format!("b{i}"))).collect();
        lines[7] = item("warn-7");
        lines[8] = item("bad-8");
        lines[9] = r#"{"TypeName":"AWS::SQS::Queue","Identifier":"q"}"#.into();
        lines[10] = "[1]".into();
        lines[2500] = item("warn-2500");
        let input = lines.join("\n");

        let in_order = run(&InOrder, &input);
        assert_eq!(in_order, run(&Backwards, &input));
        let (out, diagnostics, summary) = in_order;
        let ids: Vec<String> = out
            .lines()
            .map(|l| serde_json::from_str::<Json>(l).expect("an entity")["identifier"].to_string())
            .collect();
        assert_eq!(ids.len(), 2997);
        assert_eq!(
            ids[..8].join(","),
            r#""b0","b1","b2","b3","b4","b5","b6","warn-7""#
        );
        assert_eq!(ids[8], r#""b11""#);
        let diagnostics: Vec<&str> = diagnostics.lines().collect();
        assert_eq!(diagnostics.len(), 5, "{diagnostics:?}");
        assert!(
            diagnostics[0].starts_with(
                "warning: AWS::S3::Bucket warn-7 (account \"\", region \"eu-west-1\")"
            )
        );
        assert!(diagnostics[1].starts_with("error: AWS::S3::Bucket bad-8"));
        assert!(diagnostics[2].starts_with(
            "warning: item 11 skipped: an item must be a JSON object, found a number"
        ));
        assert!(diagnostics[3].starts_with("warning: AWS::S3::Bucket warn-2500"));
        assert!(diagnostics[4].contains("1 item of kind AWS::SQS::Queue skipped"));
        assert_eq!(
            (summary.items, summary.entities, summary.skipped),
            (3000, 2997, 3)
        );
        assert_eq!((summary.warnings, summary.mapping_errors), (2, 1));
    }

    #[test]
    fn one_array_of_many_chunks_maps_every_item_once_in_order() {
        let items: Vec<String> = (0..5000)
            .map(|i| format!(r#"{{"TypeName":"AWS::S3::Bucket","Identifier":"b{i}"}}"#))
            .collect();
        let input = format!("[{}]\n{}", items.join(","), items[0]);
        let (out, diagnostics, summary) = run(&Backwards, &input);
        let ids: Vec<String> = out
            .lines()
            .map(|l| serde_json::from_str::<Json>(l).expect("an entity")["identifier"].to_string())
            .collect();
        let want: Vec<String> = (0..5000)
            .map(|i| format!(r#""b{i}""#))
            .chain([r#""b0""#.to_string()])
            .collect();
        assert_eq!(ids, want);
        assert_eq!(diagnostics, "");
        assert_eq!((summary.items, summary.entities), (5001, 5001));
    }
}
