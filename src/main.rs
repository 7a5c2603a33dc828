//! The `tidemark` binary: flags → command → exit code. All behaviour lives in the library; this
//! file parses flags, prints, and decides exit codes in one place.

use std::io::{self, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use tidemark::app::{AnyCatalog, AnySource, InWorker};
use tidemark::catalog::{Catalog, Progress};
use tidemark::config::{self, Config, ProcessEnv};
use tidemark::mapping::worker::Worker;
use tidemark::mapping::{self, LoadOptions, MapOptions, MappingSource, Mappings};
use tidemark::model::RawItem;
use tidemark::reconcile::{self, Collected, MassDelete, Plan, PlanOptions};
use tidemark::render::{self, Style};
use tidemark::source::snapshot::write_snapshot;

#[derive(Parser, Debug)]
#[command(
    name = "tidemark",
    version,
    about = "Keeps a software catalog in step with the resources of many AWS accounts",
    after_help = "Exit codes: 0 success; 2 changes (plan --detailed-exitcode); 3 partial (incomplete scope, withheld change, rejected write); 1 error."
)]
struct Cli {
    /// error | warn | info | debug | trace (default: RUST_LOG, else warn; info for watch)
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum PlanFormat {
    Text,
    Json,
    Markdown,
}

#[derive(clap::Args, Debug)]
struct ConfigArg {
    /// The config file.
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        default_value = "tidemark.yaml"
    )]
    config: PathBuf,
}

#[derive(clap::Args, Debug)]
struct GuardArgs {
    /// Lift the deletion guards for every account, or for the listed ones (=ID,ID).
    #[arg(long, value_name = "ACCOUNT,…", num_args = 0..=1, require_equals = true, default_missing_value = "")]
    allow_mass_delete: Option<String>,
    /// Take over entities that another owner wrote at keys tidemark wants.
    #[arg(long)]
    adopt: bool,
}

