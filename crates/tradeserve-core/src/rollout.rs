//! Progressive rollouts: the stages, the state machine, and the gates that
//! promote or roll back a candidate model set. No I/O and no clock of its own: callers pass
//! `now` and the measured [`GateInputs`], so every transition is a pure, testable step.
//!
//! ```text
//! [backtest] ─▶ shadow ─▶ canary (10%) ─▶ partial (50%) ─▶ full (100%) ─▶ completed
//!     └────────────┴──────────┴───────────────┴───────────────┴──▶ rolled_back
//! ```
//!
//! The `backtest` stage is there only when the rollout asks for it: the candidate is judged
//! offline against the champion ([`crate::backtest_gate`]) before it sees any request.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::backtest_criteria::{BacktestGate, BacktestSummary};
use crate::experiment::{Bucketing, InvalidField, invalid, validate_id, validate_version};
use crate::types::Role;

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Stage {
    /// The candidate is backtested against the champion over recent history; no request
    /// sees it.
    Backtest,
    /// The candidate runs after each response; its decision is compared, never returned.
    Shadow,
    /// 10% of units get the candidate.
    Canary,
    /// 50%.
    Partial,
    /// 100%.
    Full,
    /// The candidate is the champion now.
    Completed,
    /// Back to control, by a person, a gate or the kill switch.
    RolledBack,
}

impl Stage {
    pub const ACTIVE: [Stage; 5] = [
        Stage::Backtest,
        Stage::Shadow,
        Stage::Canary,
        Stage::Partial,
        Stage::Full,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Backtest => "backtest",
            Stage::Shadow => "shadow",
            Stage::Canary => "canary",
            Stage::Partial => "partial",
            Stage::Full => "full",
            Stage::Completed => "completed",
            Stage::RolledBack => "rolled_back",
        }
    }

    /// Share of units routed to the candidate (shadow returns none of its decisions).
    pub fn candidate_share(self) -> f64 {
        match self {
            Stage::Canary => 0.10,
            Stage::Partial => 0.50,
            Stage::Full => 1.0,
            Stage::Backtest | Stage::Shadow | Stage::Completed | Stage::RolledBack => 0.0,
        }
    }

    pub fn is_active(self) -> bool {
        Stage::ACTIVE.contains(&self)
    }

    /// The stage a promotion leads to.
    pub fn next(self) -> Option<Stage> {
        match self {
            Stage::Backtest => Some(Stage::Shadow),
            Stage::Shadow => Some(Stage::Canary),
            Stage::Canary => Some(Stage::Partial),
            Stage::Partial => Some(Stage::Full),
            Stage::Full => Some(Stage::Completed),
            Stage::Completed | Stage::RolledBack => None,
        }
    }
}

/// How long each active stage must run before its gate can pass.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StageDurations {
    #[serde(with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, default = "1h", example = "1h"))]
    pub shadow: Duration,
    #[serde(with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, default = "1h", example = "1h"))]
    pub canary: Duration,
    #[serde(with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, default = "1h", example = "1h"))]
    pub partial: Duration,
    #[serde(with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, default = "1h", example = "1h"))]
    pub full: Duration,
}

impl Default for StageDurations {
    fn default() -> Self {
        // The seed asked for 7 days of validation; a desk picks its own. One hour per stage.
        let hour = Duration::from_secs(3600);
        StageDurations {
            shadow: hour,
            canary: hour,
            partial: hour,
            full: hour,
        }
    }
}

impl StageDurations {
    pub fn of(&self, stage: Stage) -> Duration {
        match stage {
            Stage::Shadow => self.shadow,
            Stage::Canary => self.canary,
            Stage::Partial => self.partial,
            Stage::Full => self.full,
            Stage::Backtest | Stage::Completed | Stage::RolledBack => Duration::ZERO,
        }
    }
}

/// What a stage must show before it is promoted; failing any check rolls back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Gates {
    /// Candidate decisions (or shadow comparisons) needed before a stage is judged.
    pub min_decisions: u64,
    /// Minimum time per stage (humantime, default 1h each).
    pub durations: StageDurations,
    /// Candidate p99 decision latency (server side) may exceed control's by at most this
    /// fraction (from canary on: in shadow the candidate serves no request).
    pub max_latency_increase: f64,
    /// Candidate failures / candidate decisions.
    pub max_error_rate: f64,
    /// Shadow only: share of decisions where the candidate chose the control's action.
    pub min_agreement: f64,
    /// Outcomes: fail when the candidate's mean return is lower with a Welch p-value below
    /// this (0 disables the check).
    pub outcome_alpha: f64,
    /// Outcomes needed per arm before the outcome check applies.
    pub min_outcomes: u64,
}

