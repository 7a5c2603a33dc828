//! The `tidemark` binary: flags → command → exit code. All behaviour lives in the library.

use std::io::{self, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use tidemark::mapping::{self, LoadOptions, MapOptions, MappingSource, Mappings};

#[derive(Parser, Debug)]
#[command(
    name = "tidemark",
    version,
    about = "Keeps a software catalog in step with the resources of many AWS accounts"
)]
struct Cli {
    /// error | warn | info | debug | trace (or RUST_LOG)
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    /// text | json
    #[arg(long, global = true, value_name = "FORMAT", default_value = "text")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs mappings on raw resources and prints the entities as JSON lines.
    Map {
        #[arg(long, value_name = "FILE")]
        mapping: PathBuf,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        region: Option<String>,
        /// A file, or - for standard input (the default).
        #[arg(long, value_name = "FILE")]
        input: Option<String>,
    },
}

/// Exit codes from SPEC: 0 success, 2 changes (plan --detailed-exitcode), 3 partial, 1 error.
const EXIT_ERROR: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Map {
            mapping,
            kind,
            account,
            region,
            input,
        } => {
            let text = std::fs::read_to_string(&mapping)
                .with_context(|| format!("reading {}", mapping.display()))?;
            let source = MappingSource {
                name: mapping.display().to_string(),
                text,
            };
            let (mappings, warnings) = match Mappings::load(&[source], &LoadOptions::default()) {
                Ok(loaded) => loaded,
                Err(errors) => {
                    for e in &errors {
                        eprintln!("error: {e}");
                    }
                    return Ok(EXIT_ERROR);
                }
            };
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            let options = MapOptions {
                kind,
                account,
                region,
            };
            let stdout = io::stdout();
            let mut out = io::BufWriter::new(stdout.lock());
            let mut diagnostics = io::stderr();
            match input.as_deref() {
                None | Some("-") => {
                    let stdin = io::stdin();
                    let mut reader = stdin.lock();
                    mapping::run_map(&mappings, &options, &mut reader, &mut out, &mut diagnostics)?;
                }
                Some(path) => {
                    let file =
                        std::fs::File::open(path).with_context(|| format!("reading {path}"))?;
                    let mut reader = BufReader::new(file);
                    mapping::run_map(&mappings, &options, &mut reader, &mut out, &mut diagnostics)?;
                }
            }
            Ok(0)
        }
    }
}
