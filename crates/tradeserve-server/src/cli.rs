//! The `tradeserve` command line: `serve`, `check-config`, `loadtest`, `replay`, `backtest`, `models
//! publish`, `torchserve package`, `tfserving export`, `market publish`, `auth new-key`, `audit
//! verify`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tradeserve_loadgen::{LoadConfig, Report};
use tradeserve_models::mlflow::MlflowClient;
use tradeserve_models::mlflow::publish::publish;

use crate::config::{Config, LogFormat, resolve_path};
use tradeserve_replay as replay;
use tradeserve_replay::{ModelStore, Replayer};

#[derive(Debug, Parser)]
#[command(
    name = "tradeserve",
    version,
    about = "Low-latency trading decisions from an ONNX model ensemble"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (embedded defaults when no config is given).
    Serve {
        /// TOML file of settings (config/tradeserve.example.toml lists every key); the
        /// environment (TRADESERVE_<SECTION>__<KEY>) overrides it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address, e.g. 127.0.0.1:8080 (port 0 picks a free port).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Validate the configuration and the models it names, then exit.
    CheckConfig {
        /// TOML file of settings to check (with the environment applied, as `serve` would).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the OpenAPI 3.1 document of the HTTP API (what `GET /openapi.json` serves),
    /// generated from the request and response types.
    Openapi,
    /// Open-loop load generator with HdrHistogram percentiles.
    Loadtest(LoadtestArgs),
    /// Re-run recorded decisions from their events and report every mismatch.
    Replay(ReplayArgs),
    /// Judge model sets over a bar history with the service's own pipeline (kernel, sizing,
    /// risk checks) on a virtual clock: decisions, orders, hit rate, Sharpe, Sortino, drawdown,
    /// Calmar, turnover and exposure per set, side by side; a table, JSON and an HTML report.
    Backtest(crate::backtest::BacktestArgs),
    /// Work with the MLflow Model Registry.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Market data: publish a bars CSV into the topic the live feed reads.
    #[command(subcommand)]
    Market(MarketCommand),
    /// Serve models from TorchServe.
    #[command(subcommand)]
    Torchserve(TorchserveCommand),
    /// TF Serving: export a model version as a SavedModel under a model base path.
    #[command(subcommand)]
    Tfserving(TfservingCommand),
    /// API keys.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// This replica's risk books: what a start loads, and a baseline when history is missing.
    #[command(subcommand)]
    Risk(crate::risk_cli::RiskCommand),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain, rotated files first: prints where the chain begins,
    /// its head, and every edited, deleted, inserted or moved line (file and line number);
    /// exits 1 when it finds any.
    Verify(crate::risk_cli::AuditLogArgs),
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Make a new API key: prints the key (shown once, stored nowhere) and the `[[auth.keys]]`
    /// entry — its salted hash, roles and quota — for the configuration or the keys file.
    NewKey(NewKeyArgs),
}

/// Arguments of `tradeserve auth new-key`.
#[derive(Debug, Args)]
pub struct NewKeyArgs {
    /// The key's id: the actor of what it does (A-Z, a-z, 0-9, `_`, `-`).
    #[arg(long)]
    pub id: String,
    /// viewer, trader or operator (repeat, or comma-separated).
    #[arg(long = "role", value_delimiter = ',', required = true)]
    pub roles: Vec<tradeserve_auth::ApiRole>,
    /// Requests a minute this key may make (none: no per-key limit).
    #[arg(long)]
    pub rate_per_minute: Option<u32>,
    /// Requests at once above the rate (default ten seconds' worth).
    #[arg(long, requires = "rate_per_minute")]
    pub burst: Option<u32>,
    /// Print `{"id", "key", "hash", "roles", …}` as JSON instead.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum MarketCommand {
    /// Publish a bars CSV (as data/bars.csv) into the market data topic, one JSON bar per
    /// record keyed by symbol, in time order, on a clock `--speed` times real time (0: as fast
    /// as possible). Prints what was published.
    Publish(MarketPublishArgs),
}

/// Arguments of `tradeserve market publish`.
#[derive(Debug, Args)]
pub struct MarketPublishArgs {
    #[arg(long, default_value = "data/bars.csv")]
    pub csv: PathBuf,
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    #[arg(long, default_value = "market.bars.1m")]
    pub topic: String,
    /// Times real time (60: an hour of bars a minute); 0: as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub speed: f64,
    /// A steady number of bars a second instead of --speed (nights and weekends take no time).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Only these symbols (comma-separated; default all).
    #[arg(long, value_delimiter = ',')]
    pub symbols: Vec<String>,
    /// Move every bar so that the last one ends now (decisions on them are then fresh).
    #[arg(long)]
    pub shift_to_now: bool,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
}

#[derive(Debug, Subcommand)]
pub enum TfservingCommand {
    /// Export one model folder (or registry version) as `<base>/<name>/<version>/`: a
    /// SavedModel (signature serving_default: features → probabilities) verified with the
    /// golden vectors through TensorFlow before it is renamed into place.
    Export(ExportArgs),
}

#[derive(Debug, Subcommand)]
pub enum TorchserveCommand {
    /// Package one model folder (MLflow layout) as a TorchServe model archive (.mar) with the
    /// project's handler (ONNX Runtime, golden vectors checked at load). The folder is
    /// verified first: a model that fails its checks is not packaged.
    Package(PackageArgs),
}

/// The model a packaging command works on: a folder, or a registry version.
#[derive(Debug, Args)]
pub struct ModelSourceArgs {
    /// The model folder, e.g. models/bull_specialist/1 (`<role>/<version>` names the role and
    /// version unless given), or a registry version: `models:/<name>@<alias>` or
    /// `models:/<name>/<version>` (downloaded into --cache-dir; `tradeserve.<role>` names the
    /// role unless given).
    #[arg(long)]
    pub model: String,
    /// The role, when the folder's parent (or the registered name) does not name it.
    #[arg(long)]
    pub role: Option<String>,
    /// The version, when the folder is not named after it.
    #[arg(long)]
    pub version: Option<String>,
    /// The model's name on the server (default: the role, matching the `{role}` default).
    #[arg(long)]
    pub name: Option<String>,
    /// MLflow tracking server, for a `models:/` URI.
    #[arg(
        long,
        env = "MLFLOW_TRACKING_URI",
        default_value = "http://127.0.0.1:5000"
    )]
    pub tracking_uri: String,
    /// Environment variable holding a bearer token, if the server needs one.
    #[arg(long, default_value = "MLFLOW_TRACKING_TOKEN")]
    pub token_env: String,
    /// Where a `models:/` version is downloaded (the service's models.mlflow.cache_dir).
    #[arg(long, default_value = "var/model-cache")]
    pub cache_dir: PathBuf,
}

