//! `tradeserve risk show` and `tradeserve risk reconcile`: what a start would load into this
//! replica's risk books, and the operator's baseline when their history is missing
//! ([`tradeserve_events::books`]); `tradeserve risk rebuild-shared`: the shared Redis ledger rebuilt
//! from the fleet's audit logs ([`crate::risk_rebuild`]). All print JSON; `reconcile` and
//! `rebuild-shared` write only with `--write`, after showing what they will write.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::json;
use time::OffsetDateTime;
use tradeserve_events::chain::ChainKey;

use crate::config::{Config, resolve_path};
use crate::risk_rebuild;
use tradeserve_events::books::{self, Book, Reconciled};
use tradeserve_redis::rebuild::Rebuild;

#[derive(Debug, Subcommand)]
pub enum RiskCommand {
    /// Print the books a start would load (checkpoint plus the audit log after it); exits 1
    /// when their history is missing, with the reason.
    Show(AuditLogArgs),
    /// Record a baseline for the books as of the first retained audit line — flat, or
    /// positions from a file — with who and why; a start then replays the retained log on top
    /// of it. Prints what the next start will load; writes only with `--write`.
    Reconcile(ReconcileArgs),
    /// Write the shared Redis ledger (`[ledger] store = "redis"`) with a new generation: the
    /// books of every replica's audit log, summed (or `--flat` for a new deployment). Until
    /// then, a ledger that lost its data refuses every risk-checked order. Prints the books
    /// and the ledger's state; writes only with `--write`.
    RebuildShared(RebuildArgs),
}

/// Arguments of `tradeserve risk rebuild-shared`.
#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// The configuration whose `[ledger]` (Redis URL, prefix) and chain key to use.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// One replica's audit log (its active file); once per replica of the fleet.
    #[arg(long = "audit-log", required_unless_present = "flat")]
    pub audit_logs: Vec<PathBuf>,
    /// No orders yet: every position flat (a new deployment).
    #[arg(long, conflicts_with = "audit_logs")]
    pub flat: bool,
    /// Who rebuilds (kept in the ledger).
    #[arg(long)]
    pub by: String,
    /// Why (kept in the ledger).
    #[arg(long)]
    pub reason: String,
    /// Replace a ledger that is live (not reset or lost); every replica refuses risk-checked
    /// orders while it is written.
    #[arg(long)]
    pub replace: bool,
    /// Write the ledger (without it, only show what would be written).
    #[arg(long)]
    pub write: bool,
}

/// Which audit log (`tradeserve risk …` and `tradeserve audit verify`).
#[derive(Debug, Args)]
pub struct AuditLogArgs {
    /// The configuration whose `events.audit_log` and `events.audit_chain_key_file` to use.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The audit log's active file (default: the configuration's).
    #[arg(long)]
    pub audit_log: Option<PathBuf>,
}

/// Arguments of `tradeserve risk reconcile`.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub log: AuditLogArgs,
    /// Every position zero before the first retained line.
    #[arg(
        long,
        conflicts_with = "positions",
        required_unless_present = "positions"
    )]
    pub flat: bool,
    /// A JSON object of signed positions in shares before the first retained line, e.g.
    /// `{"AAPL": 600, "MSFT": -100}` (from the order management system).
    #[arg(long)]
    pub positions: Option<PathBuf>,
    /// Who reconciles (recorded in the checkpoint).
    #[arg(long)]
    pub by: String,
    /// Why (recorded in the checkpoint).
    #[arg(long)]
    pub reason: String,
    /// Write the checkpoint (without it, only show what the next start would load).
    #[arg(long)]
    pub write: bool,
}

pub fn run(command: &RiskCommand) -> anyhow::Result<()> {
    match command {
        RiskCommand::Show(a) => show(a),
        RiskCommand::Reconcile(a) => reconcile(a),
        RiskCommand::RebuildShared(a) => rebuild_shared(a),
    }
}

