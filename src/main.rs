//! The `tidemark` binary: flags → command → exit code. All behaviour lives in the library; this
//! file parses flags, prints, and decides exit codes in one place.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use tidemark::adapters::{AnyCatalog, AnySource};

use tidemark::adapters::Catalog;
use tidemark::adapters::snapshot::write_snapshot;
use tidemark::config::{self, Config, ProcessEnv};
use tidemark::core::mapping::{self, LoadOptions, MapOptions, MappingSource, Mappings};
use tidemark::core::model::RawItem;
use tidemark::core::reconcile::{MassDelete, Plan};
use tidemark::core::report::accounts_complete;
use tidemark::core::shard::Shard;
use tidemark::core::writes::Progress;
use tidemark::engine::{
    self, Collected, InWorker, Items, Mapper, Pass, PlanOnly, PlanOptions, Ran, Steps,
};
use tidemark::render::{self, Style};
use tidemark::sandbox::watchdog;
use tidemark::sandbox::worker::{Children, Worker};

/// Mapping allocates many small, short-lived jq values; mimalloc serves them far faster than
/// glibc's malloc (BENCHMARKS.md, mapping).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Human-readable lines, or one JSON object per line (errors and warnings included).
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

/// How `accounts` and `entities` print what they found.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum ListFormat {
    Table,
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
struct ShardArg {
    /// Only the accounts of shard INDEX of COUNT (0/3, 1/3, 2/3); wins over `shard:` in the config.
    #[arg(long, value_name = "INDEX/COUNT", value_parser = parse_shard)]
    shard: Option<Shard>,
}

