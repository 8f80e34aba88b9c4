//! `tradeserve backtest`: model sets judged over a bar history by the service's own pipeline
//! (the `tradeserve_backtest` crate) with the configuration's sizing and risk limits — the
//! table on stdout, the JSON and the HTML report where asked. [`sets`] names and loads the
//! sets.

pub mod sets;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tradeserve_backtest::comparison::{Annualization, Comparison, Plan, compare};
use tradeserve_backtest::engine::{Run, Settings};
use tradeserve_backtest::history::{last_days_from, until};
use tradeserve_features::{SymbolBars, load_bars_csv};

use crate::config::{Config, require_path};

/// One-minute bars: 252 trading days of 390 minutes.
const MINUTE_BARS_A_YEAR: f64 = 252.0 * 390.0;

/// Arguments of `tradeserve backtest`.
#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// The service's configuration: its sizing, risk limits, models and bars.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A model set, `NAME=SPEC` or `SPEC` (repeat to compare): `champion` (what the config
    /// serves), a version for every role (`2`), a registry alias for every role
    /// (`@challenger`), or the champion with roles replaced
    /// (`bull_specialist:2,bear_specialist:models:/desk.bear@candidate`). Default: champion.
    #[arg(long = "set")]
    pub sets: Vec<String>,
    /// A bars CSV (symbol,ts,open,high,low,close,volume); default the config's features.bars.
    #[arg(long, conflicts_with = "kafka_brokers")]
    pub bars: Option<PathBuf>,
    /// Read the bars from the market data topic instead (bootstrap servers), from its
    /// beginning to its current end; with `--to`, bars after it are left out.
    #[arg(long)]
    pub kafka_brokers: Option<String>,
    /// The market data topic (with `--kafka-brokers`).
    #[arg(long, default_value = "market.bars.1m")]
    pub topic: String,
    /// Only these symbols (comma-separated; default all).
    #[arg(long, value_delimiter = ',')]
    pub symbols: Vec<String>,
    /// Decide only the last N trading days (UTC dates with bars); the bars before stay as the
    /// features' look-back.
    #[arg(long, conflicts_with = "from")]
    pub days: Option<usize>,
    /// Decide bars closing at or after this time (RFC 3339).
    #[arg(long, value_parser = rfc3339)]
    pub from: Option<OffsetDateTime>,
    /// Leave out bars closing after this time (RFC 3339).
    #[arg(long, value_parser = rfc3339)]
    pub to: Option<OffsetDateTime>,
    /// The book's starting cash; default the most the risk limits let it hold,
    /// `risk.max_position_notional` × the symbols (gross exposure then stays near or below 1).
    #[arg(long)]
    pub capital: Option<f64>,
    /// Periods a year for the annual figures (Sharpe, Sortino, annual return, Calmar); the
    /// default is one-minute bars: 252 days × 390.
    #[arg(long, default_value_t = MINUTE_BARS_A_YEAR)]
    pub periods_per_year: f64,
    /// Write the JSON here (`-`: stdout, instead of the table).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the HTML report (equity and drawdown curves, tables) here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Write every decision here, one JSON object a line: `set`, `symbol`, `time` (Unix
    /// seconds of the bar's close), `action`, `confidence`, `quantity`, `approved` (passed the
    /// risk checks), `regime` (bull, bear, sideways probabilities).
    #[arg(long)]
    pub decisions: Option<PathBuf>,
    /// Progress on stderr: shown when stderr is a terminal unless `--quiet`.
    #[arg(long)]
    pub quiet: bool,
}

/// A time on the command line that is not RFC 3339.
#[derive(Debug, thiserror::Error)]
#[error("{0:?}: expected RFC 3339, e.g. 2025-10-14T13:30:00Z")]
pub struct NotRfc3339(String);

fn rfc3339(s: &str) -> Result<OffsetDateTime, NotRfc3339> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|_| NotRfc3339(s.to_owned()))
}

/// The history `args` ask for.
fn history(
    config: &Config,
    args: &BacktestArgs,
) -> anyhow::Result<(BTreeMap<String, SymbolBars>, Option<i64>)> {
    let (mut bars, path) = match (&args.kafka_brokers, &args.bars) {
        (Some(brokers), _) => (topic_bars(config, args, brokers)?, args.topic.clone()),
        (None, Some(p)) if p.exists() => (load_bars_csv(p)?, p.display().to_string()),
        (None, Some(p)) => anyhow::bail!("--bars {}: no such file", p.display()),
        (None, None) => {
            let p = require_path("features.bars", &config.features.bars, "the bars CSV")?;
            (load_bars_csv(&p)?, p.display().to_string())
        }
    };
    if !args.symbols.is_empty() {
        if let Some(missing) = args.symbols.iter().find(|s| !bars.contains_key(*s)) {
            anyhow::bail!("--symbols: {missing} has no bars in {path}");
        }
        bars.retain(|s, _| args.symbols.contains(s));
    }
    if let Some(to) = args.to {
        bars = until(bars, to.unix_timestamp());
    }
    let from =
        match (args.days, args.from) {
            (Some(days), _) => Some(last_days_from(&bars, days).ok_or_else(|| {
                anyhow::anyhow!("--days {days}: the history has fewer trading days")
            })?),
            (None, from) => from.map(OffsetDateTime::unix_timestamp),
        };
    Ok((bars, from))
}