/// Arguments of `tradeserve torchserve package`.
#[derive(Debug, Args)]
pub struct PackageArgs {
    #[command(flatten)]
    pub source: ModelSourceArgs,
    /// Where the .mar goes (TorchServe's model store).
    #[arg(long)]
    pub export_path: PathBuf,
    /// torch-model-archiver to run.
    #[arg(
        long,
        env = "TRADESERVE_TORCH_MODEL_ARCHIVER",
        default_value = "torch-model-archiver"
    )]
    pub archiver: PathBuf,
}

/// Arguments of `tradeserve tfserving export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub source: ModelSourceArgs,
    /// TF Serving's model base path: the version goes to `<base>/<name>/<version>/`.
    #[arg(long)]
    pub base: PathBuf,
    /// A Python with TensorFlow and ONNX (scripts/test.sh installs one:
    /// ~/.cache/tradeserve/tfexport-venv/bin/python).
    #[arg(long, env = "TRADESERVE_TFEXPORT_PYTHON", default_value = "python3")]
    pub python: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Register a model folder (MLflow layout) as a new version, optionally moving an alias.
    Publish {
        /// The model folder, e.g. models/bull_specialist/2
        #[arg(long)]
        dir: PathBuf,
        /// Registered model name, e.g. tradeserve.bull_specialist
        #[arg(long)]
        name: String,
        /// Alias to point at the new version, e.g. champion
        #[arg(long)]
        alias: Option<String>,
        /// MLflow tracking server.
        #[arg(
            long,
            env = "MLFLOW_TRACKING_URI",
            default_value = "http://127.0.0.1:5000"
        )]
        tracking_uri: String,
        /// Environment variable holding a bearer token, if the server needs one.
        #[arg(long, default_value = "MLFLOW_TRACKING_TOKEN")]
        token_env: String,
    },
}

