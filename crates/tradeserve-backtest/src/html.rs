//! The backtest as a page: one self-contained HTML file (no script, no external resource, like
//! the service's dashboard) with the equity and drawdown curves of every set drawn as inline
//! SVG, the summary table and the orders per symbol. Figures a script may want are in
//! `data-value` attributes, unrounded.

use std::fmt::Write;

use crate::comparison::{Comparison, SetResult};
use crate::table::{bp, percent, summary_rows, when};

/// Line colours of the sets, in order (repeating).
const COLOURS: [&str; 6] = [
    "#58a6ff", "#f0883e", "#3fb950", "#d2a8ff", "#f85149", "#d29922",
];

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 260.0;
const PAD: f64 = 8.0;

/// Text safe inside HTML elements and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An SVG chart of one series per set (`series` picks it), every set on the same scales:
/// x by step index, y from the lowest to the highest value of any set.
fn chart(
    c: &Comparison,
    title: &str,
    series: fn(&SetResult) -> &[f64],
    label: fn(f64) -> String,
) -> String {
    let values = || c.sets.iter().flat_map(|s| series(s).iter().copied());
    let lo = values().fold(f64::INFINITY, f64::min);
    let hi = values().fold(f64::NEG_INFINITY, f64::max);
    let steps = c.sets.iter().map(|s| series(s).len()).max().unwrap_or(0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<section class="panel"><h2>{}</h2><svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}">"#,
        escape(title),
        escape(title)
    );
    if lo.is_finite() && hi.is_finite() && steps > 1 {
        let span = if hi > lo { hi - lo } else { 1.0 };
        let x = |i: usize| PAD + (WIDTH - 2.0 * PAD) * i as f64 / (steps - 1) as f64;
        let y = |v: f64| PAD + (HEIGHT - 2.0 * PAD) * (hi - v) / span;
        for (i, set) in c.sets.iter().enumerate() {
            let points: Vec<String> = series(set)
                .iter()
                .enumerate()
                .map(|(j, v)| format!("{:.1},{:.1}", x(j), y(*v)))
                .collect();
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"><title>{}</title></polyline>"#,
                COLOURS[i % COLOURS.len()],
                points.join(" "),
                escape(&set.name)
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{PAD}" y="16" class="axis">{}</text><text x="{PAD}" y="{}" class="axis">{}</text>"#,
            escape(&label(hi)),
            HEIGHT - PAD - 4.0,
            escape(&label(lo))
        );
    }
    svg.push_str("</svg>");
    svg.push_str(&legend(c));
    svg.push_str("</section>");
    svg
}

fn legend(c: &Comparison) -> String {
    let mut out = String::from(r#"<div class="legend">"#);
    for (i, set) in c.sets.iter().enumerate() {
        let _ = write!(
            out,
            r#"<span><i style="background:{}"></i>{}</span>"#,
            COLOURS[i % COLOURS.len()],
            escape(&set.name)
        );
    }
    out.push_str("</div>");
    out
}

fn summary(c: &Comparison) -> String {
    let mut out =
        String::from(r#"<section class="panel"><h2>Summary</h2><table id="summary"><tr><th></th>"#);
    for set in &c.sets {
        let _ = write!(out, "<th>{}</th>", escape(&set.name));
    }
    out.push_str("</tr>");
    for (label, cells) in summary_rows(c) {
        let _ = write!(out, "<tr><td>{}</td>", escape(label));
        for cell in cells {
            let _ = write!(out, r#"<td class="n">{}</td>"#, escape(&cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table></section>");
    out
}

fn per_symbol(c: &Comparison) -> String {
    let mut out = String::from(
        r#"<section class="panel"><h2>Orders per symbol: orders · hit rate · mean return per order</h2><table id="symbols"><tr><th></th>"#,
    );
    for set in &c.sets {
        let _ = write!(out, "<th>{}</th>", escape(&set.name));
    }
    out.push_str("</tr>");
    for symbol in &c.history.symbols {
        let _ = write!(out, "<tr><td>{}</td>", escape(symbol));
        for set in &c.sets {
            let o = set
                .report
                .by_symbol
                .get(symbol)
                .copied()
                .unwrap_or_default();
            let _ = write!(
                out,
                r#"<td class="n" data-value="{}">{} · {} · {}</td>"#,
                o.hit_rate.map_or_else(String::new, |h| h.to_string()),
                o.orders,
                percent(o.hit_rate),
                bp(o.mean_return)
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</table></section>");
    out
}

const STYLE: &str = r#"<style>
  body { margin:0; background:#0f1419; color:#d8e0e8; font:14px/1.4 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
  header { padding:12px 20px; border-bottom:1px solid #2a3540; }
  header h1 { font-size:18px; margin:0 0 4px; font-weight:600; }
  .dim { color:#8a98a8; }
  main { padding:16px 20px; display:grid; gap:14px; }
  .panel { background:#182028; border:1px solid #2a3540; border-radius:8px; padding:12px 14px; }
  .panel h2 { margin:0 0 8px; font-size:12px; font-weight:600; color:#8a98a8; text-transform:uppercase; letter-spacing:.05em; }
  svg { width:100%; height:auto; display:block; }
  .axis { fill:#8a98a8; font-size:12px; }
  table { border-collapse:collapse; font-variant-numeric:tabular-nums; }
  th, td { padding:3px 10px; border-bottom:1px solid #2a3540; text-align:left; }
  td.n { text-align:right; }
  .legend span { margin-right:14px; font-size:12px; }
  .legend i { display:inline-block; width:12px; height:3px; margin-right:4px; vertical-align:middle; }
</style>"#;

/// The page of `c`.
pub fn render(c: &Comparison) -> String {
    let h = &c.history;
    let mut out = String::from(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>TradeServe backtest</title>\n",
    );
    out.push_str(STYLE);
    let _ = write!(
        out,
        "\n</head>\n<body>\n<header><h1>TradeServe backtest</h1><div class=\"dim\">{} symbols, {} bars from {} to {}, decided from {} · capital {:.0} · annual figures at {} periods a year ({}) · no costs, fills at the bar's close</div></header>\n<main>\n",
        h.symbols.len(),
        h.bars,
        escape(&when(h.first_bar)),
        escape(&when(h.last_bar)),
        escape(&when(h.decided_from)),
        c.capital,
        c.annualization.periods_per_year,
        escape(&c.annualization.period),
    );
    out.push_str(&chart(
        c,
        "Equity",
        |s| &s.curves.equity,
        |v| format!("{v:.0}"),
    ));
    out.push('\n');
    out.push_str(&chart(
        c,
        "Drawdown",
        |s| &s.curves.drawdown,
        |v| percent(Some(v)),
    ));
    out.push('\n');
    out.push_str(&summary(c));
    out.push('\n');
    out.push_str(&per_symbol(c));
    out.push_str("\n</main>\n</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
