//! The gate evaluator of the active rollout: its inputs measured over the fleet (or this
//! replica alone without a fleet store), the verdict acted on (roll back on a failure, promote
//! on a pass with auto-promotion), and the watch for a stage whose candidate gets no traffic.
//! A pass is never acted on while the fleet's measurements cannot be read: this replica's share
//! alone may pass a gate the fleet's would fail, so the gate waits; a failure still rolls back.
//! A `backtest` stage is judged on a backtest instead ([`crate::control::backtest`]), run once.

use time::OffsetDateTime;
use tradeserve_core::backtest_gate;
use tradeserve_core::control::commands::Gate;
use tradeserve_core::rollout::{
    GateCheck, GateInputs, GateName, GateReport, Rollout, Stage, Verdict,
};
use tradeserve_core::stats::{self, ArmSnapshot};

use super::ControlPlane;
use crate::control::{Actor, CommandError, PlaneError};

/// The candidate traffic of one rollout stage, as last seen by the gate evaluator.
pub(super) struct StageTraffic {
    rollout_id: String,
    stage: Stage,
    /// Candidate decisions, errors and shadow runs at `since`.
    seen: u64,
    since: std::time::Instant,
    warned: bool,
}

fn p99_us(a: &ArmSnapshot) -> Option<f64> {
    a.latency_ms.p99.map(|ms| ms * 1e3)
}

impl ControlPlane {
    /// Note the candidate traffic of the active stage; when there has been none for
    /// `stage_idle_after`, say so in the gate report (a `traffic` check), a gauge and one
    /// warning per stage. A stage can starve when few units hash into a small share (e.g.
    /// `symbol_date` bucketing with a handful of symbols on some days).
    fn watch_traffic(&self, r: &Rollout, inputs: &GateInputs, report: &mut GateReport) {
        let seen = inputs.candidate_decisions + inputs.candidate_errors + inputs.shadow_compared;
        let mut traffic = self.gating.traffic.lock();
        let fresh = traffic
            .as_ref()
            .is_none_or(|t| t.rollout_id != r.rollout_id || t.stage != r.stage || t.seen != seen);
        if fresh {
            *traffic = Some(StageTraffic {
                rollout_id: r.rollout_id.clone(),
                stage: r.stage,
                seen,
                since: std::time::Instant::now(),
                warned: false,
            });
            self.metrics.rollout_starved.set(0);
            return;
        }
        let Some(t) = traffic.as_mut() else {
            return;
        };
        let idle = t.since.elapsed();
        if idle < self.gating.stage_idle_after || report.verdict != Verdict::Wait {
            return;
        }
        let detail = format!(
            "the candidate has received no traffic for {:.0} s in this stage (bucketing {}: too few units may fall in its share)",
            idle.as_secs_f64(),
            serde_json::to_value(r.bucketing).unwrap_or_default()
        );
        if !t.warned {
            t.warned = true;
            tracing::warn!(rollout = %r.rollout_id, stage = r.stage.as_str(), %detail, "rollout stage starved");
        }
        self.metrics.rollout_starved.set(1);
        report.checks.push(GateCheck {
            name: GateName::Traffic,
            verdict: Verdict::Wait,
            detail,
        });
    }

    /// The gate inputs of a rollout's current stage, measured over the fleet, and why the
    /// fleet's share could not be read (then: this replica's alone).
    pub async fn gate_inputs(&self, r: &Rollout) -> (GateInputs, Option<String>) {
        let m = self.rollout_measured(&r.rollout_id, r.stage).await;
        let [c, t] = m.arms.each_ref().map(|a| a.snapshot());
        // At `full` no unit is on control: compare with control as last measured.
        let mut control_p99 = p99_us(&c);
        for s in Stage::ACTIVE.iter().rev().filter(|s| **s < r.stage) {
            if control_p99.is_some() {
                break;
            }
            let earlier = self.rollout_measured(&r.rollout_id, *s).await;
            control_p99 = p99_us(&earlier.arms[0].snapshot());
        }
        let inputs = GateInputs {
            candidate_decisions: t.decisions,
            candidate_errors: t.errors,
            control_latency_p99_us: control_p99,
            candidate_latency_p99_us: p99_us(&t),
            shadow_compared: t.shadow_compared,
            shadow_agreed: t.shadow_agreed,
            control_outcomes: c.outcomes,
            candidate_outcomes: t.outcomes,
            control_mean_return: c.mean_return,
            candidate_mean_return: t.mean_return,
            welch_p_value: stats::welch_p_value(&t.summary, &c.summary),
        };
        (inputs, m.error)
    }

