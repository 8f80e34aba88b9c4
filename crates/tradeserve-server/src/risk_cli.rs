//! `tradeserve risk show` and `tradeserve risk reconcile`: what a start would load into this
//! replica's risk books, and the operator's baseline when their history is missing
//! ([`crate::risk_books`]). Both print JSON; `reconcile` writes only with `--write`, after
//! showing what the next start will load.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::json;
use time::OffsetDateTime;
use tradeserve_events::chain::ChainKey;

use crate::config::{Config, resolve_path};
use crate::risk_books::{self, Book, Reconciled};

#[derive(Debug, Subcommand)]
pub enum RiskCommand {
    /// Print the books a start would load (checkpoint plus the audit log after it); exits 1
    /// when their history is missing, with the reason.
    Show(AuditLogArgs),
    /// Record a baseline for the books as of the first retained audit line — flat, or
    /// positions from a file — with who and why; a start then replays the retained log on top
    /// of it. Prints what the next start will load; writes only with `--write`.
    Reconcile(ReconcileArgs),
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
    match risk_books::replay(&path, key.as_ref(), true) {
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
    let cp =
        risk_books::baseline(&path, key.as_ref(), books, reconciled).map_err(anyhow::Error::msg)?;
    // What the next start will load with this baseline: shown, and checked, before writing.
    let loads = risk_books::replay_from(&path, key.as_ref(), Some(&cp), true)
        .map_err(|m| anyhow::anyhow!("{m}"))?;
    if a.write {
        risk_books::write_checkpoint(&path, &cp)?;
    }
    print(&json!({
        "written": a.write,
        "checkpoint": risk_books::checkpoint_path(&path),
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