fn parse_shard(text: &str) -> Result<Shard, String> {
    Shard::parse(text).map_err(|e| e.to_string())
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
        /// A diff for people, the JSON plan for tools, or markdown for a pull-request comment.
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
        /// Also write the plan as JSON to this file, for `apply --plan`.
        #[arg(long, value_name = "PLAN.json")]
        out: Option<PathBuf>,
        /// Exit 2 when there are changes (and nothing partial).
        #[arg(long)]
        detailed_exitcode: bool,
        /// Show the null fields of created entities too (text and markdown).
        #[arg(long)]
        show_nulls: bool,
        #[command(flatten)]
        guards: GuardArgs,
        #[command(flatten)]
        shard: ShardArg,
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
        #[command(flatten)]
        shard: ShardArg,
    },
    /// Parses the config and every mapping, compiles every jq expression, checks the schemas.
    Validate {
        #[command(flatten)]
        config: ConfigArg,
        /// Print the effective config, secrets as ***.
        #[arg(long)]
        print: bool,
        /// Also run, read-only, every read the reconciler makes against the configured catalog
        /// and report each refusal (exit 1 on any).
        #[arg(long)]
        catalog: bool,
    },
    /// Runs a mapping file on raw resources and prints the entities as JSON lines.
    Map {
        /// The mapping file (Ocean's port-app-config.yml format).
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
        /// A table for people, or one JSON document with the discovery status and every account.
        #[arg(long, value_enum, default_value = "table")]
        format: ListFormat,
        #[command(flatten)]
        shard: ShardArg,
    },
    /// Records what the configured source lists, in the snapshot format.
    Snapshot {
        #[command(flatten)]
        config: ConfigArg,
        /// The folder to write: manifest.json and one file per account, region and kind.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[command(flatten)]
        shard: ShardArg,
    },
    /// Daemon: resyncs every resync.interval, hot-reloads config and mappings, serves health and metrics.
    Watch {
        #[command(flatten)]
        config: ConfigArg,
        /// Address for /healthz, /readyz and /metrics (0.0.0.0:9090 in a pod).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9090")]
        listen: std::net::SocketAddr,
        #[command(flatten)]
        shard: ShardArg,
    },
    /// The entities tidemark owns in the configured catalog, one JSON line each.
    Entities {
        #[command(flatten)]
        config: ConfigArg,
        /// Only the entities of this blueprint.
        #[arg(long, value_name = "BP")]
        blueprint: Option<String>,
        /// One JSON line per entity, or a table for people.
        #[arg(long, value_enum, default_value = "json")]
        format: ListFormat,
    },
    /// Prints a shell completion script (bash, zsh, fish, powershell, elvish) to standard output.
    Completions {
        /// The shell to complete for.
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

/// Exit codes from docs/contract.md; precedence 1 > 3 > 2 > 0.
const EXIT_OK: u8 = 0;
const EXIT_ERROR: u8 = 1;
const EXIT_CHANGES: u8 = 2;
const EXIT_PARTIAL: u8 = 3;

fn main() -> ExitCode {
    // A usage error is exit 1, not clap's 2: under `plan --detailed-exitcode`, 2 means "there
    // are changes", and a mistyped flag in CI must not read as that.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_ERROR } else { EXIT_OK });
        }
    };
    if let Command::MapWorker = cli.command {
        // No logging and no runtime: standard output carries answers, standard error the reason
        // the worker stopped.
        let base = LoadOptions {
            env: config::process_vars(),
            observer: process_env().observer,
            ..LoadOptions::default()
        };
        return match tidemark::sandbox::worker::serve(io::stdin().lock(), io::stdout().lock(), base)
        {
            Ok(()) => ExitCode::from(EXIT_OK),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_ERROR)
            }
        };
    }
    // The AWS SDK logs its credential chain's misses as warnings with debug structures; tidemark
    // reports what went wrong itself, in one line, so by default the SDK speaks only of errors
    // (`--log-level debug` or RUST_LOG shows everything).
    if let Some(code) = print_reference(&cli.command) {
        return code;
    }
    let default_level = if matches!(cli.command, Command::Watch { .. }) {
        "info,aws_config=error,aws_runtime=error,aws_smithy_runtime=error"
    } else {
        "warn,aws_config=error,aws_runtime=error,aws_smithy_runtime=error"
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
        // The reader went away (`tidemark plan | head`): nothing left to say to anyone.
        Err(err) if is_broken_pipe(&err) => ExitCode::from(EXIT_OK),
        Err(err) => {
            say_error(format!("{err:#}"));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// One pass for a one-shot command, listing with a spinner. Mappings that define jq functions
/// map in the sandbox's worker child, so that a function calling itself without end is an error
/// naming the item rather than a stack overflow that aborts this process; the rest map here,
/// which is faster.
async fn pass(
    config: &Config,
    source: &AnySource,
    catalog: &AnyCatalog,
    options: PlanOptions,
    steps: &mut dyn Steps,
    await_blueprints: Option<std::time::Duration>,
) -> anyhow::Result<Ran> {
    let progress = BarProgress::listing();
    let mut worker = one_shot_worker(&config.mappings)?;
    let mapper = match worker.as_mut() {
        Some(worker) => Mapper::Sandbox(worker),
        None => Mapper::InProcess,
    };
    let items = Items::Listed {
        source,
        keep_raw: None,
        progress: &progress,
    };
    let pass = Pass {
        config,
        items,
        mapper,
        catalog,
        options,
        await_blueprints,
    };
    Ok(engine::run(pass, steps).await?)
}

/// `apply`'s steps: the plan is printed before anything is written, and written with a
/// progress bar when it has changes.
#[derive(Default)]
struct ApplySteps {
    progress: Option<BarProgress>,
    /// Why the plan could not be printed; nothing is applied then.
    print_error: Option<anyhow::Error>,
}

impl ApplySteps {
    fn printed(self) -> anyhow::Result<()> {
        self.print_error.map_or(Ok(()), Err)
    }
}

/// How long `apply` on a shard other than 0 waits for shard 0 to create the blueprints: the
/// replicas of a StatefulSet start together, and shard 0's bootstrap takes seconds.
const BLUEPRINT_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

impl Steps for ApplySteps {
    fn waiting_for_blueprints(&mut self, shard: &Shard) {
        say_warning(format!(
            "shard {shard}: waiting for shard 0 to create the blueprints"
        ));
    }

    fn planned(&mut self, plan: &Plan) -> Option<&dyn Progress> {
        if let Err(e) = print_plan(plan, PlanFormat::Text, false) {
            self.print_error = Some(e);
            return None;
        }
        if !plan.has_changes() {
            return None;
        }
        Some(self.progress.insert(BarProgress::new()))
    }
}

/// Lists and maps for `snapshot`, keeping the raw items (see [`pass`] for where items map).
async fn collect(config: &Config, source: &AnySource, keep_raw: bool) -> anyhow::Result<Collected> {
    let progress = BarProgress::listing();
    let Some(mut worker) = one_shot_worker(&config.mappings)? else {
        return Ok(engine::collect(config, source, keep_raw, &progress).await?);
    };
    let mut mapper = InWorker::new(&mut worker);
    let keep = keep_raw.then_some(u64::MAX);
    Ok(engine::collect_with(config, source, keep, &progress, &mut mapper).await?)
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

/// The log format chosen for this run, so that the lines `main` prints itself (errors,
/// warnings) follow `--log-format` like every log line.
static LOG_FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

/// One error or warning line on stderr: `error: message` as text, or a log event (one JSON
/// object) under `--log-format json`.
fn say(severity: tidemark::core::yaml::Severity, message: &str) {
    use tidemark::core::yaml::Severity;
    match (LOG_FORMAT.get(), severity) {
        (Some(LogFormat::Json), Severity::Error) => tracing::error!("{message}"),
        (Some(LogFormat::Json), Severity::Warning) => tracing::warn!("{message}"),
        (_, severity) => eprintln!("{severity}: {message}"),
    }
}

fn say_error(message: impl std::fmt::Display) {
    say(tidemark::core::yaml::Severity::Error, &message.to_string());
}

fn say_warning(message: impl std::fmt::Display) {
    say(
        tidemark::core::yaml::Severity::Warning,
        &message.to_string(),
    );
}

/// `map`'s diagnostics (`warning: …` and `error: …` lines) on their way to stderr: written a
/// chunk at a time (at each flush) as text, or as log events under `--log-format json`.
struct Diagnostics {
    line: Vec<u8>,
    /// Complete text lines not yet on stderr.
    text: Vec<u8>,
}

impl Write for Diagnostics {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use tidemark::core::yaml::Severity;
        self.line.extend_from_slice(buf);
        let mut start = 0;
        while let Some(len) = self.line[start..].iter().position(|b| *b == b'\n') {
            let line = String::from_utf8_lossy(&self.line[start..start + len]);
            start += len + 1;
            let (severity, message) =
                match (line.strip_prefix("error: "), line.strip_prefix("warning: ")) {
                    (Some(m), _) => (Severity::Error, m),
                    (_, Some(m)) => (Severity::Warning, m),
                    _ => (Severity::Warning, &*line),
                };
            if matches!(LOG_FORMAT.get(), Some(LogFormat::Json)) {
                say(severity, message);
            } else {
                writeln!(self.text, "{severity}: {message}")?;
            }
        }
        self.line.drain(..start);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().write_all(&self.text)?;
        self.text.clear();
        Ok(())
    }
}

fn init_logging(level: Option<&str>, default: &str, format: LogFormat) {
    let _ = LOG_FORMAT.set(format);
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
            show_nulls,
            guards,
            shard,
        } => {
            let flags = (format, out, detailed_exitcode, show_nulls);
            plan_command(config, flags, guards, shard).await
        }
        Command::Apply {
            config,
            plan,
            guards,
            shard,
        } => apply_command(config, plan, guards, shard).await,
        Command::Validate {
            config,
            print,
            catalog,
        } => validate_command(config, print, catalog).await,
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
        Command::Accounts {
            config,
            format,
            shard,
        } => accounts_command(config, format, shard).await,
        Command::Snapshot { config, out, shard } => snapshot_command(config, out, shard).await,
        // Served by `main` before logging and the runtime start.
        Command::MapWorker | Command::Completions { .. } | Command::Man { .. } => Ok(EXIT_OK),
        Command::Watch {
            config,
            listen,
            shard,
        } => watch_command(config, listen, shard).await,
        Command::Entities {
            config,
            blueprint,
            format,
        } => entities_command(config, blueprint, format).await,
    }
}