    /// Evaluate the active rollout's gates once; roll back on failure, promote on a pass when
    /// auto-promotion is on. Returns the report.
    pub async fn tick_gates(&self) -> Option<GateReport> {
        let view = self.served.view.load_full();
        let r = view.active_rollout()?;
        if r.stage == Stage::Backtest {
            return Some(self.tick_backtest(r).await);
        }
        let (inputs, fleet_error) = self.gate_inputs(r).await;
        let mut report = r.evaluate(&inputs, OffsetDateTime::now_utc())?;
        self.watch_traffic(r, &inputs, &mut report);
        if let Some(e) = fleet_error {
            if report.verdict == Verdict::Pass {
                report.verdict = Verdict::Wait;
            }
            report.checks.push(GateCheck {
                name: GateName::Fleet,
                verdict: Verdict::Wait,
                detail: format!(
                    "judged on this replica's share alone: the fleet's measurements cannot be read ({e}); a pass waits for them"
                ),
            });
        }
        self.settle(r, &report).await;
        Some(report)
    }

    /// Keep `report` as the rollout's last gate, and act on its verdict: roll back on a
    /// failure, promote on a pass with auto-promotion.
    async fn settle(&self, r: &Rollout, report: &GateReport) {
        self.gating
            .reports
            .lock()
            .insert(r.rollout_id.clone(), report.clone());
        let act = match report.verdict {
            Verdict::Fail => true,
            Verdict::Pass => r.auto_promote && !r.paused,
            Verdict::Wait => false,
        };
        if act {
            self.act_on(r, report).await;
        }
    }

    /// The `backtest` stage: backtest the candidate against the champion once (on a blocking
    /// thread), judge it, and act as on any gate.
    async fn tick_backtest(&self, r: &Rollout) -> GateReport {
        let known = self.gating.backtests.lock().get(&r.rollout_id).cloned();
        let report = match known {
            Some(report) => report,
            None => {
                let report = self.run_backtest(r).await;
                if report.verdict != Verdict::Wait {
                    tracing::info!(rollout = %r.rollout_id, verdict = ?report.verdict, checks = %serde_json::to_string(&report.checks).unwrap_or_default(), "rollout backtest judged");
                    self.gating
                        .backtests
                        .lock()
                        .insert(r.rollout_id.clone(), report.clone());
                }
                report
            }
        };
        self.settle(r, &report).await;
        report
    }

    async fn run_backtest(&self, r: &Rollout) -> GateReport {
        let now = OffsetDateTime::now_utc;
        let Some(offline) = self.gating.offline.clone() else {
            return backtest_gate::waiting("this service has no backtest history".into(), now());
        };
        let Some(champion) = self.served.champion.load_full() else {
            return backtest_gate::waiting("the champion is not loaded yet".into(), now());
        };
        let Some(candidate) = self.catalog.compose(&champion, &r.candidate) else {
            return backtest_gate::waiting(
                "the candidate's models are not loaded on this replica yet".into(),
                now(),
            );
        };
        let gate = r.backtest.clone().unwrap_or_default();
        let criteria = gate.clone();
        let ran =
            tokio::task::spawn_blocking(move || offline.run(&champion, &candidate, &criteria))
                .await;
        let why = match ran {
            Ok(Ok(summary)) => return backtest_gate::judge(&gate, summary, now()),
            Ok(Err(why)) => why.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(rollout = %r.rollout_id, %why, "rollout backtest could not run");
        backtest_gate::waiting(format!("the backtest could not run: {why}"), now())
    }

    async fn act_on(&self, r: &Rollout, report: &GateReport) {
        let gate = Actor {
            who: "gate".into(),
            reason: String::new(),
        };
        let command = Gate {
            id: r.rollout_id.clone(),
            report: report.clone(),
        };
        match self.execute(command.into(), &gate).await {
            Ok(_) => {}
            // Someone (another replica's evaluator, an operator) moved the rollout first.
            Err(PlaneError::Command(CommandError::Conflict(why))) => {
                tracing::debug!(%why, "gate verdict not applied")
            }
            Err(e) => tracing::error!(error = %e, "gate verdict not applied"),
        }
    }
}
