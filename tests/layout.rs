//! The layout's promises, checked on the source text: the core is pure, and only the binary
//! ends the process (docs/internals.md, "Layout").

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("source folder") {
            let path = entry.expect("source entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Lines of `file` that contain any of `needles`, outside comments.
fn offending(file: &Path, needles: &[&str]) -> Vec<String> {
    let text = std::fs::read_to_string(file).expect("source file");
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .filter(|(_, line)| needles.iter().any(|n| line.contains(n)))
        .map(|(i, line)| format!("{}:{}: {}", file.display(), i + 1, line.trim()))
        .collect()
}

#[test]
fn the_core_does_no_io_no_async_and_no_process_control() {
    let forbidden = [
        "tokio",
        "reqwest",
        "rusqlite",
        "aws_sdk",
        "aws_config",
        "aws_smithy",
        "std::process",
        "std::fs",
        "std::env",
        "async ",
        ".await",
        "crate::adapters",
        "crate::sandbox",
        "crate::engine",
        "crate::watch",
        "crate::config",
        "crate::render",
    ];
    let found: Vec<String> = rust_files(&src().join("core"))
        .iter()
        .flat_map(|f| offending(f, &forbidden))
        .collect();
    assert!(
        found.is_empty(),
        "src/core must stay pure:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_the_binary_ends_the_process() {
    let main = src().join("main.rs");
    let found: Vec<String> = rust_files(&src())
        .iter()
        .filter(|f| **f != main)
        .flat_map(|f| offending(f, &["process::exit", "process::abort"]))
        .collect();
    assert!(
        found.is_empty(),
        "only main.rs may exit:\n{}",
        found.join("\n")
    );
}