/// Arguments of `tradeserve replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Read events from this audit log (JSON lines).
    #[arg(
        long,
        conflicts_with = "kafka_brokers",
        required_unless_present = "kafka_brokers"
    )]
    pub audit_log: Option<PathBuf>,
    /// Read events from Kafka (bootstrap servers), from the beginning of the topic to its end.
    #[arg(long)]
    pub kafka_brokers: Option<String>,
    #[arg(long, default_value = "trading_decisions")]
    pub topic: String,
    /// Model versions from bundled folders (`<dir>/<role>/<version>/`).
    #[arg(long, default_value = "models", conflicts_with = "mlflow_cache")]
    pub models: PathBuf,
    /// Model versions from a service's MLflow disk cache (`<dir>/tradeserve.<role>/<version>/`).
    #[arg(long)]
    pub mlflow_cache: Option<PathBuf>,
    /// The service's config (for its sizing policy); defaults otherwise.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Re-run the roles the config's `[models.backends]` serves remotely through those
    /// backends (each version verified there first; nothing is registered on TorchServe),
    /// comparing within 1e-5 instead of 1e-12.
    #[arg(long)]
    pub remote: bool,
    /// The engine of in-process models (`auto` or `tract`); the config's `models.engine`
    /// otherwise. Events recorded by a release before the dense-MLP evaluator replay within
    /// 1e-12 only with `tract`.
    #[arg(long)]
    pub engine: Option<tradeserve_models::onnx::EngineChoice>,
}

/// Arguments of `tradeserve loadtest`.
#[derive(Debug, Args)]
pub struct LoadtestArgs {
    /// Base URL of the service, e.g. http://127.0.0.1:8080
    #[arg(long)]
    pub url: String,
    /// Requests per second (constant arrival rate).
    #[arg(long)]
    pub rate: f64,
    /// Requests to send (after warm-up).
    #[arg(long)]
    pub requests: u64,
    /// Requests sent first at the same rate and left out of the results.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Concurrent HTTP/1.1 connections (with --grpc: calls in flight at once).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Decide over gRPC (`tradeserve.v1.Decisions/Predict`); --url is then the gRPC
    /// listener's, e.g. http://127.0.0.1:50051.
    #[arg(long)]
    pub grpc: bool,
    /// With --grpc: HTTP/2 connections the calls are multiplexed over.
    #[arg(long, default_value_t = 1)]
    pub grpc_channels: usize,
    /// Client runtime threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Symbols to cycle through (comma separated).
    #[arg(
        long,
        default_value = "AAPL,MSFT,NVDA,AMZN,GOOGL,META,TSLA,JPM,SPY,QQQ"
    )]
    pub symbols: String,
    /// Extra JSON fields merged into every body, e.g. '{"risk_check": false}'.
    #[arg(long)]
    pub extra: Option<String>,
    /// Give up on a request after this long (counted as a timeout).
    #[arg(long, default_value = "2s", value_parser = humantime_duration)]
    pub timeout: Duration,
    /// Path to load: the decision endpoint (POST), or any other path with GET
    /// (`/health/live` measures the bare HTTP round trip).
    #[arg(long, default_value = "/api/v1/predict")]
    pub path: String,
    /// A header sent with every request, `"Name: value"` (repeatable), e.g.
    /// `--header "Authorization: Bearer $KEY"`.
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// Give each decision its own idempotency key, `client_order_id` = `PREFIX-N`; the report
    /// (in --json-out) lists the decision that answered each request.
    #[arg(long)]
    pub order_ids: Option<String>,
    /// Write the JSON report here, with both latency histograms whole (for `scripts/bench_pool.py`);
    /// stdout gets the report without them.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
}

fn humantime_duration(s: &str) -> Result<Duration, humantime_serde::re::humantime::DurationError> {
    humantime_serde::re::humantime::parse_duration(s)
}

