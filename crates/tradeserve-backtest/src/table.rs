//! The backtest as a person reads it on a terminal: what ran over what, then one column per
//! model set — decisions, orders, hit rate, mean return per order, the statistics, turnover,
//! exposure, the action mix — and the orders per symbol.

use std::fmt::Write;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::comparison::{Comparison, SetResult};
use crate::report::Orders;

/// A Unix time as RFC 3339 (UTC), or `-`.
pub(crate) fn when(t: Option<i64>) -> String {
    t.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".into())
}

pub(crate) fn percent(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{:.2}%", x * 100.0))
}

pub(crate) fn ratio(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{x:.3}"))
}

/// A return in basis points.
pub(crate) fn bp(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{:.2} bp", x * 1e4))
}

/// The rows of the summary: a label and each set's cell.
pub(crate) fn summary_rows(c: &Comparison) -> Vec<(&'static str, Vec<String>)> {
    type Cell = fn(&SetResult) -> String;
    let rows: [(&'static str, Cell); 17] = [
        ("decisions", |s| s.report.decisions.to_string()),
        ("refused by risk", |s| s.report.rejected.to_string()),
        ("orders", |s| s.report.overall.orders.to_string()),
        ("hit rate", |s| percent(s.report.overall.hit_rate)),
        ("mean return / order", |s| bp(s.report.overall.mean_return)),
        ("total return", |s| percent(s.report.stats.total_return)),
        ("annual return", |s| percent(s.report.stats.annual_return)),
        ("sharpe", |s| ratio(s.report.stats.sharpe)),
        ("sortino", |s| ratio(s.report.stats.sortino)),
        ("max drawdown", |s| percent(s.report.stats.max_drawdown)),
        ("calmar", |s| ratio(s.report.stats.calmar)),
        ("turnover (× capital)", |s| {
            format!("{:.2}", s.report.turnover)
        }),
        ("mean exposure", |s| percent(s.report.exposure)),
        ("BUY", |s| s.report.mix.buy.to_string()),
        ("SELL", |s| s.report.mix.sell.to_string()),
        ("HOLD", |s| s.report.mix.hold.to_string()),
        ("models", |s| {
            s.models
                .iter()
                .map(|m| m.version.as_str())
                .collect::<Vec<_>>()
                .join("/")
        }),
    ];
    rows.iter()
        .map(|(label, cell)| (*label, c.sets.iter().map(cell).collect()))
        .collect()
}

/// One symbol's orders as three cells: count, hit rate, mean return.
fn orders_cells(o: Option<&Orders>) -> [String; 3] {
    let o = o.copied().unwrap_or_default();
    [o.orders.to_string(), percent(o.hit_rate), bp(o.mean_return)]
}

/// The table of `c`.
pub fn render(c: &Comparison) -> String {
    let mut out = String::new();
    let h = &c.history;
    let _ = writeln!(
        out,
        "backtest over {} symbols, {} bars from {} to {}, decided from {}",
        h.symbols.len(),
        h.bars,
        when(h.first_bar),
        when(h.last_bar),
        when(h.decided_from),
    );
    let _ = writeln!(
        out,
        "capital {:.0}; annual figures at {} periods a year ({}); no costs, fills at the bar's close\n",
        c.capital, c.annualization.periods_per_year, c.annualization.period
    );
    let names: Vec<&str> = c.sets.iter().map(|s| s.name.as_str()).collect();
    let mut rows: Vec<(String, Vec<String>)> = vec![(String::new(), cells(&names))];
    rows.extend(
        summary_rows(c)
            .into_iter()
            .map(|(label, cells)| (label.to_owned(), cells)),
    );
    write_rows(&mut out, &rows);
    let _ = writeln!(out, "\norders per symbol");
    let header = names
        .iter()
        .flat_map(|n| [format!("{n}: orders"), "hit rate".into(), "mean".into()])
        .collect();
    let mut rows: Vec<(String, Vec<String>)> = vec![(String::new(), header)];
    for symbol in &h.symbols {
        let cells = c
            .sets
            .iter()
            .flat_map(|s| orders_cells(s.report.by_symbol.get(symbol)))
            .collect();
        rows.push((symbol.clone(), cells));
    }
    write_rows(&mut out, &rows);
    out
}

fn cells(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// Rows aligned in columns: labels left, cells right.
fn write_rows(out: &mut String, rows: &[(String, Vec<String>)]) {
    let label = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let columns = rows.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|(_, c)| c.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (l, cells) in rows {
        let _ = write!(out, "{l:<label$}");
        for (cell, width) in cells.iter().zip(&widths) {
            let _ = write!(out, "  {cell:>width$}");
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_missing_figures_are_dashes() {
        let mut out = String::new();
        let rows = vec![
            (String::new(), vec!["a".to_owned(), "longer".to_owned()]),
            ("sharpe".to_owned(), vec![ratio(Some(1.23456)), ratio(None)]),
        ];
        write_rows(&mut out, &rows);
        assert_eq!(out, "            a  longer\nsharpe  1.235       -\n");
        assert_eq!(percent(Some(-0.0123)), "-1.23%");
        assert_eq!(bp(Some(0.00012)), "1.20 bp");
        assert_eq!(when(Some(0)), "1970-01-01T00:00:00Z");
    }
}