impl GuardArgs {
    fn options(&self) -> PlanOptions {
        PlanOptions {
            allow_mass_delete: match &self.allow_mass_delete {
                None => MassDelete::None,
                Some(v) => MassDelete::from_flag(Some(v.as_str()).filter(|s| !s.is_empty())),
            },
            adopt: self.adopt,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Lists sources, maps and diffs; writes nothing to the catalog.
    Plan {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
        /// Also write the plan as JSON to this file, for `apply --plan`.
        #[arg(long, value_name = "PLAN.json")]
        out: Option<PathBuf>,
        /// Exit 2 when there are changes (and nothing partial).
        #[arg(long)]
        detailed_exitcode: bool,
        #[command(flatten)]
        guards: GuardArgs,
    },
    /// Plans, then applies only the changes (or exactly a saved plan).
    Apply {
        #[command(flatten)]
        config: ConfigArg,
        /// Apply exactly this plan file; refused if the catalog changed since.
        #[arg(long, value_name = "PLAN.json")]
        plan: Option<PathBuf>,
        #[command(flatten)]
        guards: GuardArgs,
    },
    /// Parses the config and every mapping, compiles every jq expression, checks the schemas.
    Validate {
        #[command(flatten)]
        config: ConfigArg,
        /// Print the effective config, secrets as ***.
        #[arg(long)]
        print: bool,
    },
    /// Runs a mapping file on raw resources and prints the entities as JSON lines.
    Map {
        #[arg(long, value_name = "FILE")]
        mapping: PathBuf,
        /// Treat every item as this kind (default: each item's Type or __Kind).
        #[arg(long)]
        kind: Option<String>,
        /// Fills __AccountId when an item has none.
        #[arg(long)]
        account: Option<String>,
        /// Fills __Region when an item has none.
        #[arg(long)]
        region: Option<String>,
        /// A JSON object, array or JSON lines file; - or absent for standard input.
        #[arg(long, value_name = "FILE")]
        input: Option<String>,
    },
    /// Discovered accounts, their roles, whether each could be assumed, and their regions.
    Accounts {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Records what the configured source lists, in the snapshot format.
    Snapshot {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Daemon: resyncs every resync.interval, hot-reloads config and mappings, serves health and metrics.
    Watch {
        #[command(flatten)]
        config: ConfigArg,
        /// Address for /healthz, /readyz and /metrics (0.0.0.0:9090 in a pod).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9090")]
        listen: std::net::SocketAddr,
    },
    /// The entities tidemark owns in the configured catalog, one JSON line each.
    Entities {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, value_name = "BP")]
        blueprint: Option<String>,
    },
    /// Prints a shell completion script (bash, zsh, fish, powershell, elvish) to standard output.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Prints the man page (roff): `tidemark man > tidemark.1`; or writes every page to a folder.
    Man {
        /// Write tidemark.1 and a tidemark-<subcommand>.1 per subcommand here instead.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// `watch`'s mapping process: mapping files, then items, as JSON lines on standard input.
    #[command(name = "__map-worker", hide = true)]
    MapWorker,
}

/// Exit codes from SPEC; precedence 1 > 3 > 2 > 0.
const EXIT_OK: u8 = 0;
const EXIT_ERROR: u8 = 1;
const EXIT_CHANGES: u8 = 2;
const EXIT_PARTIAL: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::MapWorker = cli.command {
        // No logging and no runtime: standard output carries answers, standard error the reason
        // the worker stopped.
        return match tidemark::mapping::worker::serve(io::stdin().lock(), io::stdout().lock()) {
            Ok(()) => ExitCode::from(EXIT_OK),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_ERROR)
            }
        };
    }
    if let Some(code) = print_reference(&cli.command) {
        return code;
    }
    let default_level = if matches!(cli.command, Command::Watch { .. }) {
        "info"
    } else {
        "warn"
    };
    init_logging(cli.log_level.as_deref(), default_level, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Lists and maps for a one-shot command. Mappings that define jq functions map in a worker
/// child, so that a function calling itself without end is an error naming the item rather than
/// a stack overflow that aborts this process; the rest map here, which is faster.
async fn collect(config: &Config, source: &AnySource, keep_raw: bool) -> anyhow::Result<Collected> {
    let progress = BarProgress::listing();
    let Some(mut worker) = one_shot_worker(&config.mappings)? else {
        return Ok(reconcile::collect(config, source, keep_raw, &progress).await?);
    };
    let mut mapper = InWorker::new(&mut worker);
    let keep = keep_raw.then_some(u64::MAX);
    Ok(reconcile::collect_with(config, source, keep, &progress, &mut mapper).await?)
}

/// The mapping worker a one-shot command uses: only for mappings that define jq functions.
fn one_shot_worker(mappings: &Mappings) -> io::Result<Option<Worker>> {
    if !mappings.defines_functions() {
        return Ok(None);
    }
    Ok(Some(Worker::new(worker_executable()?, mappings)))
}

/// This executable, for the mapping worker. On Linux `/proc/self/exe` still runs this
/// very binary after a package upgrade replaced or removed the file it was started from.
fn worker_executable() -> io::Result<std::path::PathBuf> {
    let proc_self = std::path::Path::new("/proc/self/exe");
    if proc_self.exists() {
        return Ok(proc_self.to_path_buf());
    }
    std::env::current_exe()
}

fn init_logging(level: Option<&str>, default: &str, format: LogFormat) {
    let filter = match level {
        Some(l) => tracing_subscriber::EnvFilter::new(l),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Plan {
            config,
            format,
            out,
            detailed_exitcode,
            guards,
        } => {
            let Some(config) = load_config(&config.config) else {
                return Ok(EXIT_ERROR);
            };
            let source = AnySource::open(&config).await?;
            let catalog = AnyCatalog::open(&config)?;
            let collected = collect(&config, &source, false).await?;
            let plan = reconcile::plan(&config, &collected, &catalog, &guards.options()).await?;
            print_plan(&plan, format)?;
            if let Some(path) = out {
                std::fs::write(&path, render::json(&plan))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(if plan.is_partial() {
                EXIT_PARTIAL
            } else if detailed_exitcode && plan.has_changes() {
                EXIT_CHANGES
            } else {
                EXIT_OK
            })
        }
        Command::Apply {
            config,
            plan,
            guards,
        } => {
            let Some(config) = load_config(&config.config) else {
                return Ok(EXIT_ERROR);
            };
            let catalog = AnyCatalog::open(&config)?;
            let plan = match plan {
                Some(path) => {
                    if guards.allow_mass_delete.is_some() || guards.adopt {
                        return Err(anyhow!(
                            "--allow-mass-delete and --adopt were decided when the plan was made (see its basis); do not give them with --plan"
                        ));
                    }
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let plan: Plan = serde_json::from_str(&text)
                        .with_context(|| format!("{} is not a tidemark plan", path.display()))?;
                    reconcile::check_fresh(&config, &catalog, &plan)
                        .await
                        .with_context(|| {
                            format!("refusing to apply the stale plan {}", path.display())
                        })?;
                    plan
                }
                None => {
                    let source = AnySource::open(&config).await?;
                    let collected = collect(&config, &source, false).await?;
                    reconcile::plan(&config, &collected, &catalog, &guards.options()).await?
                }
            };
            print_plan(&plan, PlanFormat::Text)?;
            if !plan.has_changes() {
                return Ok(if plan.is_partial() {
                    EXIT_PARTIAL
                } else {
                    EXIT_OK
                });
            }
            let progress = BarProgress::new();
            let report =
                reconcile::apply(&catalog, &config.integration.identifier, &plan, &progress).await;
            progress.finish();
            print!("{}", render::apply_report(&report));
            io::stdout().flush()?;
            Ok(if report.stopped.is_some() {
                EXIT_ERROR
            } else if plan.is_partial() || !report.rejected.is_empty() {
                EXIT_PARTIAL
            } else {
                EXIT_OK
            })
        }
        Command::Validate { config, print } => {
            let Some(config) = load_config(&config.config) else {
                return Ok(EXIT_ERROR);
            };
            let mut errors = config::schema::check(
                config::schema::Schema::Config,
                &config.path.display().to_string(),
                &std::fs::read_to_string(&config.path)?,
            );
            for m in &config.mapping_files {
                errors.extend(config::schema::check(
                    config::schema::Schema::Mapping,
                    &m.name,
                    &m.text,
                ));
            }
            if !errors.is_empty() {
                for e in &errors {
                    eprintln!("error: {e}");
                }
                return Ok(EXIT_ERROR);
            }
            if print {
                print!(
                    "{}",
                    config::print::to_yaml(&config::print::effective(&config))
                );
            } else {
                println!(
                    "{}: valid ({} mapping files, {} kinds, {} blueprints)",
                    config.path.display(),
                    config.mapping_files.len(),
                    config.mappings.kinds().len(),
                    config.blueprints.len()
                );
            }
            Ok(EXIT_OK)
        }
        Command::Map {
            mapping,
            kind,
            account,
            region,
            input,
        } => run_map(
            &mapping,
            MapOptions {
                kind,
                account,
                region,
            },
            input.as_deref(),
        ),
        Command::Accounts { config } => {
            let Some(config) = load_config(&config.config) else {
                return Ok(EXIT_ERROR);
            };
            let source = AnySource::open(&config).await?;
            let (discovery, accounts) = source.accounts().await?;
            let mut partial = !discovery.is_complete();
            if let Some(e) = &discovery.error {
                eprintln!("warning: account discovery {:?}: {e}", discovery.status);
            }
            let mut out = io::stdout().lock();
            writeln!(
                out,
                "{:<14} {:<24} {:<9} {:<50} REGIONS",
                "ACCOUNT", "NAME", "ASSUMED", "ROLE"
            )?;
            for a in &accounts {
                let regions = if let Some(e) = &a.regions_error {
                    format!("(failed: {e})")
                } else {
                    a.regions.join(",")
                };
                writeln!(
                    out,
                    "{:<14} {:<24} {:<9} {:<50} {}",
                    a.id,
                    a.name.as_deref().unwrap_or("-"),
                    if a.assumed { "yes" } else { "NO" },
                    a.role_arn.as_deref().unwrap_or("-"),
                    regions
                )?;
                if let Some(e) = &a.error {
                    writeln!(out, "    {e}")?;
                }
                partial |= !a.assumed || a.regions_error.is_some();
            }
            Ok(if partial { EXIT_PARTIAL } else { EXIT_OK })
        }
        Command::Snapshot { config, out } => {
            let Some(config) = load_config(&config.config) else {
                return Ok(EXIT_ERROR);
            };
            let source = AnySource::open(&config).await?;
            let collected = collect(&config, &source, true).await?;
            let report = collected
                .report
                .clone()
                .ok_or_else(|| anyhow!("the source reported nothing"))?;
            let raw = collected.raw.unwrap_or_default();
            let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
            write_snapshot(&out, &report, &raw, &now)
                .with_context(|| format!("writing the snapshot to {}", out.display()))?;
            let failed = report.listings.iter().filter(|l| l.error.is_some()).count();
            eprintln!(
                "recorded {} items from {} accounts and {} listings ({} failed) in {}",
                raw.len(),
                report.accounts.len(),
                report.listings.len(),
                failed,
                out.display()
            );
            let partial = failed > 0
                || !report.discovery.is_complete()
                || report
                    .accounts
                    .iter()
                    .any(|a| !a.assumed || a.regions_error.is_some());
            Ok(if partial { EXIT_PARTIAL } else { EXIT_OK })
        }
        // Served by `main` before logging and the runtime start.
        Command::MapWorker | Command::Completions { .. } | Command::Man { .. } => Ok(EXIT_OK),
        Command::Watch { config, listen } => {
            // First, so a signal during the config load, the bind or the catalog open is a clean
            // shutdown too.
            let shutdown = tidemark::watch::signals();
            let mut options = tidemark::watch::WatchOptions::new(config.config);
            // Map in a child of this same executable, so a runaway expression cannot stop the
            // daemon; without a path to it, map here.
            match worker_executable() {
                Ok(exe) => options.map_worker = Some(exe),
                Err(e) => tracing::warn!(
                    "cannot find this executable ({e}); mapping in the daemon itself, where an \
                     expression that never ends stops it"
                ),
            }
            tidemark::watch::run(options, listen, shutdown).await?;
            Ok(EXIT_OK)
        }
        Command::Entities { config, blueprint } => {
            let Some(config) = load_config(&config.config) else {
                return Ok(EXIT_ERROR);
            };
            let catalog = AnyCatalog::open(&config)?;
            // The local catalog records each entity's account; Port attributes ownership per
            // discovered account, so it needs the account list.
            let accounts = match &catalog {
                AnyCatalog::Local(_) => Vec::new(),
                AnyCatalog::Port(_) => {
                    let source = AnySource::open(&config).await?;
                    source
                        .accounts()
                        .await?
                        .1
                        .into_iter()
                        .map(|a| a.id)
                        .collect()
                }
            };
            let mut owned = catalog
                .owned(&config.integration.identifier, &accounts)
                .await?;
            owned.sort_by_key(|a| a.entity.key());
            let mut out = io::BufWriter::new(io::stdout().lock());
            for o in owned
                .iter()
                .filter(|o| blueprint.as_deref().is_none_or(|b| o.entity.blueprint == b))
            {
                let line = serde_json::json!({
                    "blueprint": o.entity.blueprint,
                    "identifier": o.entity.identifier,
                    "account": o.account,
                    "kind": o.kind,
                    "entity": o.entity,
                });
                writeln!(out, "{line}")?;
            }
            out.flush()?;
            Ok(EXIT_OK)
        }
    }
}

/// `completions` and `man`: generated from the same clap definitions as `--help`, so they cannot
/// drift from the flags. `None` for every other command.
fn print_reference(command: &Command) -> Option<ExitCode> {
    let mut out = Vec::new();
    match command {
        Command::Completions { shell } => {
            // The generators list hidden subcommands too: complete only what users type.
            let full = Cli::command();
            let mut public = clap::Command::new("tidemark")
                .version(env!("CARGO_PKG_VERSION"))
                .args(full.get_arguments().cloned())
                .subcommands(full.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
            clap_complete::generate(*shell, &mut public, "tidemark", &mut out)
        }
        Command::Man { out_dir } => {
            let cmd = Cli::command().disable_help_subcommand(true);
            let written = match out_dir {
                Some(dir) => clap_mangen::generate_to(cmd, dir),
                None => clap_mangen::Man::new(cmd).render(&mut out),
            };
            if let Err(e) = written {
                eprintln!("error: cannot write the man pages: {e}");
                return Some(ExitCode::from(EXIT_ERROR));
            }
        }
        _ => return None,
    }
    let mut stdout = io::stdout().lock();
    Some(match stdout.write_all(&out).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            eprintln!("error: writing to standard output: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    })
}

/// Loads the config, printing every error and warning; `None` means exit 1.
fn load_config(path: &Path) -> Option<Config> {
    match config::load(path, &ProcessEnv) {
        Ok((config, warnings)) => {
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            Some(config)
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            None
        }
    }
}

fn print_plan(plan: &Plan, format: PlanFormat) -> anyhow::Result<()> {
    let style = Style {
        color: io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let text = match format {
        PlanFormat::Text => render::text(plan, style),
        PlanFormat::Json => render::json(plan),
        PlanFormat::Markdown => render::markdown(plan),
    };
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

fn run_map(path: &Path, options: MapOptions, input: Option<&str>) -> anyhow::Result<u8> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let source = MappingSource {
        name: path.display().to_string(),
        text,
    };
    let hidden_env = config::SECRET_ENV_VARS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let (mappings, warnings) = match Mappings::load(&[source], &LoadOptions { hidden_env }) {
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
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut diagnostics = io::stderr();
    let mut reader: Box<dyn io::BufRead> = match input {
        None | Some("-") => Box::new(io::stdin().lock()),
        Some(file) => {
            let f = std::fs::File::open(file).with_context(|| format!("reading {file}"))?;
            Box::new(BufReader::with_capacity(1 << 16, f))
        }
    };
    let mut worker = one_shot_worker(&mappings)?;
    let mut map_items = |items: &[RawItem]| match worker.as_mut() {
        Some(worker) => worker.map_items(items).map_err(|e| e.to_string()),
        None => Ok(items.iter().map(|item| mappings.map_item(item)).collect()),
    };
    mapping::run_map(
        &mut map_items,
        &options,
        &mut reader,
        &mut out,
        &mut diagnostics,
    )?;
    out.flush()?;
    Ok(EXIT_OK)
}

/// A progress bar on a terminal; nothing otherwise.
struct BarProgress {
    bar: Option<indicatif::ProgressBar>,
}

impl BarProgress {
    /// A spinner counting listed resources; it clears itself when dropped.
    fn listing() -> BarProgress {
        let bar = io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} listing: {pos} resources ({per_sec})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        BarProgress { bar }
    }

    fn new() -> BarProgress {
        let bar = io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} applying [{bar:40}] {pos}/{len} writes ({eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        BarProgress { bar }
    }
}

impl Drop for BarProgress {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Progress for BarProgress {
    fn start(&self, total: u64) {
        if let Some(b) = &self.bar {
            b.set_length(total);
        }
    }
    fn advance(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }
    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
