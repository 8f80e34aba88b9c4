//! The control commands as pure steps: revisions, one-at-a-time rules, the kill switch, gate
//! verdicts, and the events they produce.

use std::collections::BTreeMap;

use serde_json::json;
use time::OffsetDateTime;
use time::macros::datetime;

use crate::control::commands::{
    CreateExperiment, CreateRollout, Gate, KillSwitch, Promote, StopExperiment,
};
use crate::control::{Actor, Command, CommandError, Context, ControlAction, ControlState};
use crate::rollout::{GateInputs, Gates, Stage, Verdict, evaluate_gates};
use crate::types::Role;

const NOW: OffsetDateTime = datetime!(2025-01-01 0:00 UTC);

fn champion() -> BTreeMap<Role, String> {
    Role::ALL.iter().map(|r| (*r, "1".to_owned())).collect()
}

fn actor() -> Actor {
    Actor {
        who: "alice".into(),
        reason: "test".into(),
    }
}

/// Apply as alice at [`NOW`] with every role at version 1 serving.
fn apply(
    s: &mut ControlState,
    c: impl Into<Command>,
) -> Result<Vec<crate::control::ControlEvent>, CommandError> {
    let (a, champion) = (actor(), champion());
    s.apply(
        c.into(),
        &Context {
            actor: &a,
            champion: &champion,
            now: NOW,
        },
    )
}

fn exp(id: &str) -> CreateExperiment {
    CreateExperiment(
        serde_json::from_value(json!({
            "experiment_id": id, "role": "bull_specialist", "control_model_version": "1",
            "treatment_model_version": "2", "traffic_split": 0.5
        }))
        .unwrap(),
    )
}

fn ro(id: &str) -> CreateRollout {
    CreateRollout(
        serde_json::from_value(json!({
            "rollout_id": id, "candidate": {"bull_specialist": "2"}
        }))
        .unwrap(),
    )
}

fn promote(id: &str) -> Promote {
    Promote { id: id.into() }
}

#[test]
fn one_running_experiment_and_revisions() {
    let mut s = ControlState::default();
    let ev = apply(&mut s, exp("a")).unwrap();
    assert_eq!(s.revision, 1);
    assert_eq!(ev[0].action, ControlAction::Created);
    let before = s.clone();
    assert!(matches!(
        apply(&mut s, exp("b")),
        Err(CommandError::Conflict(_))
    ));
    assert!(matches!(
        apply(&mut s, exp("a")),
        Err(CommandError::Conflict(_))
    ));
    assert_eq!(s, before, "a refused command changes nothing");
    apply(&mut s, StopExperiment { id: "a".into() }).unwrap();
    apply(&mut s, exp("b")).unwrap();
    assert_eq!(s.running_experiment().unwrap().experiment_id, "b");
    assert!(matches!(
        apply(&mut s, StopExperiment { id: "zz".into() }),
        Err(CommandError::NotFound { .. })
    ));
}

#[test]
fn events_serialize_to_the_published_shape() {
    let mut s = ControlState::default();
    let ev = apply(&mut s, exp("a")).unwrap();
    let v = serde_json::to_value(&ev[0]).unwrap();
    assert_eq!(v["event_type"], "control_change");
    assert_eq!(v["subject"], "experiment");
    assert_eq!(v["subject_id"], "a");
    assert_eq!(v["action"], "created");
    assert_eq!(v["from"], serde_json::Value::Null);
    assert_eq!(v["to"], "running");
    assert_eq!(v["actor"], "alice");
    assert_eq!(v["timestamp"], "2025-01-01T00:00:00Z");
    assert_eq!(v["detail"]["experiment_id"], "a");
    assert_eq!(v["detail"]["traffic_split"], 0.5);
    let ev = apply(&mut s, StopExperiment { id: "a".into() }).unwrap();
    let v = serde_json::to_value(&ev[0]).unwrap();
    assert_eq!(
        (&v["from"], &v["to"]),
        (&json!("running"), &json!("stopped"))
    );
}

#[test]
fn completing_a_rollout_sets_the_champion() {
    let mut s = ControlState::default();
    apply(&mut s, ro("r")).unwrap();
    assert!(matches!(
        apply(&mut s, ro("r2")),
        Err(CommandError::Conflict(_))
    ));
    for to in ["canary", "partial", "full"] {
        let ev = apply(&mut s, promote("r")).unwrap();
        assert_eq!(ev[0].action, ControlAction::Promoted);
        assert_eq!(ev[0].to.map(|t| t.as_str()), Some(to));
        assert!(ev[0].completed_rollout().is_none());
    }
    assert!(s.champion.is_none());
    let ev = apply(&mut s, promote("r")).unwrap();
    assert_eq!(ev[0].action, ControlAction::Completed);
    assert_eq!(
        ev[0].completed_rollout().unwrap().candidate[&Role::BullSpecialist],
        "2"
    );
    assert_eq!(s.champion.as_ref().unwrap()[&Role::BullSpecialist], "2");
    assert!(s.active_rollout().is_none());
    assert_eq!(s.revision, 5);
}

#[test]
fn kill_switch_stops_everything_and_is_audited() {
    let mut s = ControlState::default();
    apply(&mut s, exp("a")).unwrap();
    apply(&mut s, ro("r")).unwrap();
    let ev = apply(&mut s, KillSwitch).unwrap();
    let actions: Vec<_> = ev.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        [
            ControlAction::Stopped,
            ControlAction::RolledBack,
            ControlAction::Activated
        ]
    );
    assert_eq!(ev[0].reason, "kill switch: test");
    assert_eq!(ev[2].reason, "test");
    assert_eq!(ev[2].subject_id, "kill_switch");
    assert!(s.running_experiment().is_none());
    assert!(s.active_rollout().is_none());
    assert_eq!(s.rollout("r").unwrap().stage, Stage::RolledBack);
    let k = s.kill_switch.as_ref().unwrap();
    assert_eq!((k.experiments_stopped, k.rollouts_rolled_back), (1, 1));
    assert_eq!(k.actor, "alice");
}