impl Default for Gates {
    fn default() -> Self {
        Gates {
            min_decisions: 1000,
            durations: StageDurations::default(),
            max_latency_increase: 0.5,
            max_error_rate: 0.001,
            min_agreement: 0.6,
            outcome_alpha: 0.01,
            min_outcomes: 200,
        }
    }
}

impl Gates {
    fn validate(&self) -> Result<(), InvalidField> {
        let frac = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
        if !(self.max_latency_increase.is_finite() && self.max_latency_increase >= 0.0) {
            return Err(invalid(
                "gates.max_latency_increase",
                "must be a number >= 0",
            ));
        }
        if !frac(self.max_error_rate) {
            return Err(invalid("gates.max_error_rate", "must be in [0, 1]"));
        }
        if !frac(self.min_agreement) {
            return Err(invalid("gates.min_agreement", "must be in [0, 1]"));
        }
        if !frac(self.outcome_alpha) {
            return Err(invalid("gates.outcome_alpha", "must be in [0, 1]"));
        }
        Ok(())
    }
}

/// A rollout as created through the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RolloutSpec {
    /// Generated (`ro-<uuid>`) when absent.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    )]
    pub rollout_id: Option<String>,
    /// Candidate version per role (role → registry version); roles left out keep the
    /// champion's version.
    pub candidate: BTreeMap<Role, String>,
    /// Promote as soon as a stage's gate passes; otherwise wait for `promote`.
    #[serde(default = "yes")]
    #[cfg_attr(feature = "openapi", schema(default = true))]
    pub auto_promote: bool,
    #[serde(default)]
    pub gates: Option<Gates>,
    /// Start with a `backtest` stage: the candidate judged offline against the champion
    /// before shadow (absent: start in shadow).
    #[serde(default)]
    pub backtest: Option<BacktestGate>,
    #[serde(default)]
    pub bucketing: Bucketing,
    #[serde(default)]
    pub salt: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

fn yes() -> bool {
    true
}

/// One stage change, with who made it and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Transition {
    pub from: Option<Stage>,
    pub to: Stage,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: String,
    pub reason: String,
}

/// A rollout as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = RolloutRecord))]
pub struct Rollout {
    pub rollout_id: String,
    /// Every role's version: the candidate set, frozen at creation.
    pub candidate: BTreeMap<Role, String>,
    /// The champion's versions when the rollout started (what rollback returns to).
    pub baseline: BTreeMap<Role, String>,
    pub stage: Stage,
    pub paused: bool,
    pub auto_promote: bool,
    pub gates: Gates,
    pub bucketing: Bucketing,
    pub salt: String,
    pub description: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub stage_entered_at: OffsetDateTime,
    pub history: Vec<Transition>,
    /// The last gate evaluation of the current stage.
    #[serde(default)]
    pub last_gate: Option<GateReport>,
    /// The criteria of the `backtest` stage, when the rollout has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backtest: Option<BacktestGate>,
    /// The `backtest` stage's report, kept for the rollout's life once it is judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backtest_report: Option<Box<GateReport>>,
}

/// Why a command cannot apply to a rollout in its current state (HTTP 409).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rollout {id} is {stage}: {message}")]
pub struct Conflict {
    pub id: String,
    pub stage: &'static str,
    pub message: &'static str,
}