/// `accounts`: Lists the discovered accounts and how reaching each went.
async fn accounts_command(
    config: ConfigArg,
    format: ListFormat,
    shard: ShardArg,
) -> anyhow::Result<u8> {
    let Some(config) = load_sharded(&config.config, shard.shard) else {
        return Ok(EXIT_ERROR);
    };
    let source = AnySource::open(&config).await?;
    let (discovery, accounts) = source.accounts().await?;
    if let Some(e) = &discovery.error {
        say_warning(format!("account discovery {:?}: {e}", discovery.status));
    }
    let text = match format {
        ListFormat::Table => render::accounts_table(&accounts, config.shard.as_ref()),
        ListFormat::Json => render::accounts_json(&discovery, &accounts, config.shard.as_ref()),
    };
    io::stdout().lock().write_all(text.as_bytes())?;
    let partial = !accounts_complete(&discovery, &accounts);
    Ok(if partial { EXIT_PARTIAL } else { EXIT_OK })
}

/// `snapshot`: Records the listed items as a snapshot source.
async fn snapshot_command(config: ConfigArg, out: PathBuf, shard: ShardArg) -> anyhow::Result<u8> {
    let Some(config) = load_sharded(&config.config, shard.shard) else {
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
    // A type missing from a region recorded its absence, which is no failure here.
    let failed = report
        .listings
        .iter()
        .filter(|l| l.error.is_some() && !l.unavailable)
        .count();
    // The summary a user waits for, on stderr because stdout is not used.
    let summary = format!(
        "recorded {} items from {} accounts and {} listings ({} failed) in {}",
        raw.len(),
        report.accounts.len(),
        report.listings.len(),
        failed,
        out.display()
    );
    match LOG_FORMAT.get() {
        // Shaped like the log events, which a collector already parses; not a log event
        // itself, so that the default `warn` filter does not hide the result.
        Some(LogFormat::Json) => eprintln!(
            "{}",
            serde_json::json!({
                "timestamp": humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
                "level": "INFO",
                "fields": {"message": summary},
                "target": "tidemark",
            })
        ),
        _ => eprintln!("{summary}"),
    }
    let partial = failed > 0 || !accounts_complete(&report.discovery, &report.accounts);
    Ok(if partial { EXIT_PARTIAL } else { EXIT_OK })
}

/// `watch`: Runs the daemon until a shutdown signal.
async fn watch_command(
    config: ConfigArg,
    listen: std::net::SocketAddr,
    shard: ShardArg,
) -> anyhow::Result<u8> {
    let mut options = tidemark::watch::WatchOptions::new(config.config);
    // Before anything else, so a signal during the config load, the bind or the catalog open is
    // a clean shutdown too.
    let children = options.children.clone();
    let shutdown = tidemark::watch::signals(move || exit_at_once(&children));
    options.env = process_env();
    options.shard = shard.shard;
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

/// `plan`: Lists, maps and plans; prints the plan (and writes it with `--out`).
async fn plan_command(
    config: ConfigArg,
    (format, out, detailed_exitcode, show_nulls): (PlanFormat, Option<PathBuf>, bool, bool),
    guards: GuardArgs,
    shard: ShardArg,
) -> anyhow::Result<u8> {
    let Some(config) = load_sharded(&config.config, shard.shard) else {
        return Ok(EXIT_ERROR);
    };
    let source = AnySource::open(&config).await?;
    let catalog = AnyCatalog::open(&config)?;
    let ran = pass(
        &config,
        &source,
        &catalog,
        guards.options(),
        &mut PlanOnly,
        None,
    )
    .await?;
    let plan = ran.plan;
    print_plan(&plan, format, show_nulls)?;
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

/// `apply`: Applies a fresh pass's plan, or a saved one after checking it is not stale.
async fn apply_command(
    config: ConfigArg,
    plan: Option<PathBuf>,
    guards: GuardArgs,
    shard: ShardArg,
) -> anyhow::Result<u8> {
    let Some(config) = load_sharded(&config.config, shard.shard) else {
        return Ok(EXIT_ERROR);
    };
    let catalog = AnyCatalog::open(&config)?;
    let (plan, report) = match plan {
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
            let mut steps = ApplySteps::default();
            engine::await_blueprints(&config, &catalog, BLUEPRINT_WAIT, &mut steps).await?;
            engine::check_fresh(&config, &catalog, &plan)
                .await
                .with_context(|| format!("refusing to apply the stale plan {}", path.display()))?;
            let progress = steps.planned(&plan);
            let report = match progress {
                Some(progress) if plan.has_changes() => Some(
                    engine::apply(&catalog, &config.integration.identifier, &plan, progress).await,
                ),
                _ => None,
            };
            steps.printed()?;
            (plan, report)
        }
        None => {
            let source = AnySource::open(&config).await?;
            let mut steps = ApplySteps::default();
            let ran = pass(
                &config,
                &source,
                &catalog,
                guards.options(),
                &mut steps,
                Some(BLUEPRINT_WAIT),
            )
            .await?;
            steps.printed()?;
            (ran.plan, ran.applied)
        }
    };
    let Some(report) = report else {
        return Ok(if plan.is_partial() {
            EXIT_PARTIAL
        } else {
            EXIT_OK
        });
    };
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

/// `validate`: Checks the config and mappings (and with `--catalog`, the catalog's answers).
async fn validate_command(config: ConfigArg, print: bool, catalog: bool) -> anyhow::Result<u8> {
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
            say_error(e);
        }
        return Ok(EXIT_ERROR);
    }
    // With --catalog, the preflight reports missing blueprints with the catalog's answer.
    if !catalog && undefined_blueprints(&config).await? {
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
    if catalog {
        return preflight(&config).await;
    }
    Ok(EXIT_OK)
}

/// `entities`: Lists the entities tidemark owns in the catalog.
async fn entities_command(
    config: ConfigArg,
    blueprint: Option<String>,
    format: ListFormat,
) -> anyhow::Result<u8> {
    let Some(config) = load_config(&config.config) else {
        return Ok(EXIT_ERROR);
    };
    let catalog = AnyCatalog::open(&config)?;
    if let Some(wanted) = &blueprint {
        let known: Vec<String> = catalog
            .blueprints()
            .await?
            .iter()
            .map(|b| b.identifier().to_string())
            .collect();
        if !known.contains(wanted) {
            say_error(format!(
                "{}: unknown blueprint {wanted:?}; it has {}",
                catalog.describe(),
                if known.is_empty() {
                    "no blueprints".to_string()
                } else {
                    known.join(", ")
                }
            ));
            return Ok(EXIT_ERROR);
        }
    }
    let accounts = if catalog.attributes_by_account() {
        Vec::new()
    } else {
        let source = AnySource::open(&config).await?;
        source
            .accounts()
            .await?
            .1
            .into_iter()
            .map(|a| a.id)
            .collect()
    };
    let mut owned = catalog
        .owned(&config.integration.identifier, &accounts)
        .await?;
    owned.retain(|o| blueprint.as_deref().is_none_or(|b| o.entity.blueprint == b));
    owned.sort_by_key(|a| a.entity.key());
    let text = match format {
        ListFormat::Json => render::entities_json(&owned),
        ListFormat::Table => render::entities_table(&owned),
    };
    io::stdout().lock().write_all(text.as_bytes())?;
    Ok(EXIT_OK)
}

/// `validate` without `--catalog`: blueprints that constant `blueprint` expressions name and no
/// `blueprints.json` defines must exist in the catalog. The local catalog is read (without
/// creating it) and a missing one is an error at the expression; Port is not contacted, so each
/// is a warning pointing at `validate --catalog`. `true` when one is missing.
async fn undefined_blueprints(config: &Config) -> anyhow::Result<bool> {
    let undefined: Vec<(String, String)> = config
        .mappings
        .constant_blueprints()
        .into_iter()
        .filter(|(name, _)| !config.defines_blueprint(name))
        .collect();
    if undefined.is_empty() {
        return Ok(false);
    }
    let catalog = AnyCatalog::open(config)?;
    if let AnyCatalog::Port(_) = &catalog {
        for (name, at) in &undefined {
            say_warning(format!(
                "{at}: blueprint {name:?} is defined in no blueprints.json, so it must already exist in Port; `tidemark validate --catalog` checks"
            ));
        }
        return Ok(false);
    }
    let present: Vec<String> = catalog
        .blueprints()
        .await?
        .iter()
        .map(|b| b.identifier().to_string())
        .collect();
    let mut missing = false;
    for (name, at) in undefined.iter().filter(|(n, _)| !present.contains(n)) {
        missing = true;
        say_error(format!(
            "{at}: blueprint {name:?} exists neither in a blueprints.json nor in the catalog; define it in the mapping folder's blueprints.json"
        ));
    }
    Ok(missing)
}

/// `validate --catalog`: every read the reconciler makes, against the configured catalog.
async fn preflight(config: &Config) -> anyhow::Result<u8> {
    let catalog = AnyCatalog::open(config)?;
    let blueprints = config.mapped_blueprints();
    let checks = match catalog
        .preflight(&config.integration.identifier, &blueprints)
        .await
    {
        Ok(checks) => checks,
        Err(e) => {
            say_error(format!("{}: {e}", catalog.describe()));
            return Ok(EXIT_ERROR);
        }
    };
    let defined = |bp: &str| config.defines_blueprint(bp);
    print!(
        "{}",
        render::preflight(&catalog.describe(), &checks, &defined)
    );
    let failed = checks.iter().any(|c| c.is_failure(&defined));
    Ok(if failed { EXIT_ERROR } else { EXIT_OK })
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

/// Ends the process when an item's mapping runs past the time limit: jq evaluation cannot be
/// interrupted, and nothing may be written from a partial mapping.
fn end_runaway(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(i32::from(EXIT_ERROR))
}

/// Exits at once (exit 0) on a second shutdown signal. `process::exit` runs no destructors, so
/// the mapping workers' children are ended first: one in the middle of a batch would go on
/// mapping the items in its pipe.
fn exit_at_once(children: &Children) -> ! {
    children.kill_all();
    std::process::exit(i32::from(EXIT_OK))
}

/// The process environment, with mappings evaluated under the time limit.
fn process_env() -> ProcessEnv {
    ProcessEnv {
        observer: Some(watchdog::observer(end_runaway)),
    }
}

/// [`load_config`], then the shard this process runs as: `--shard`, else the config's `shard:`
/// (an `auto` index from the pod name in `HOSTNAME`).
fn load_sharded(path: &Path, flag: Option<Shard>) -> Option<Config> {
    let mut config = load_config(path)?;
    match config.resolve_shard(flag, &ProcessEnv::default()) {
        Ok(()) => Some(config),
        Err(e) => {
            say_error(format!("{}: {e}", path.display()));
            None
        }
    }
}

/// Loads the config, printing every error and warning; `None` means exit 1.
fn load_config(path: &Path) -> Option<Config> {
    match config::load(path, &process_env()) {
        Ok((config, warnings)) => {
            for w in &warnings {
                say_warning(w);
            }
            Some(config)
        }
        Err(diagnostics) => {
            for d in &diagnostics {
                say(d.severity, &d.to_string());
            }
            None
        }
    }
}

fn print_plan(plan: &Plan, format: PlanFormat, show_nulls: bool) -> anyhow::Result<()> {
    let style = Style {
        color: io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        show_nulls,
    };
    let text = match format {
        PlanFormat::Text => render::text(plan, style),
        PlanFormat::Json => render::json(plan),
        PlanFormat::Markdown => render::markdown(plan, show_nulls),
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
    let load = LoadOptions {
        env: config::process_vars(),
        hidden_env,
        observer: process_env().observer,
    };
    let (mappings, warnings) = match Mappings::load(&[source], &load) {
        Ok(loaded) => loaded,
        Err(diagnostics) => {
            for d in &diagnostics {
                say(d.severity, &d.to_string());
            }
            return Ok(EXIT_ERROR);
        }
    };
    for w in &warnings {
        say_warning(w);
    }
    let mut out = io::BufWriter::with_capacity(1 << 16, io::stdout());
    let mut diagnostics = Diagnostics {
        line: Vec::new(),
        text: Vec::new(),
    };
    let text = match input {
        None | Some("-") => io::read_to_string(io::stdin()).context("reading input")?,
        Some(file) => std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?,
    };
    let mut worker = one_shot_worker(&mappings)?;
    let mut mapper = match worker.as_mut() {
        Some(worker) => Mapper::Sandbox(worker),
        None => Mapper::InProcess,
    };
    let mut map_items = |items: &[RawItem]| engine::map_items(&mappings, &mut mapper, items);
    let summary = mapping::run_map(
        &mut map_items,
        &|kind| mappings.maps_kind(kind),
        &tidemark::parallel::EveryCore,
        &options,
        &text,
        &mut out,
        &mut diagnostics,
    )?;
    out.flush()?;
    Ok(if summary.mapping_errors > 0 {
        EXIT_PARTIAL
    } else {
        EXIT_OK
    })
}

/// A progress bar on a terminal; nothing otherwise.
struct BarProgress {
    bar: Option<indicatif::ProgressBar>,
    /// For a listing spinner: switches it to counting resources at the first one.
    counting: Option<std::sync::Once>,
}

impl BarProgress {
    /// A spinner counting listed resources; it clears itself when dropped.
    /// A spinner that says it is reaching the accounts until the first resource arrives, then
    /// counts resources (a count of 0 during account discovery and role assumption read as if
    /// nothing was found).
    fn listing() -> BarProgress {
        let bar = io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} discovering accounts and assuming roles…",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        BarProgress {
            bar,
            counting: Some(std::sync::Once::new()),
        }
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
        BarProgress {
            bar,
            counting: None,
        }
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
            if let Some(first) = &self.counting {
                first.call_once(|| {
                    if let Ok(style) = indicatif::ProgressStyle::with_template(
                        "{spinner} listing: {pos} resources ({per_sec})",
                    ) {
                        b.set_style(style);
                    }
                });
            }
            b.inc(n);
        }
    }
    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn every_flag_of_every_command_says_what_it_does() {
        let cli = Cli::command();
        for command in cli.get_subcommands().filter(|c| !c.is_hide_set()) {
            assert!(
                command.get_about().is_some(),
                "{} has no help",
                command.get_name()
            );
            for arg in command.get_arguments() {
                let name = arg.get_id().as_str();
                if matches!(name, "help" | "version") {
                    continue;
                }
                assert!(
                    arg.get_help().is_some(),
                    "{} --{name} has no help text",
                    command.get_name()
                );
            }
        }
    }
}