/// The bars of the market data topic at `brokers` (the config's `[features.live.kafka]`
/// client settings apply), up to `--to`.
fn topic_bars(
    config: &Config,
    args: &BacktestArgs,
    brokers: &str,
) -> anyhow::Result<BTreeMap<String, SymbolBars>> {
    let feed = tradeserve_features::live::kafka::KafkaFeedConfig {
        brokers: brokers.to_owned(),
        topic: args.topic.clone(),
        ..config.features.live.kafka.clone()
    };
    let to = args.to.map(OffsetDateTime::unix_timestamp);
    let read = tradeserve_features::live::history::read(&feed, to, Duration::from_secs(300))?;
    if !args.quiet && std::io::stderr().is_terminal() {
        eprintln!(
            "{}: {} records, {} bars kept, {} refused, {} replaced by a later record",
            args.topic, read.records, read.kept, read.rejected, read.replaced
        );
    }
    Ok(read.bars)
}

/// Progress of each set's run on stderr, a line rewritten in place.
fn progress(shown: bool) -> impl FnMut(&str, usize, usize) {
    let started = Instant::now();
    move |set: &str, done: usize, total: usize| {
        if !shown {
            return;
        }
        let pct = done as f64 * 100.0 / total.max(1) as f64;
        let end = if done == total { "\n" } else { "" };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{set}: {done}/{total} bars decided ({pct:.0}%, {:.1} s){end}",
            started.elapsed().as_secs_f64()
        );
    }
}

/// Run `args`: the comparison and each set's run.
pub fn run(args: &BacktestArgs) -> anyhow::Result<(Comparison, Vec<Run>)> {
    let config = Config::load(args.config.as_deref(), None)?;
    if !(args.periods_per_year.is_finite() && args.periods_per_year > 0.0) {
        anyhow::bail!("--periods-per-year must be a positive number");
    }
    tradeserve_models::onnx::choose_engine(config.models.engine);
    let specs = if args.sets.is_empty() {
        vec![sets::parse(&config, "champion")?]
    } else {
        args.sets
            .iter()
            .map(|s| sets::parse(&config, s))
            .collect::<Result<_, _>>()?
    };
    let mut loader = sets::Loader::new(&config);
    let loaded = specs
        .iter()
        .map(|s| Ok((s.name.clone(), Arc::new(loader.load(s)?))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (bars, from) = history(&config, args)?;
    let annualization = Annualization {
        periods_per_year: args.periods_per_year,
        period: if args.periods_per_year == MINUTE_BARS_A_YEAR {
            "one-minute bar: 252 trading days × 390".into()
        } else {
            "one bar (--periods-per-year)".into()
        },
    };
    let capital = args
        .capital
        .unwrap_or(config.risk.max_position_notional * bars.len() as f64);
    if !(capital.is_finite() && capital > 0.0) {
        anyhow::bail!("--capital must be a positive number");
    }
    let settings = Settings { capital, from };
    let shown = !args.quiet && std::io::stderr().is_terminal();
    let plan = Plan {
        config: crate::serve::pipeline_config(&config),
        settings,
        annualization,
    };
    Ok(compare(&bars, &loaded, plan, &mut progress(shown))?)
}

/// Create `path`'s folder if missing (`var/backtest.html` in a fresh checkout), saying which
/// path could not be written.
fn writable(path: &std::path::Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Every decision of `runs` as JSON lines.
fn write_decisions(path: &std::path::Path, c: &Comparison, runs: &[Run]) -> anyhow::Result<()> {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        set: &'a str,
        #[serde(flatten)]
        decided: &'a tradeserve_backtest::engine::Decided,
    }
    writable(path)?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (set, run) in c.sets.iter().zip(runs) {
        for decided in &run.decided {
            serde_json::to_writer(
                &mut out,
                &Line {
                    set: &set.name,
                    decided,
                },
            )?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `tradeserve backtest`: run, then print and write what was asked.
pub fn command(args: &BacktestArgs) -> anyhow::Result<()> {
    let (comparison, runs) = run(args)?;
    if let Some(p) = &args.decisions {
        write_decisions(p, &comparison, &runs)?;
    }
    let json = serde_json::to_string_pretty(&comparison)?;
    let mut out = std::io::stdout().lock();
    match &args.json {
        Some(p) if p.as_os_str() == "-" => writeln!(out, "{json}")?,
        Some(p) => {
            writable(p)?;
            std::fs::write(p, format!("{json}\n"))?;
            write!(out, "{}", tradeserve_backtest::table::render(&comparison))?;
        }
        None => write!(out, "{}", tradeserve_backtest::table::render(&comparison))?,
    }
    if let Some(p) = &args.html {
        writable(p)?;
        std::fs::write(p, tradeserve_backtest::html::render(&comparison))?;
    }
    Ok(())
}