impl RolloutSpec {
    /// Validate and freeze the candidate against the champion's versions.
    pub fn into_rollout(
        self,
        champion: &BTreeMap<Role, String>,
        actor: &str,
        now: OffsetDateTime,
    ) -> Result<Rollout, InvalidField> {
        let id = match self.rollout_id {
            Some(id) => id,
            None => format!("ro-{}", Uuid::now_v7().simple()),
        };
        validate_id("rollout_id", &id)?;
        for v in self.candidate.values() {
            validate_version("candidate", v)?;
        }
        let mut candidate = champion.clone();
        candidate.extend(self.candidate);
        if &candidate == champion {
            return Err(invalid(
                "candidate",
                "is the champion set already: name at least one role with another version",
            ));
        }
        let gates = self.gates.unwrap_or_default();
        gates.validate()?;
        if let Some(b) = &self.backtest {
            b.validate()?;
        }
        let first = if self.backtest.is_some() {
            Stage::Backtest
        } else {
            Stage::Shadow
        };
        let salt = self.salt.unwrap_or_else(|| id.clone());
        if salt.is_empty() || salt.len() > 128 {
            return Err(invalid("salt", "must be 1-128 characters"));
        }
        Ok(Rollout {
            history: vec![Transition {
                from: None,
                to: first,
                at: now,
                actor: actor.to_owned(),
                reason: "rollout created".into(),
            }],
            rollout_id: id,
            candidate,
            baseline: champion.clone(),
            stage: first,
            paused: false,
            auto_promote: self.auto_promote,
            gates,
            bucketing: self.bucketing,
            salt,
            description: self.description,
            created_at: now,
            stage_entered_at: now,
            last_gate: None,
            backtest: self.backtest,
            backtest_report: None,
        })
    }
}

impl Rollout {
    fn conflict(&self, message: &'static str) -> Conflict {
        Conflict {
            id: self.rollout_id.clone(),
            stage: self.stage.as_str(),
            message,
        }
    }

    fn move_to(&mut self, to: Stage, actor: &str, reason: String, now: OffsetDateTime) {
        self.history.push(Transition {
            from: Some(self.stage),
            to,
            at: now,
            actor: actor.to_owned(),
            reason,
        });
        self.stage = to;
        self.stage_entered_at = now;
        self.last_gate = None;
    }

    /// Next stage now (and resume if paused).
    pub fn promote(
        &mut self,
        actor: &str,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<Stage, Conflict> {
        let Some(next) = self.stage.next() else {
            return Err(self.conflict("cannot be promoted"));
        };
        self.paused = false;
        self.move_to(next, actor, reason.to_owned(), now);
        Ok(next)
    }

    /// Hold at the current stage: no automatic promotion (gates still roll back).
    pub fn pause(
        &mut self,
        actor: &str,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<(), Conflict> {
        if !self.stage.is_active() {
            return Err(self.conflict("is not active"));
        }
        if self.paused {
            return Err(self.conflict("is already paused"));
        }
        self.paused = true;
        self.history.push(Transition {
            from: Some(self.stage),
            to: self.stage,
            at: now,
            actor: actor.to_owned(),
            reason: format!("paused: {reason}"),
        });
        Ok(())
    }

    /// All traffic back to control.
    pub fn roll_back(
        &mut self,
        actor: &str,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<(), Conflict> {
        if !self.stage.is_active() {
            return Err(self.conflict("is not active"));
        }
        self.paused = false;
        self.move_to(Stage::RolledBack, actor, reason.to_owned(), now);
        Ok(())
    }

    /// Judge the current stage on live measurements. `None` when the rollout is not active,
    /// or backtesting (judged by [`crate::backtest_gate::judge`]).
    pub fn evaluate(&self, inputs: &GateInputs, now: OffsetDateTime) -> Option<GateReport> {
        if !self.stage.is_active() || self.stage == Stage::Backtest {
            return None;
        }
        Some(evaluate_gates(
            self.stage,
            &self.gates,
            self.stage_entered_at,
            inputs,
            now,
        ))
    }
}

/// What the gates read, measured over the current stage.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GateInputs {
    /// Candidate decisions (live or shadow) and failures.
    pub candidate_decisions: u64,
    pub candidate_errors: u64,
    /// p99 of server-side decision latency (arrival → decision), per arm, in µs (`None`
    /// without data: null). At `full`, control's is the last one measured in an earlier stage.
    pub control_latency_p99_us: Option<f64>,
    pub candidate_latency_p99_us: Option<f64>,
    /// Shadow: comparisons made and how many chose the same action.
    pub shadow_compared: u64,
    pub shadow_agreed: u64,
    /// Outcomes per arm, the mean returns, and the Welch p-value of their difference.
    pub control_outcomes: u64,
    pub candidate_outcomes: u64,
    pub control_mean_return: Option<f64>,
    pub candidate_mean_return: Option<f64>,
    pub welch_p_value: Option<f64>,
}

/// The result of one gate check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Verdict {
    /// Not enough time or data yet.
    Wait,
    Pass,
    Fail,
}

/// One gate check and why it came out so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GateCheck {
    pub name: GateName,
    pub verdict: Verdict,
    pub detail: String,
}

