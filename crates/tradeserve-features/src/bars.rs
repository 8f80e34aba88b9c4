//! Loading the bundled market data (`data/bars.csv`) into per-symbol columns.
//!
//! The file has a header `symbol,ts,open,high,low,close,volume,regime`, rows grouped by symbol
//! and ordered by `ts` (bar close time, Unix seconds UTC). Anything else is a load error with
//! the line number: bad data must never reach a model.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// One symbol's bars as columns, ordered by time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SymbolBars {
    pub ts: Vec<i64>,
    pub high: Vec<f64>,
    pub low: Vec<f64>,
    pub close: Vec<f64>,
    pub volume: Vec<f64>,
}

impl SymbolBars {
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }
}

/// Why the bars could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum BarError {
    #[error("cannot read {path}: {cause}")]
    Read { path: String, cause: csv::Error },
    #[error("{path} line {line}: {message}")]
    Invalid {
        path: String,
        line: u64,
        message: String,
    },
}

#[derive(Deserialize)]
struct Row {
    symbol: String,
    ts: i64,
    #[allow(dead_code)]
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
}

/// Read and check a bars CSV file.
pub fn load_bars_csv(path: &Path) -> Result<BTreeMap<String, SymbolBars>, BarError> {
    let shown = path.display().to_string();
    let mut reader = csv::Reader::from_path(path).map_err(|cause| BarError::Read {
        path: shown.clone(),
        cause,
    })?;
    let mut out: BTreeMap<String, SymbolBars> = BTreeMap::new();
    for (i, row) in reader.deserialize::<Row>().enumerate() {
        let line = i as u64 + 2;
        let invalid = |message: String| BarError::Invalid {
            path: shown.clone(),
            line,
            message,
        };
        let row = row.map_err(|e| invalid(e.to_string()))?;
        if tradeserve_core::Symbol::parse(&row.symbol).is_err() {
            return Err(invalid(format!("invalid symbol {:?}", row.symbol)));
        }
        let prices_ok = [row.high, row.low, row.close]
            .iter()
            .all(|p| p.is_finite() && *p > 0.0)
            && row.low <= row.close
            && row.close <= row.high;
        if !(prices_ok && row.volume.is_finite() && row.volume >= 0.0) {
            return Err(invalid(
                "prices must be positive with low <= close <= high, volume >= 0".into(),
            ));
        }
        let bars = out.entry(row.symbol).or_default();
        if bars.ts.last().is_some_and(|last| *last >= row.ts) {
            return Err(invalid(
                "bars of a symbol must be in strictly increasing ts order".into(),
            ));
        }
        bars.ts.push(row.ts);
        bars.high.push(row.high);
        bars.low.push(row.low);
        bars.close.push(row.close);
        bars.volume.push(row.volume);
    }
    Ok(out)
}