#[test]
fn a_gate_verdict_applies_only_to_its_stage() {
    let mut s = ControlState::default();
    apply(&mut s, ro("r")).unwrap();
    let failing = GateInputs {
        candidate_decisions: 5000,
        control_latency_p99_us: Some(10.0),
        candidate_latency_p99_us: Some(100.0),
        ..Default::default()
    };
    let canary = evaluate_gates(Stage::Canary, &Gates::default(), NOW, &failing, NOW);
    assert_eq!(canary.verdict, Verdict::Fail);
    let gate = |report| Gate {
        id: "r".into(),
        report,
    };
    // Still in shadow: a canary verdict does not apply.
    assert!(matches!(
        apply(&mut s, gate(canary.clone())),
        Err(CommandError::Conflict(_))
    ));
    apply(&mut s, promote("r")).unwrap();
    let ev = apply(&mut s, gate(canary)).unwrap();
    assert_eq!(ev[0].action, ControlAction::RolledBack);
    assert!(
        ev[0].reason.starts_with("gate failed: latency_p99"),
        "{}",
        ev[0].reason
    );
    let v = serde_json::to_value(&ev[0]).unwrap();
    assert_eq!(v["detail"]["gate"]["verdict"], "fail");
    assert_eq!(v["detail"]["stage"], "rolled_back");
}

#[test]
fn a_passing_gate_waits_for_a_manual_promote_when_paused() {
    let mut s = ControlState::default();
    apply(&mut s, ro("r")).unwrap();
    apply(&mut s, crate::control::commands::Pause { id: "r".into() }).unwrap();
    let passing = crate::rollout::GateReport {
        stage: Stage::Shadow,
        verdict: Verdict::Pass,
        ..evaluate_gates(
            Stage::Shadow,
            &Gates::default(),
            NOW,
            &GateInputs::default(),
            NOW,
        )
    };
    let refused = apply(
        &mut s,
        Gate {
            id: "r".into(),
            report: passing,
        },
    );
    assert!(
        matches!(&refused, Err(CommandError::Conflict(m)) if m.contains("manual promote")),
        "{refused:?}"
    );
    assert_eq!(s.rollout("r").unwrap().stage, Stage::Shadow);
}

/// A rollout with a backtest stage, judged with `candidate_sharpe` against a champion's 2.0.
fn backtested(
    id: &str,
    candidate_sharpe: f64,
) -> (
    ControlState,
    Result<Vec<crate::control::ControlEvent>, CommandError>,
) {
    use crate::backtest_gate::{BacktestFigures, BacktestGate, BacktestSummary, judge};
    let mut s = ControlState::default();
    let spec = serde_json::from_value(json!({
        "rollout_id": id, "candidate": {"bull_specialist": "2"},
        "backtest": {"days": 3, "max_sharpe_drop": 0.5}
    }))
    .unwrap();
    apply(&mut s, CreateRollout(spec)).unwrap();
    let r = s.rollout(id).unwrap();
    assert_eq!(r.stage, Stage::Backtest);
    assert_eq!(r.history[0].to, Stage::Backtest);
    let gate: &BacktestGate = r.backtest.as_ref().unwrap();
    assert_eq!((gate.days, gate.min_orders), (3, 100));
    let figures = |sharpe| BacktestFigures {
        orders: 500,
        hit_rate: Some(0.52),
        sharpe: Some(sharpe),
        max_drawdown: Some(-0.01),
        ..BacktestFigures::default()
    };
    let summary = BacktestSummary {
        from: None,
        to: None,
        symbols: 24,
        periods_per_year: 98_280.0,
        champion: figures(2.0),
        candidate: figures(candidate_sharpe),
    };
    let report = judge(gate, summary, NOW);
    let applied = apply(
        &mut s,
        Gate {
            id: id.into(),
            report,
        },
    );
    (s, applied)
}

#[test]
fn a_backtest_stage_moves_to_shadow_on_a_pass_and_rolls_back_on_a_failure() {
    let (s, applied) = backtested("good", 1.8);
    let events = applied.unwrap();
    let r = s.rollout("good").unwrap();
    assert_eq!(r.stage, Stage::Shadow);
    assert_eq!(r.history.last().unwrap().reason, "gate passed");
    let kept = r.backtest_report.as_ref().unwrap();
    assert_eq!(kept.verdict, Verdict::Pass);
    assert_eq!(kept.backtest.as_ref().unwrap().candidate.sharpe, Some(1.8));
    // The control event carries the report.
    let event = serde_json::to_value(&events[0]).unwrap();
    assert_eq!(event["detail"]["gate"]["stage"], "backtest");
    assert_eq!(
        event["detail"]["gate"]["backtest"]["champion"]["sharpe"],
        2.0
    );

    let (s, applied) = backtested("bad", 1.4);
    applied.unwrap();
    let r = s.rollout("bad").unwrap();
    assert_eq!(r.stage, Stage::RolledBack);
    assert!(
        r.history.last().unwrap().reason.contains("backtest_sharpe"),
        "{:?}",
        r.history
    );
    assert_eq!(r.backtest_report.as_ref().unwrap().verdict, Verdict::Fail);
    // Rolled back: no rollout is active any more.
    assert!(s.active_rollout().is_none());
}
