//! The offline gate of a rollout: before its candidate sees a single live request, it is
//! backtested against the champion over the last days of history, and the rollout moves to
//! shadow only when the criteria hold — at least `min_orders` orders, a hit rate not lower
//! than the champion's by more than `max_hit_rate_drop`, a Sharpe ratio not lower by more than
//! `max_sharpe_drop`, and a maximum drawdown not deeper by more than `max_drawdown_increase`.
//!
//! The hit rate judges the signal: each order's next-bar return. The Sharpe ratio and the
//! drawdown judge the book, and over a few days a book's returns are mostly its net exposure
//! times the market's move — a model that trades against its own signal can show the better
//! Sharpe ratio in a falling week (measured: docs/backtest.md). Hence both. The backtest itself runs in the
//! server (`tradeserve_backtest`); this module holds the criteria, the figures they read, and
//! the verdict, with no I/O.

use time::OffsetDateTime;

pub use crate::backtest_criteria::{BacktestFigures, BacktestGate, BacktestSummary};
use crate::rollout::{GateCheck, GateInputs, GateName, GateReport, Stage, Verdict};

fn check(name: GateName, pass: bool, detail: String) -> GateCheck {
    GateCheck {
        name,
        verdict: if pass { Verdict::Pass } else { Verdict::Fail },
        detail,
    }
}

fn shown(x: Option<f64>) -> String {
    x.map_or_else(|| "undefined".into(), |x| format!("{x:.4}"))
}

/// The candidate's figure may be lower than the champion's by at most `drop`. An undefined
/// figure (no orders judged, no dispersion) cannot show the candidate is good; a champion
/// without one leaves nothing to fall short of.
fn compared(
    name: GateName,
    what: &str,
    candidate: Option<f64>,
    champion: Option<f64>,
    drop: f64,
) -> GateCheck {
    match (candidate, champion) {
        (Some(cand), Some(champ)) => check(
            name,
            cand >= champ - drop,
            format!("candidate {cand:.4} vs champion {champ:.4}: may be lower by {drop}"),
        ),
        (None, champ) => check(
            name,
            false,
            format!(
                "the candidate's {what} is undefined (champion {})",
                shown(champ)
            ),
        ),
        (Some(cand), None) => check(
            name,
            true,
            format!("candidate {cand:.4}; the champion's is undefined"),
        ),
    }
}

/// The verdict of `gate` on `summary`: fail if any criterion fails, pass otherwise.
pub fn judge(gate: &BacktestGate, summary: BacktestSummary, now: OffsetDateTime) -> GateReport {
    let (c, t) = (&summary.champion, &summary.candidate);
    let orders = check(
        GateName::BacktestOrders,
        t.orders >= gate.min_orders,
        format!("{} orders, at least {} needed", t.orders, gate.min_orders),
    );
    let hit_rate = compared(
        GateName::BacktestHitRate,
        "hit rate",
        t.hit_rate,
        c.hit_rate,
        gate.max_hit_rate_drop,
    );
    let sharpe = compared(
        GateName::BacktestSharpe,
        "Sharpe ratio",
        t.sharpe,
        c.sharpe,
        gate.max_sharpe_drop,
    );
    // No drawdown at all is a drawdown of 0.
    let (cand_dd, champ_dd) = (t.max_drawdown.unwrap_or(0.0), c.max_drawdown.unwrap_or(0.0));
    let drawdown = check(
        GateName::BacktestDrawdown,
        cand_dd >= champ_dd - gate.max_drawdown_increase,
        format!(
            "candidate {cand_dd:.4} vs champion {champ_dd:.4}: may be deeper by {}",
            gate.max_drawdown_increase
        ),
    );
    let checks = vec![orders, hit_rate, sharpe, drawdown];
    let verdict = if checks.iter().any(|c| c.verdict == Verdict::Fail) {
        Verdict::Fail
    } else {
        Verdict::Pass
    };
    GateReport {
        stage: Stage::Backtest,
        verdict,
        checks,
        at: now,
        inputs: GateInputs::default(),
        backtest: Some(Box::new(summary)),
    }
}

/// A backtest stage that could not judge yet (the models are loading, the backtest failed to
/// run): it waits, and says why.
pub fn waiting(why: String, now: OffsetDateTime) -> GateReport {
    GateReport {
        stage: Stage::Backtest,
        verdict: Verdict::Wait,
        checks: vec![GateCheck {
            name: GateName::Backtest,
            verdict: Verdict::Wait,
            detail: why,
        }],
        at: now,
        inputs: GateInputs::default(),
        backtest: None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn figures(
        orders: u64,
        hit: Option<f64>,
        sharpe: Option<f64>,
        dd: Option<f64>,
    ) -> BacktestFigures {
        BacktestFigures {
            orders,
            hit_rate: hit,
            sharpe,
            max_drawdown: dd,
            ..BacktestFigures::default()
        }
    }

    fn verdicts(champion: BacktestFigures, candidate: BacktestFigures) -> Vec<Verdict> {
        let summary = BacktestSummary {
            from: None,
            to: None,
            symbols: 1,
            periods_per_year: 98_280.0,
            champion,
            candidate,
        };
        let r = judge(
            &BacktestGate::default(),
            summary,
            OffsetDateTime::UNIX_EPOCH,
        );
        let mut v: Vec<Verdict> = r.checks.iter().map(|c| c.verdict).collect();
        v.push(r.verdict);
        v
    }

    #[test]
    fn each_criterion_fails_on_its_own_at_its_bound() {
        use Verdict::{Fail, Pass};
        let champ = figures(500, Some(0.53), Some(2.0), Some(-0.02));
        // Within every bound (hit rate lower by 0.02, Sharpe by 1.0, drawdown deeper by 0.01).
        assert_eq!(
            verdicts(champ, figures(100, Some(0.51), Some(1.0), Some(-0.03))),
            [Pass, Pass, Pass, Pass, Pass]
        );
        assert_eq!(
            verdicts(champ, figures(99, Some(0.6), Some(3.0), Some(-0.01))),
            [Fail, Pass, Pass, Pass, Fail]
        );
        assert_eq!(
            verdicts(champ, figures(200, Some(0.5099), Some(3.0), Some(-0.01))),
            [Pass, Fail, Pass, Pass, Fail]
        );
        assert_eq!(
            verdicts(champ, figures(200, Some(0.6), Some(0.99), Some(-0.01))),
            [Pass, Pass, Fail, Pass, Fail]
        );
        assert_eq!(
            verdicts(champ, figures(200, Some(0.6), Some(2.0), Some(-0.0301))),
            [Pass, Pass, Pass, Fail, Fail]
        );
        // Undefined figures: the candidate's fail, the champion's leave nothing to compare.
        assert_eq!(
            verdicts(champ, figures(200, None, None, None)),
            [Pass, Fail, Fail, Pass, Fail]
        );
        assert_eq!(
            verdicts(
                figures(0, None, None, None),
                figures(200, Some(0.4), Some(-1.0), Some(-0.005))
            ),
            [Pass, Pass, Pass, Pass, Pass]
        );
    }
}