/// What a gate check judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum GateName {
    /// The stage has run its minimum time.
    Duration,
    /// The candidate has made enough decisions to judge.
    MinDecisions,
    ErrorRate,
    LatencyP99,
    /// Shadow runs agree with the control's actions.
    Agreement,
    /// Realized returns of the candidate against the control.
    Outcomes,
    /// The stage's candidate is getting traffic (the server's check).
    Traffic,
    /// Every replica's share is in the measurement (the server's check).
    Fleet,
    /// The backtest stage could run (the server's check).
    Backtest,
    /// Backtest: the candidate placed enough orders.
    BacktestOrders,
    /// Backtest: the candidate's hit rate against the champion's.
    BacktestHitRate,
    /// Backtest: the candidate's Sharpe ratio against the champion's.
    BacktestSharpe,
    /// Backtest: the candidate's maximum drawdown against the champion's.
    BacktestDrawdown,
}

impl GateName {
    pub fn as_str(self) -> &'static str {
        match self {
            GateName::Duration => "duration",
            GateName::MinDecisions => "min_decisions",
            GateName::ErrorRate => "error_rate",
            GateName::LatencyP99 => "latency_p99",
            GateName::Agreement => "agreement",
            GateName::Outcomes => "outcomes",
            GateName::Traffic => "traffic",
            GateName::Fleet => "fleet",
            GateName::Backtest => "backtest",
            GateName::BacktestOrders => "backtest_orders",
            GateName::BacktestHitRate => "backtest_hit_rate",
            GateName::BacktestSharpe => "backtest_sharpe",
            GateName::BacktestDrawdown => "backtest_drawdown",
        }
    }
}

impl std::fmt::Display for GateName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every check of a stage, and the overall verdict: fail if any fails, pass if all pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GateReport {
    pub stage: Stage,
    pub verdict: Verdict,
    pub checks: Vec<GateCheck>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub inputs: GateInputs,
    /// The backtest stage's figures (that stage only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backtest: Option<Box<BacktestSummary>>,
}