fn runtime(worker_threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all();
    if worker_threads > 0 {
        b.worker_threads(worker_threads);
    }
    Ok(b.build()?)
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config, listen } => serve(config, listen),
        Command::CheckConfig { config } => check_config(config),
        Command::Openapi => {
            std::io::stdout()
                .lock()
                .write_all(crate::openapi::document().as_bytes())?;
            Ok(())
        }
        Command::Models(ModelsCommand::Publish {
            dir,
            name,
            alias,
            tracking_uri,
            token_env,
        }) => {
            let token = std::env::var(&token_env).ok().filter(|t| !t.is_empty());
            let client = MlflowClient::new(&tracking_uri, token, Duration::from_secs(30))?;
            let rt = runtime(1)?;
            let published = rt.block_on(publish(&client, &dir, &name, alias.as_deref()))?;
            let report = serde_json::json!({
                "name": published.name,
                "version": published.version,
                "run_id": published.run_id,
                "alias": published.alias,
                "tracking_uri": tracking_uri,
            });
            print_json(&report)
        }
        Command::Torchserve(TorchserveCommand::Package(args)) => package_mar(&args),
        Command::Tfserving(TfservingCommand::Export(args)) => export_savedmodel(&args),
        Command::Market(MarketCommand::Publish(a)) => {
            let published = crate::market_publish::publish(&crate::market_publish::Publish {
                csv: resolve_path(&a.csv),
                brokers: a.brokers,
                topic: a.topic,
                speed: a.speed,
                rate: a.rate,
                symbols: a.symbols.into_iter().collect(),
                shift_to_now: a.shift_to_now,
                partitions: a.partitions,
            })?;
            print_json(&published)
        }
        Command::Replay(args) => replay_events(&args),
        Command::Backtest(args) => crate::backtest::command(&args),
        Command::Loadtest(args) => loadtest(&args),
        Command::Auth(AuthCommand::NewKey(a)) => new_key(&a),
        Command::Audit(AuditCommand::Verify(a)) => verify_audit(&a),
        Command::Risk(c) => crate::risk_cli::run(&c),
    }
}

fn new_key(a: &NewKeyArgs) -> anyhow::Result<()> {
    let (key, hash) = tradeserve_auth::key::generate(&a.id)?;
    let entry = tradeserve_auth::KeyConfig {
        id: a.id.clone(),
        hash: hash.to_string(),
        roles: a.roles.clone(),
        rate_per_minute: a.rate_per_minute,
        burst: a.burst,
        daily_notional: None,
        orders_per_second: None,
    };
    if a.json {
        let mut v = serde_json::to_value(&entry)?;
        v["key"] = serde_json::Value::String(key);
        return print_json(&v);
    }
    let toml = tradeserve_auth::config::keys_toml(std::slice::from_ref(&entry), "auth.keys")?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "# The API key of {}: give it to its holder; it is stored nowhere and cannot be shown again.\n{key}\n\n# Its entry for the configuration ([auth]), or for auth.keys_file as [[keys]]:\n{toml}",
        a.id
    )?;
    Ok(())
}

/// A model to package: its folder, role, version, name on the server and provenance.
struct Source {
    folder: PathBuf,
    role: tradeserve_core::Role,
    version: String,
    name: String,
    source: String,
}

/// `tradeserve torchserve package`: prints the archive's path, name, version and source.
fn package_mar(args: &PackageArgs) -> anyhow::Result<()> {
    use tradeserve_models::remote::package::{PackageSpec, package};
    let s = model_source(&args.source)?;
    let mar = package(&PackageSpec {
        model_dir: &s.folder,
        role: s.role,
        name: &s.name,
        version: &s.version,
        export_path: &args.export_path,
        archiver: &args.archiver,
    })?;
    print_json(
        &serde_json::json!({"mar": mar, "name": s.name, "version": s.version,
        "role": s.role, "source": s.source}),
    )
}

/// `tradeserve tfserving export`: prints the version's path and its golden check.
fn export_savedmodel(args: &ExportArgs) -> anyhow::Result<()> {
    use tradeserve_models::remote::savedmodel::{ExportSpec, export};
    let s = model_source(&args.source)?;
    let exported = export(&ExportSpec {
        model_dir: &s.folder,
        role: s.role,
        name: &s.name,
        version: &s.version,
        base: &args.base,
        python: &args.python,
    })?;
    print_json(
        &serde_json::json!({"path": exported.path, "name": s.name, "version": s.version,
        "role": s.role, "source": s.source, "max_diff": exported.max_diff, "rows": exported.rows}),
    )
}

/// The folder, role, version and name `args` describe (a registry version is downloaded).
fn model_source(args: &ModelSourceArgs) -> anyhow::Result<Source> {
    let (folder, source, registry) = fetch_source(args)?;
    let named = |p: Option<&std::path::Path>| {
        p.and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
    };
    let version = args
        .version
        .clone()
        .or_else(|| registry.as_ref().map(|r| r.version.clone()))
        .or_else(|| named(Some(&folder)))
        .ok_or_else(|| anyhow::anyhow!("--version is needed: the folder names none"))?;
    let role_name = args
        .role
        .clone()
        .or_else(|| {
            let name = &registry.as_ref()?.name;
            Some(name.strip_prefix("tradeserve.").unwrap_or(name).to_owned())
        })
        .or_else(|| named(folder.parent()))
        .unwrap_or_default();
    let role = tradeserve_core::Role::parse(&role_name).ok_or_else(|| {
        anyhow::anyhow!("{role_name:?} is not a role: give --role (regime_detector, meta_controller, bull_specialist, bear_specialist, sideways_specialist)")
    })?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| role.as_str().to_owned());
    Ok(Source {
        folder,
        role,
        version,
        name,
        source,
    })
}

