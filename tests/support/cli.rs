//! Running the real `tidemark` binary in a temp dir: the workspace, its files and the process's
//! exit code and output.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

pub const BIN: &str = env!("CARGO_BIN_EXE_tidemark");

/// A temp dir holding a config, its snapshot and mappings; commands run inside it.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A workspace holding the files of the project's `rel` folder that the repository tracks
    /// (see [`copy_tracked`]), so that state a user's run left there (the demo's
    /// `.tidemark/catalog.db`) cannot change a test's outcome.
    pub fn copy_of(rel: &str) -> Workspace {
        let ws = Workspace::new();
        copy_tracked(Path::new(env!("CARGO_MANIFEST_DIR")), rel, ws.dir.path());
        ws
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The path of `tidemark.yaml`, as an argument.
    pub fn config(&self) -> String {
        self.config_path().display().to_string()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path("tidemark.yaml")
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    pub fn write_json(&self, rel: &str, value: &Json) {
        self.write(rel, &serde_json::to_string_pretty(value).expect("json"));
    }

    pub fn read_json(&self, rel: &str) -> Json {
        serde_json::from_str(&std::fs::read_to_string(self.path(rel)).expect("read")).expect("json")
    }

    /// `tidemark args…` in the workspace, with plain output and no inherited log filter.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1");
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run tidemark")
    }

    /// `plan -c tidemark.yaml --format json extra…` → (exit code, plan).
    pub fn plan(&self, extra: &[&str]) -> (i32, Json) {
        let config = self.config();
        let mut args = vec!["plan", "-c", &config, "--format", "json"];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        let plan = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "plan is not JSON ({e}): {}\n{}",
                text(&out.stdout),
                text(&out.stderr)
            )
        });
        (code(&out), plan)
    }

    /// `apply -c tidemark.yaml extra…`.
    pub fn apply(&self, extra: &[&str]) -> Output {
        let config = self.config();
        let mut args = vec!["apply", "-c", &config];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// Owned entities as `tidemark entities` prints them.
    pub fn entities(&self) -> Vec<Json> {
        let config = self.config();
        let out = self.run(&["entities", "-c", &config]);
        assert_eq!(code(&out), 0, "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }
}

/// Runs `command`, killing it and failing the test when it takes longer than `limit`: a hang must
/// fail the suite, not block it. Not a timing assertion: the limit is far above what a working run
/// needs.
pub fn output_within(mut command: Command, limit: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tidemark");
    // Drained on threads so that a full pipe cannot stall the child.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for tidemark") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = text(&stderr.join().unwrap_or_default());
            let lines: Vec<&str> = err.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            panic!(
                "{command:?} did not finish within {limit:?} and was killed; the end of its stderr:\n{tail}"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// The entry of account `id` in a plan's `accounts`.
pub fn plan_account(plan: &Json, id: &str) -> Json {
    plan["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .find(|a| a["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no account {id} in the plan"))
}

/// (identifier, reason) of every entity `plan` withholds.
pub fn withheld(plan: &Json) -> Vec<(&str, &str)> {
    plan["withheld"]
        .as_array()
        .expect("withheld")
        .iter()
        .map(|w| {
            (
                w["identifier"].as_str().unwrap_or_default(),
                w["reason"].as_str().unwrap_or_default(),
            )
        })
        .collect()
}

/// Asserts that `out` exited with `expected`, showing its stdout and stderr when it did not.
#[track_caller]
pub fn assert_exit(out: &Output, expected: i32) {
    assert_eq!(
        code(out),
        expected,
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The exit code; -1 for a process ended by a signal.
pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Copies the files under `root/rel` that git tracks into `to`, keeping their paths below `rel`.
/// Ignored and untracked files (a local catalog, editor backups) stay behind: tests start from
/// what a fresh clone has, whatever the user ran in the tree before. Outside a git checkout (a
/// source archive) every file is copied except hidden ones, which is where tidemark keeps state.
pub fn copy_tracked(root: &Path, rel: &str, to: &Path) {
    let listed = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["ls-files", "-z", "--full-name", "--", rel])
        .output();
    let files: Vec<PathBuf> = match listed {
        Ok(out) if out.status.success() => out
            .stdout
            .split(|b| *b == 0)
            .filter(|name| !name.is_empty())
            .map(|name| PathBuf::from(text(name)))
            .collect(),
        _ => visible_files(&root.join(rel))
            .into_iter()
            .map(|file| {
                file.strip_prefix(root)
                    .expect("below the root")
                    .to_path_buf()
            })
            .collect(),
    };
    assert!(
        !files.is_empty(),
        "no files under {}",
        root.join(rel).display()
    );
    for file in files {
        let below = file.strip_prefix(rel).expect("listed below rel");
        let target = to.join(below);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::copy(root.join(&file), target).expect("copy");
    }
}

/// Every file below `dir`, skipping hidden files and folders.
fn visible_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("entry");
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if entry.path().is_dir() {
            files.extend(visible_files(&entry.path()));
        } else {
            files.push(entry.path());
        }
    }
    files
}