impl GateReport {
    /// The failed checks, for an audit reason.
    pub fn failures(&self) -> String {
        self.checks
            .iter()
            .filter(|c| c.verdict == Verdict::Fail)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn check(name: GateName, verdict: Verdict, detail: String) -> GateCheck {
    GateCheck {
        name,
        verdict,
        detail,
    }
}

/// The gates of one stage over its measurements.
pub fn evaluate_gates(
    stage: Stage,
    gates: &Gates,
    entered: OffsetDateTime,
    m: &GateInputs,
    now: OffsetDateTime,
) -> GateReport {
    let elapsed = Duration::try_from((now - entered).max(time::Duration::ZERO)).unwrap_or_default();
    let needed = gates.durations.of(stage);
    let enough = m.candidate_decisions >= gates.min_decisions;
    let mut checks = vec![
        check(
            GateName::Duration,
            if elapsed >= needed {
                Verdict::Pass
            } else {
                Verdict::Wait
            },
            format!("{elapsed:.1?} of {needed:?}"),
        ),
        check(
            GateName::MinDecisions,
            if enough { Verdict::Pass } else { Verdict::Wait },
            format!("{} of {}", m.candidate_decisions, gates.min_decisions),
        ),
        error_rate_check(gates, m, enough),
        latency_check(stage, gates, m, enough),
    ];
    if stage == Stage::Shadow {
        checks.push(agreement_check(gates, m, enough));
    }
    if gates.outcome_alpha > 0.0 {
        checks.push(outcomes_check(gates, m));
    }
    let verdict = if checks.iter().any(|c| c.verdict == Verdict::Fail) {
        Verdict::Fail
    } else if checks.iter().all(|c| c.verdict == Verdict::Pass) {
        Verdict::Pass
    } else {
        Verdict::Wait
    };
    GateReport {
        stage,
        verdict,
        checks,
        at: now,
        inputs: *m,
        backtest: None,
    }
}

/// Quality checks judge only with enough data, but fail at once when they can.
fn judge(bad: bool, enough: bool) -> Verdict {
    match (bad, enough) {
        (true, true) => Verdict::Fail,
        (false, true) => Verdict::Pass,
        (_, false) => Verdict::Wait,
    }
}

fn error_rate_check(gates: &Gates, m: &GateInputs, enough: bool) -> GateCheck {
    // Decisions are those returned to clients; errors are requests that got none.
    let attempts = m.candidate_decisions + m.candidate_errors;
    let error_rate = if attempts == 0 {
        0.0
    } else {
        m.candidate_errors as f64 / attempts as f64
    };
    check(
        GateName::ErrorRate,
        judge(error_rate > gates.max_error_rate, enough),
        format!("{error_rate:.5} (max {})", gates.max_error_rate),
    )
}

fn latency_check(stage: Stage, gates: &Gates, m: &GateInputs, enough: bool) -> GateCheck {
    match (m.control_latency_p99_us, m.candidate_latency_p99_us) {
        // In shadow the candidate serves no request: its latency is judged from canary on.
        _ if stage == Stage::Shadow => check(
            GateName::LatencyP99,
            Verdict::Pass,
            "not judged in shadow (the candidate serves no request); judged from canary on".into(),
        ),
        (Some(c), Some(t)) => {
            let limit = c * (1.0 + gates.max_latency_increase);
            check(
                GateName::LatencyP99,
                judge(t > limit, enough),
                format!("candidate {t:.1} µs, control {c:.1} µs, limit {limit:.1} µs"),
            )
        }
        _ => check(
            GateName::LatencyP99,
            Verdict::Wait,
            "no latency data on one arm yet".into(),
        ),
    }
}

fn agreement_check(gates: &Gates, m: &GateInputs, enough: bool) -> GateCheck {
    if m.shadow_compared == 0 {
        return check(
            GateName::Agreement,
            Verdict::Wait,
            "no shadow comparisons yet".into(),
        );
    }
    let a = m.shadow_agreed as f64 / m.shadow_compared as f64;
    check(
        GateName::Agreement,
        judge(a < gates.min_agreement, enough),
        format!("{a:.4} (min {})", gates.min_agreement),
    )
}

/// Outcomes arrive late or not at all (HOLD-only arms): they never block promotion, and fail
/// only a candidate significantly worse than control.
fn outcomes_check(gates: &Gates, m: &GateInputs) -> GateCheck {
    let have =
        m.control_outcomes >= gates.min_outcomes && m.candidate_outcomes >= gates.min_outcomes;
    let means = (
        m.control_mean_return,
        m.candidate_mean_return,
        m.welch_p_value,
    );
    let verdict = match (have, means) {
        (true, (Some(c), Some(t), Some(p))) if t < c && p < gates.outcome_alpha => Verdict::Fail,
        _ => Verdict::Pass,
    };
    let detail = match means {
        (Some(c), Some(t), Some(p)) => format!(
            "mean return candidate {t:.6} vs control {c:.6}, p = {p:.4} (alpha {})",
            gates.outcome_alpha
        ),
        _ => format!(
            "{} / {} outcomes (need {} per arm)",
            m.candidate_outcomes, m.control_outcomes, gates.min_outcomes
        ),
    };
    check(GateName::Outcomes, verdict, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn champion() -> BTreeMap<Role, String> {
        Role::ALL.iter().map(|r| (*r, "1".to_owned())).collect()
    }

    fn rollout() -> Rollout {
        RolloutSpec {
            rollout_id: Some("ro-1".into()),
            candidate: [(Role::BullSpecialist, "2".to_owned())].into(),
            auto_promote: true,
            gates: None,
            backtest: None,
            bucketing: Bucketing::default(),
            salt: None,
            description: None,
        }
        .into_rollout(&champion(), "alice", datetime!(2025-01-01 0:00 UTC))
        .unwrap()
    }

    #[test]
    fn candidate_is_frozen_against_the_champion() {
        let r = rollout();
        assert_eq!(r.candidate[&Role::BullSpecialist], "2");
        assert_eq!(r.candidate[&Role::RegimeDetector], "1");
        assert_eq!(r.baseline, champion());
        assert_eq!(r.stage, Stage::Shadow);
        let same = RolloutSpec {
            candidate: [(Role::BullSpecialist, "1".to_owned())].into(),
            ..serde_json::from_value(serde_json::json!({"candidate": {}})).unwrap()
        }
        .into_rollout(&champion(), "a", datetime!(2025-01-01 0:00 UTC));
        assert_eq!(same.unwrap_err().field, "candidate");
    }

    #[test]
    fn walks_every_stage_then_refuses() {
        let mut r = rollout();
        let now = datetime!(2025-01-01 1:00 UTC);
        let stages: Vec<Stage> = (0..4)
            .map(|_| r.promote("bob", "ok", now).unwrap())
            .collect();
        assert_eq!(
            stages,
            [Stage::Canary, Stage::Partial, Stage::Full, Stage::Completed]
        );
        assert!(r.promote("bob", "again", now).is_err());
        assert!(r.roll_back("bob", "late", now).is_err());
        assert_eq!(r.history.len(), 5);
        assert_eq!(r.history[4].from, Some(Stage::Full));
        assert_eq!(r.history[4].actor, "bob");
    }

    #[test]
    fn pause_then_promote_resumes() {
        let mut r = rollout();
        let now = datetime!(2025-01-01 1:00 UTC);
        r.pause("a", "look", now).unwrap();
        assert!(r.pause("a", "again", now).is_err());
        assert!(r.paused);
        r.promote("a", "go", now).unwrap();
        assert!(!r.paused);
        r.roll_back("a", "bad", now).unwrap();
        assert_eq!(r.stage, Stage::RolledBack);
        assert_eq!(Stage::RolledBack.candidate_share(), 0.0);
    }

    fn inputs() -> GateInputs {
        GateInputs {
            candidate_decisions: 5000,
            candidate_errors: 0,
            control_latency_p99_us: Some(30.0),
            candidate_latency_p99_us: Some(32.0),
            shadow_compared: 5000,
            shadow_agreed: 4000,
            control_outcomes: 0,
            candidate_outcomes: 0,
            control_mean_return: None,
            candidate_mean_return: None,
            welch_p_value: None,
        }
    }

    #[test]
    fn latency_is_judged_once_the_candidate_serves() {
        let mut r = rollout();
        let slow = GateInputs {
            candidate_latency_p99_us: Some(46.0),
            ..inputs()
        };
        let at = datetime!(2025-01-01 0:01 UTC);
        assert_ne!(
            r.evaluate(&slow, at).unwrap().verdict,
            Verdict::Fail,
            "shadow"
        );
        r.promote("a", "go", at).unwrap();
        let report = r.evaluate(&slow, at).unwrap();
        assert_eq!(report.verdict, Verdict::Fail);
        assert!(
            report.failures().starts_with("latency_p99"),
            "{}",
            report.failures()
        );
    }

    #[test]
    fn gates_wait_then_pass() {
        let r = rollout();
        let early = r
            .evaluate(&inputs(), datetime!(2025-01-01 0:30 UTC))
            .unwrap();
        assert_eq!(early.verdict, Verdict::Wait);
        let later = r
            .evaluate(&inputs(), datetime!(2025-01-01 1:00 UTC))
            .unwrap();
        assert_eq!(later.verdict, Verdict::Pass, "{later:?}");
        let few = GateInputs {
            candidate_decisions: 10,
            ..inputs()
        };
        assert_eq!(
            r.evaluate(&few, datetime!(2025-01-01 2:00 UTC))
                .unwrap()
                .verdict,
            Verdict::Wait
        );
    }

    #[test]
    fn each_quality_gate_fails_on_its_own() {
        let r = rollout();
        let at = datetime!(2025-01-01 0:01 UTC);
        let fail = |m: GateInputs, name: &str| {
            let report = r.evaluate(&m, at).unwrap();
            assert_eq!(report.verdict, Verdict::Fail, "{name}: {report:?}");
            assert!(report.failures().starts_with(name), "{}", report.failures());
        };

        fail(
            GateInputs {
                candidate_errors: 50,
                ..inputs()
            },
            "error_rate",
        );
        fail(
            GateInputs {
                shadow_agreed: 2000,
                ..inputs()
            },
            "agreement",
        );
        fail(
            GateInputs {
                control_outcomes: 500,
                candidate_outcomes: 500,
                control_mean_return: Some(0.001),
                candidate_mean_return: Some(-0.001),
                welch_p_value: Some(0.001),
                ..inputs()
            },
            "outcomes",
        );
        // A worse mean that is not significant does not fail.
        let report = r
            .evaluate(
                &GateInputs {
                    control_outcomes: 500,
                    candidate_outcomes: 500,
                    control_mean_return: Some(0.001),
                    candidate_mean_return: Some(0.0009),
                    welch_p_value: Some(0.6),
                    ..inputs()
                },
                at,
            )
            .unwrap();
        assert_ne!(report.verdict, Verdict::Fail);
    }
}