/// The folder: `--model` itself, or the registry version it names, downloaded.
fn fetch_source(
    args: &ModelSourceArgs,
) -> anyhow::Result<(
    PathBuf,
    String,
    Option<tradeserve_models::mlflow::uri::Fetched>,
)> {
    use tradeserve_models::mlflow::uri::{ModelUri, fetch};
    let Some(uri) = ModelUri::parse(&args.model) else {
        if args.model.starts_with("models:/") {
            anyhow::bail!(
                "{:?}: expected models:/<name>@<alias> or models:/<name>/<version>",
                args.model
            );
        }
        let folder = PathBuf::from(&args.model);
        return Ok((folder.clone(), format!("file://{}", folder.display()), None));
    };
    let token = std::env::var(&args.token_env)
        .ok()
        .filter(|t| !t.is_empty());
    let client = MlflowClient::new(&args.tracking_uri, token, Duration::from_secs(30))?;
    let cache = tradeserve_models::mlflow::ModelCache::new(&args.cache_dir);
    let fetched = runtime(1)?.block_on(fetch(&client, &cache, &uri))?;
    let source = format!("models:/{}/{}", fetched.name, fetched.version);
    Ok((fetched.folder.clone(), source, Some(fetched)))
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// `tradeserve serve`: configuration errors are logged as text, before the configured format
/// is known. A failure is logged here, while the log writer still runs, and returned as
/// [`Reported`].
fn serve(config: Option<PathBuf>, listen: Option<String>) -> anyhow::Result<()> {
    let (config, telemetry) = match Config::load(config.as_deref(), listen.as_deref()) {
        Ok(c) => {
            let json = c.server.log_format == LogFormat::Json;
            let t = crate::telemetry::init(json, &c.telemetry)?;
            (c, t)
        }
        Err(e) => {
            let plain = crate::telemetry::TelemetryConfig::default();
            let _t = crate::telemetry::init(false, &plain)?;
            return Err(reported(e.into()));
        }
    };
    let result = runtime(config.server.worker_threads).and_then(|rt| {
        rt.block_on(crate::serve::run(config, crate::serve::shutdown_signal()))
            .map_err(anyhow::Error::from)
    });
    let out = result.map_err(reported);
    // The runtime is gone: the trace exporter and the log writer flush now.
    drop(telemetry);
    out
}

/// A failure already logged (by [`serve`]): the caller only sets the exit status.
#[derive(Debug, thiserror::Error)]
#[error("the failure was logged")]
pub struct Reported;

fn reported(e: anyhow::Error) -> anyhow::Error {
    tracing::error!(error = %describe(&e), "tradeserve failed");
    anyhow::Error::new(Reported)
}

/// The error and its causes joined by ": " (no error here prints a cause that its `source()`
/// also returns, so each cause appears once).
pub fn describe(e: &anyhow::Error) -> String {
    format!("{e:#}")
}

/// `tradeserve check-config`: what `serve` checks before it binds, then a summary.
fn check_config(config: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref(), None)?;
    crate::serve::check_paths(&config)?;
    let models = crate::serve::load_models(&config)?;
    let bars = resolve_path(&config.features.bars);
    let replay =
        tradeserve_features::MarketReplay::load(&bars, tradeserve_features::ReplayClock::Fixed(0))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "configuration OK")?;
    for m in models.models() {
        let i = &m.info;
        let role = i.role.as_str();
        writeln!(
            out,
            "  {role:<20} {} v{} sha256 {}",
            i.name, i.version, i.sha256
        )?;
    }
    let symbols = replay.symbol_count();
    writeln!(out, "  market data: {} ({symbols} symbols)", bars.display())?;
    writeln!(out, "  listen: {}", config.server.listen)?;
    Ok(())
}