fn log_and_key(a: &AuditLogArgs) -> anyhow::Result<(PathBuf, Option<ChainKey>)> {
    let config = Config::load(a.config.as_deref(), None)?;
    let path = a
        .audit_log
        .clone()
        .unwrap_or_else(|| resolve_path(&config.events.audit_log));
    let key = config.events.chain_key().map_err(anyhow::Error::msg)?;
    Ok((path, key))
}

fn print(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

fn show(a: &AuditLogArgs) -> anyhow::Result<()> {
    let (path, key) = log_and_key(a)?;
    match books::replay(&path, key.as_ref(), true) {
        Ok(r) => {
            let mut v = serde_json::to_value(&r)?;
            v["status"] = json!("complete");
            v["audit_log"] = json!(path);
            print(&v)
        }
        Err(missing) => {
            print(&json!({"status": "missing", "audit_log": path, "reason": missing.0}))?;
            anyhow::bail!("{missing}")
        }
    }
}

fn reconcile(a: &ReconcileArgs) -> anyhow::Result<()> {
    let (path, key) = log_and_key(&a.log)?;
    let books = match &a.positions {
        Some(file) => positions(file)?,
        None => BTreeMap::new(),
    };
    let reconciled = Reconciled {
        at: OffsetDateTime::now_utc(),
        by: a.by.clone(),
        reason: a.reason.clone(),
    };
    let cp = books::baseline(&path, key.as_ref(), books, reconciled)?;
    // What the next start will load with this baseline: shown, and checked, before writing.
    let loads = books::replay_from(&path, key.as_ref(), Some(&cp), true)
        .map_err(|m| anyhow::anyhow!("{m}"))?;
    if a.write {
        books::write_checkpoint(&path, &cp)?;
    }
    print(&json!({
        "written": a.write,
        "checkpoint": books::checkpoint_path(&path),
        "reconciled": cp.reconciled,
        "next_start_loads": loads,
    }))
}

/// `{"SYMBOL": shares, …}` as flat-day books.
fn positions(file: &Path) -> anyhow::Result<BTreeMap<String, Book>> {
    let text = std::fs::read(file)?;
    let map: BTreeMap<String, i64> = serde_json::from_slice(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: expected a JSON object of signed share counts: {e}",
            file.display()
        )
    })?;
    Ok(map
        .into_iter()
        .map(|(symbol, position)| {
            let book = Book {
                position,
                day: None,
                orders_today: 0,
            };
            (symbol, book)
        })
        .collect())
}

fn rebuild_shared(a: &RebuildArgs) -> anyhow::Result<()> {
    let config = Config::load(a.config.as_deref(), None)?;
    let key = config.events.chain_key().map_err(anyhow::Error::msg)?;
    let window = config.risk.repeated_execution_window;
    let fleet = risk_rebuild::fleet_books(&a.audit_logs, key.as_ref(), window)
        .map_err(|m| anyhow::anyhow!("{m}"))?;
    let rebuild = Rebuild {
        by: a.by.clone(),
        reason: a.reason.clone(),
        replace: a.replace,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (before, written) = runtime
        .block_on(async {
            let at = tradeserve_redis::rebuild::Target {
                url: &config.ledger.redis_url,
                prefix: &config.ledger.redis_prefix,
                timeout: config.ledger.timeout.get(),
            };
            let before = tradeserve_redis::rebuild::ledger_state(&at).await?;
            let written = match a.write {
                true => {
                    let books = risk_rebuild::rebuilt(&fleet);
                    Some(tradeserve_redis::rebuild::write(&at, &books, &rebuild).await?)
                }
                false => None,
            };
            Ok::<_, tradeserve_redis::rebuild::RebuildError>((before, written))
        })
        .map_err(anyhow::Error::msg)?;
    print(&json!({
        "written": a.write,
        "ledger": crate::ledger::describe(&config.ledger),
        "ledger_before": before,
        "ledger_after": written,
        "books": fleet.books,
        "desks": fleet.desks,
        "latch": fleet.latch.iter().map(|(s, (w, n))| (s.clone(), json!({"window": w, "orders": n}))).collect::<serde_json::Map<_, _>>(),
        "sources": fleet.sources,
    }))
}
