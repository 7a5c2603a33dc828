//! The mapping benchmark set gives what jq 1.7.1 gives. For each mapping of `bench/map` (the
//! default `builtin:aws`, Port's published Ocean AWS mappings, the idiom mapping and the basic
//! one), `tests/fixtures/bench_map/<set>/golden.jsonl` holds, per item of `items.jsonl`, the
//! entities jq 1.7.1 gives expression by expression and the jq error messages of fields that
//! failed; `bench/map/run.sh --regen-goldens` records it with libjq 1.7.1. `tidemark map` must
//! give the same entities, entity for entity, on one core and on several, and warn with every
//! one of those messages.

#[path = "support/jq.rs"]
mod jq;

use std::process::Command;

use jq::same;
use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_tidemark");
const ACCOUNT: &str = "123456789012";

fn lines(text: &str) -> Vec<Json> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Runs `tidemark map` with `threads` mapping threads; its entities and its standard error.
fn map(mapping: &str, items: &str, region: &str, threads: &str) -> (Vec<Json>, String) {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(BIN)
        .current_dir(root)
        .env("RAYON_NUM_THREADS", threads)
        .args(["map", "--mapping", mapping, "--input", items])
        .args(["--account", ACCOUNT, "--region", region])
        .output()
        .expect("tidemark runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.code().is_some_and(|c| c == 0 || c == 3),
        "tidemark map {mapping} failed: {stderr}"
    );
    (lines(&String::from_utf8_lossy(&out.stdout)), stderr)
}

fn check(set: &str, mapping: &str, region: &str) {
    let dir = format!("tests/fixtures/bench_map/{set}");
    let root = env!("CARGO_MANIFEST_DIR");
    let golden = std::fs::read_to_string(format!("{root}/{dir}/golden.jsonl"))
        .unwrap_or_else(|e| panic!("{dir}/golden.jsonl: {e}"));
    let golden = lines(&golden);
    let want: Vec<&Json> = golden
        .iter()
        .flat_map(|g| g["entities"].as_array().into_iter().flatten())
        .collect();
    let messages: Vec<&str> = golden
        .iter()
        .flat_map(|g| g["errors"].as_array().into_iter().flatten())
        .filter_map(Json::as_str)
        .collect();
    let items = format!("{dir}/items.jsonl");
    for threads in ["1", "2"] {
        let (got, stderr) = map(mapping, &items, region, threads);
        assert_eq!(
            got.len(),
            want.len(),
            "{set} ({threads} threads): entity counts differ"
        );
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            // tidemark writes only the fields the mapping has, as does the golden; a title
            // that is null is the same either way.
            let mut g = g.clone();
            if let Some(obj) = g.as_object_mut() {
                obj.retain(|k, v| !v.is_null() || w.get(k).is_some());
            }
            assert!(
                same(&g, w),
                "{set} ({threads} threads): entity {i} differs from jq 1.7.1\n got: {g}\nwant: {w}"
            );
        }
        for m in &messages {
            assert!(
                stderr.contains(m),
                "{set}: jq 1.7.1's error `{m}` is not in tidemark's warnings:\n{stderr}"
            );
        }
    }
}

#[test]
fn builtin_aws_gives_what_jq_1_7_1_gives() {
    check("builtin", "mappings/aws.yaml", "eu-west-1");
}

#[test]
fn ocean_published_mappings_give_what_jq_1_7_1_gives() {
    check("ocean", "bench/map/ocean/mapping.yaml", "eu-west-1");
}

#[test]
fn the_idiom_mapping_gives_what_jq_1_7_1_gives() {
    check("idioms", "bench/map/idioms/mapping.yaml", "us-east-1");
}

#[test]
fn the_basic_mapping_gives_what_jq_1_7_1_gives() {
    check("basic", "bench/map/mapping.yaml", "us-east-1");
}