/// `tradeserve audit verify`: fails (exit 1) on any problem.
fn verify_audit(args: &crate::risk_cli::AuditLogArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref(), None)?;
    let path = args
        .audit_log
        .clone()
        .unwrap_or_else(|| resolve_path(&config.events.audit_log));
    let key = config
        .events
        .chain_key()
        .map_err(anyhow::Error::msg)?
        .unwrap_or(tradeserve_events::chain::ChainKey::Sha256);
    let files = tradeserve_events::audit_log::files(&path);
    if files.is_empty() {
        anyhow::bail!("no audit log at {}", path.display());
    }
    let verified = tradeserve_events::chain::verify(&files, &key)?;
    print_json(&verified)?;
    if !verified.ok() {
        anyhow::bail!(
            "{} problem(s) in {} lines of {}",
            verified.problems.len(),
            verified.lines,
            path.display()
        );
    }
    Ok(())
}

/// `tradeserve replay`: fails (exit 1) on any mismatch or skipped event.
fn replay_events(args: &ReplayArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref(), None)?;
    tradeserve_models::onnx::choose_engine(args.engine.unwrap_or(config.models.engine));
    let store = match &args.mlflow_cache {
        Some(dir) => ModelStore::MlflowCache(dir.clone()),
        None => ModelStore::Bundled(resolve_path(&args.models)),
    };
    let mut replayer = Replayer::new(store.clone(), config.sizing.clone());
    if args.remote {
        replayer = replayer.through(remote_backends(&config, &store)?);
    }
    match (&args.audit_log, &args.kafka_brokers) {
        (Some(path), _) => replay::replay_audit_log(path, &mut replayer)?,
        (None, Some(brokers)) => {
            let client = &config.events.kafka.client;
            replay::replay_kafka(brokers, &args.topic, client, &mut replayer)?
        }
        (None, None) => anyhow::bail!("give --audit-log FILE or --kafka-brokers HOSTS"),
    }
    let report = replayer.finish();
    print_json(&report)?;
    if report.mismatched > 0 || report.skipped > 0 {
        anyhow::bail!(
            "{} mismatched and {} skipped of {} events",
            report.mismatched,
            report.skipped,
            report.events
        );
    }
    Ok(())
}

/// The config's remote backends over replay's model store, registering nothing.
fn remote_backends(config: &Config, store: &ModelStore) -> anyhow::Result<replay::Through> {
    let mut models = config.models.clone();
    models.torchserve.model_store = None;
    match store {
        ModelStore::Bundled(dir) => {
            models.source = crate::config::ModelSourceKind::Bundled;
            models.dir = dir.clone();
        }
        ModelStore::MlflowCache(dir) => {
            models.source = crate::config::ModelSourceKind::Mlflow;
            models.mlflow.cache_dir = dir.clone();
        }
    }
    let backends = tradeserve_models::remote::backends::RemoteBackends::new(models.remote_setup())?
        .ok_or_else(|| anyhow::anyhow!("--remote: the config serves every role in process"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(replay::Through { backends, runtime })
}

/// `tradeserve loadtest`: the report on stdout (and in `--json-out`).
fn loadtest(args: &LoadtestArgs) -> anyhow::Result<()> {
    let extra = match &args.extra {
        Some(text) => Some(serde_json::from_str::<
            serde_json::Map<String, serde_json::Value>,
        >(text)?),
        None => None,
    };
    let symbols = args
        .symbols
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let load = LoadConfig {
        url: args.url.clone(),
        rate: args.rate,
        requests: args.requests,
        warmup: args.warmup,
        connections: args.connections,
        symbols,
        extra,
        timeout: args.timeout,
        path: args.path.clone(),
        headers: args
            .headers
            .iter()
            .map(|h| {
                h.split_once(':')
                    .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                    .ok_or_else(|| anyhow::anyhow!("--header {h:?}: expected \"Name: value\""))
            })
            .collect::<anyhow::Result<_>>()?,
        order_ids: args.order_ids.clone(),
        grpc: args.grpc.then_some(tradeserve_loadgen::GrpcLoad {
            channels: args.grpc_channels,
        }),
    };
    let rt = runtime(args.threads)?;
    let report: Report = rt.block_on(tradeserve_loadgen::run(load))?;
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    // The histograms are for pooling runs (the file); a reader of the terminal wants the
    // percentiles.
    let mut summary = serde_json::to_value(&report)?;
    if let Some(fields) = summary.as_object_mut() {
        fields.remove("histograms");
        fields.remove("acknowledged");
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?;
    Ok(())
}
