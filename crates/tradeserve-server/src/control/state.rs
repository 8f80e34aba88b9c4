//! The control state: every experiment and rollout, the champion override and the last kill
//! switch, as one serializable value with a revision. Commands change it as pure steps that
//! return the audit events to publish once the new revision is stored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tradeserve_core::event::{ControlEvent, Subject};
use tradeserve_core::experiment::{
    Experiment, ExperimentSpec, ExperimentStatus, ExperimentUpdate, InvalidField,
};
use tradeserve_core::rollout::{Conflict, GateReport, Rollout, RolloutSpec, Stage, Verdict};
use tradeserve_core::types::Role;

/// Finished experiments and rollouts kept for their reports.
const KEEP_FINISHED: usize = 50;

/// The last use of the kill switch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KillRecord {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: String,
    pub reason: String,
    pub experiments_stopped: usize,
    pub rollouts_rolled_back: usize,
}

/// Everything the control plane stores, shared by every replica.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ControlState {
    /// Incremented by every write; writes are compare-and-swap on it.
    pub revision: u64,
    pub experiments: Vec<Experiment>,
    pub rollouts: Vec<Rollout>,
    /// Champion versions set by a completed rollout (bundled models; with MLflow the alias
    /// moves instead and this stays `None`).
    #[serde(default)]
    pub champion: Option<BTreeMap<Role, String>>,
    #[serde(default)]
    pub kill_switch: Option<KillRecord>,
}

/// Who asked and why (recorded on every change).
#[derive(Debug, Clone, PartialEq)]
pub struct Actor {
    pub who: String,
    pub reason: String,
}

/// A change to the control state.
#[derive(Debug, Clone)]
pub enum Command {
    CreateExperiment(ExperimentSpec),
    UpdateExperiment(String, ExperimentUpdate),
    StopExperiment(String),
    CreateRollout(RolloutSpec),
    Promote(String),
    Pause(String),
    RollBack(String),
    /// Apply a gate verdict, if the rollout is still in the stage it judged.
    Gate(String, GateReport),
    KillSwitch,
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    #[error("no {kind} {id}")]
    NotFound { kind: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
}

impl From<Conflict> for CommandError {
    fn from(c: Conflict) -> CommandError {
        CommandError::Conflict(c.to_string())
    }
}

fn detail<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

fn stage_str(s: Stage) -> Option<String> {
    Some(s.as_str().to_owned())
}

fn status_str(s: ExperimentStatus) -> Option<String> {
    Some(
        match s {
            ExperimentStatus::Running => "running",
            ExperimentStatus::Stopped => "stopped",
        }
        .to_owned(),
    )
}

impl ControlState {
    pub fn running_experiment(&self) -> Option<&Experiment> {
        self.experiments.iter().find(|e| e.is_running())
    }

    pub fn active_rollout(&self) -> Option<&Rollout> {
        self.rollouts.iter().find(|r| r.stage.is_active())
    }

    pub fn experiment(&self, id: &str) -> Option<&Experiment> {
        self.experiments.iter().find(|e| e.experiment_id == id)
    }

    pub fn rollout(&self, id: &str) -> Option<&Rollout> {
        self.rollouts.iter().find(|r| r.rollout_id == id)
    }

    fn experiment_mut(&mut self, id: &str) -> Result<&mut Experiment, CommandError> {
        self.experiments
            .iter_mut()
            .find(|e| e.experiment_id == id)
            .ok_or_else(|| CommandError::NotFound {
                kind: "experiment",
                id: id.to_owned(),
            })
    }

    fn rollout_mut(&mut self, id: &str) -> Result<&mut Rollout, CommandError> {
        self.rollouts
            .iter_mut()
            .find(|r| r.rollout_id == id)
            .ok_or_else(|| CommandError::NotFound {
                kind: "rollout",
                id: id.to_owned(),
            })
    }

    /// Apply one command; on success the revision is bumped and the audit events returned.
    /// `champion` is what serves now (the base of a new rollout's candidate).
    pub fn apply(
        &mut self,
        command: Command,
        actor: &Actor,
        champion: &BTreeMap<Role, String>,
        now: OffsetDateTime,
    ) -> Result<Vec<ControlEvent>, CommandError> {
        let who = actor.who.as_str();
        let why = actor.reason.as_str();
        let mut events = Vec::new();
        match command {
            Command::CreateExperiment(spec) => {
                let e = spec.into_experiment(now)?;
                if self.experiment(&e.experiment_id).is_some() {
                    return Err(CommandError::Conflict(format!(
                        "experiment {} exists already",
                        e.experiment_id
                    )));
                }
                if let Some(running) = self.running_experiment() {
                    return Err(CommandError::Conflict(format!(
                        "experiment {} is running: one experiment at a time (stop it first)",
                        running.experiment_id
                    )));
                }
                events.push(ControlEvent::new(
                    Subject::Experiment,
                    &e.experiment_id,
                    "created",
                    None,
                    status_str(e.status),
                    who,
                    why,
                    detail(&e),
                ));
                self.experiments.push(e);
            }
            Command::UpdateExperiment(id, update) => {
                let e = self.experiment_mut(&id)?;
                if !e.is_running() {
                    return Err(CommandError::Conflict(format!(
                        "experiment {id} is stopped"
                    )));
                }
                e.update(update, now)?;
                events.push(ControlEvent::new(
                    Subject::Experiment,
                    &id,
                    "updated",
                    status_str(e.status),
                    status_str(e.status),
                    who,
                    why,
                    detail(&*e),
                ));
            }
            Command::StopExperiment(id) => {
                let e = self.experiment_mut(&id)?;
                if !e.is_running() {
                    return Err(CommandError::Conflict(format!(
                        "experiment {id} is stopped already"
                    )));
                }
                stop(e, why, now);
                events.push(ControlEvent::new(
                    Subject::Experiment,
                    &id,
                    "stopped",
                    status_str(ExperimentStatus::Running),
                    status_str(ExperimentStatus::Stopped),
                    who,
                    why,
                    detail(&*e),
                ));
            }
            Command::CreateRollout(spec) => {
                let r = spec.into_rollout(champion, who, now)?;
                if self.rollout(&r.rollout_id).is_some() {
                    return Err(CommandError::Conflict(format!(
                        "rollout {} exists already",
                        r.rollout_id
                    )));
                }
                if let Some(active) = self.active_rollout() {
                    return Err(CommandError::Conflict(format!(
                        "rollout {} is active: one rollout at a time",
                        active.rollout_id
                    )));
                }
                events.push(ControlEvent::new(
                    Subject::Rollout,
                    &r.rollout_id,
                    "created",
                    None,
                    stage_str(r.stage),
                    who,
                    why,
                    detail(&r),
                ));
                self.rollouts.push(r);
            }
            Command::Promote(id) => {
                let r = self.rollout_mut(&id)?;
                let from = r.stage;
                let to = r.promote(who, why, now)?;
                let completed = to == Stage::Completed;
                let candidate = r.candidate.clone();
                events.push(ControlEvent::new(
                    Subject::Rollout,
                    &id,
                    if completed { "completed" } else { "promoted" },
                    stage_str(from),
                    stage_str(to),
                    who,
                    why,
                    detail(&*r),
                ));
                if completed {
                    self.champion = Some(candidate);
                }
            }
            Command::Pause(id) => {
                let r = self.rollout_mut(&id)?;
                r.pause(who, why, now)?;
                events.push(ControlEvent::new(
                    Subject::Rollout,
                    &id,
                    "paused",
                    stage_str(r.stage),
                    stage_str(r.stage),
                    who,
                    why,
                    detail(&*r),
                ));
            }
            Command::RollBack(id) => {
                let r = self.rollout_mut(&id)?;
                let from = r.stage;
                r.roll_back(who, why, now)?;
                events.push(ControlEvent::new(
                    Subject::Rollout,
                    &id,
                    "rolled_back",
                    stage_str(from),
                    stage_str(Stage::RolledBack),
                    who,
                    why,
                    detail(&*r),
                ));
            }
            Command::Gate(id, report) => {
                let r = self.rollout_mut(&id)?;
                if r.stage != report.stage {
                    return Err(CommandError::Conflict(format!(
                        "rollout {id} left stage {} before its gate applied",
                        report.stage.as_str()
                    )));
                }
                let reason = match report.verdict {
                    Verdict::Fail => format!("gate failed: {}", report.failures()),
                    Verdict::Pass => "gate passed".to_owned(),
                    Verdict::Wait => {
                        return Err(CommandError::Conflict("gate is still waiting".into()));
                    }
                };
                let gate = Actor {
                    who: actor.who.clone(),
                    reason,
                };
                let command = match report.verdict {
                    Verdict::Fail => Command::RollBack(id),
                    _ => {
                        if r.paused || !r.auto_promote {
                            return Err(CommandError::Conflict(
                                "gate passed; waiting for a manual promote".into(),
                            ));
                        }
                        Command::Promote(id)
                    }
                };
                let mut events = self.apply(command, &gate, champion, now)?;
                if let Some(e) = events.first_mut()
                    && let serde_json::Value::Object(map) = &mut e.detail
                {
                    map.insert("gate".into(), detail(&report));
                }
                return Ok(events);
            }
            Command::KillSwitch => {
                let mut stopped = 0;
                for e in self.experiments.iter_mut().filter(|e| e.is_running()) {
                    stop(e, why, now);
                    stopped += 1;
                    events.push(ControlEvent::new(
                        Subject::Experiment,
                        &e.experiment_id,
                        "stopped",
                        status_str(ExperimentStatus::Running),
                        status_str(ExperimentStatus::Stopped),
                        who,
                        &format!("kill switch: {why}"),
                        detail(&*e),
                    ));
                }
                let mut rolled = 0;
                for r in self.rollouts.iter_mut().filter(|r| r.stage.is_active()) {
                    let from = r.stage;
                    r.roll_back(who, &format!("kill switch: {why}"), now)?;
                    rolled += 1;
                    events.push(ControlEvent::new(
                        Subject::Rollout,
                        &r.rollout_id,
                        "rolled_back",
                        stage_str(from),
                        stage_str(Stage::RolledBack),
                        who,
                        &format!("kill switch: {why}"),
                        detail(&*r),
                    ));
                }
                let record = KillRecord {
                    at: now,
                    actor: who.to_owned(),
                    reason: why.to_owned(),
                    experiments_stopped: stopped,
                    rollouts_rolled_back: rolled,
                };
                events.push(ControlEvent::new(
                    Subject::KillSwitch,
                    "kill_switch",
                    "activated",
                    None,
                    None,
                    who,
                    why,
                    detail(&record),
                ));
                self.kill_switch = Some(record);
            }
        }
        self.prune();
        self.revision += 1;
        Ok(events)
    }

    /// Drop the oldest finished records beyond [`KEEP_FINISHED`].
    fn prune(&mut self) {
        let finished = self.experiments.iter().filter(|e| !e.is_running()).count();
        let mut drop = finished.saturating_sub(KEEP_FINISHED);
        self.experiments.retain(|e| {
            let gone = drop > 0 && !e.is_running();
            drop -= usize::from(gone);
            !gone
        });
        let finished = self
            .rollouts
            .iter()
            .filter(|r| !r.stage.is_active())
            .count();
        let mut drop = finished.saturating_sub(KEEP_FINISHED);
        self.rollouts.retain(|r| {
            let gone = drop > 0 && !r.stage.is_active();
            drop -= usize::from(gone);
            !gone
        });
    }
}

fn stop(e: &mut Experiment, why: &str, now: OffsetDateTime) {
    e.status = ExperimentStatus::Stopped;
    e.stopped_at = Some(now);
    e.stop_reason = Some(why.to_owned());
    e.updated_at = now;
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use tradeserve_core::rollout::{GateInputs, Gates, evaluate_gates};

    fn champion() -> BTreeMap<Role, String> {
        Role::ALL.iter().map(|r| (*r, "1".to_owned())).collect()
    }

    fn actor() -> Actor {
        Actor {
            who: "alice".into(),
            reason: "test".into(),
        }
    }

    fn exp(id: &str) -> Command {
        Command::CreateExperiment(
            serde_json::from_value(serde_json::json!({
                "experiment_id": id, "role": "bull_specialist", "control_model_version": "1",
                "treatment_model_version": "2", "traffic_split": 0.5
            }))
            .unwrap(),
        )
    }

    fn ro(id: &str) -> Command {
        Command::CreateRollout(
            serde_json::from_value(serde_json::json!({
                "rollout_id": id, "candidate": {"bull_specialist": "2"}
            }))
            .unwrap(),
        )
    }

    const NOW: OffsetDateTime = datetime!(2025-01-01 0:00 UTC);

    #[test]
    fn one_running_experiment_and_revisions() {
        let mut s = ControlState::default();
        let ev = s.apply(exp("a"), &actor(), &champion(), NOW).unwrap();
        assert_eq!(s.revision, 1);
        assert_eq!(ev[0].action, "created");
        assert!(matches!(
            s.apply(exp("b"), &actor(), &champion(), NOW),
            Err(CommandError::Conflict(_))
        ));
        assert!(matches!(
            s.apply(exp("a"), &actor(), &champion(), NOW),
            Err(CommandError::Conflict(_))
        ));
        assert_eq!(
            s.revision, 1,
            "a refused command does not bump the revision"
        );
        s.apply(
            Command::StopExperiment("a".into()),
            &actor(),
            &champion(),
            NOW,
        )
        .unwrap();
        s.apply(exp("b"), &actor(), &champion(), NOW).unwrap();
        assert_eq!(s.running_experiment().unwrap().experiment_id, "b");
        assert!(matches!(
            s.apply(
                Command::StopExperiment("zz".into()),
                &actor(),
                &champion(),
                NOW
            ),
            Err(CommandError::NotFound { .. })
        ));
    }

    #[test]
    fn completing_a_rollout_sets_the_champion() {
        let mut s = ControlState::default();
        s.apply(ro("r"), &actor(), &champion(), NOW).unwrap();
        assert!(matches!(
            s.apply(ro("r2"), &actor(), &champion(), NOW),
            Err(CommandError::Conflict(_))
        ));
        for _ in 0..3 {
            s.apply(Command::Promote("r".into()), &actor(), &champion(), NOW)
                .unwrap();
        }
        assert!(s.champion.is_none());
        let ev = s
            .apply(Command::Promote("r".into()), &actor(), &champion(), NOW)
            .unwrap();
        assert_eq!(ev[0].action, "completed");
        assert_eq!(s.champion.as_ref().unwrap()[&Role::BullSpecialist], "2");
        assert!(s.active_rollout().is_none());
    }

    #[test]
    fn kill_switch_stops_everything_and_is_audited() {
        let mut s = ControlState::default();
        s.apply(exp("a"), &actor(), &champion(), NOW).unwrap();
        s.apply(ro("r"), &actor(), &champion(), NOW).unwrap();
        let ev = s
            .apply(Command::KillSwitch, &actor(), &champion(), NOW)
            .unwrap();
        assert_eq!(ev.len(), 3);
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
        s.apply(ro("r"), &actor(), &champion(), NOW).unwrap();
        let failing = GateInputs {
            candidate_decisions: 5000,
            control_latency_p99_us: Some(10.0),
            candidate_latency_p99_us: Some(100.0),
            ..Default::default()
        };
        let canary = evaluate_gates(Stage::Canary, &Gates::default(), NOW, &failing, NOW);
        assert_eq!(canary.verdict, Verdict::Fail);
        // Still in shadow: a canary verdict does not apply.
        assert!(matches!(
            s.apply(
                Command::Gate("r".into(), canary.clone()),
                &actor(),
                &champion(),
                NOW
            ),
            Err(CommandError::Conflict(_))
        ));
        s.apply(Command::Promote("r".into()), &actor(), &champion(), NOW)
            .unwrap();
        let ev = s
            .apply(
                Command::Gate("r".into(), canary),
                &actor(),
                &champion(),
                NOW,
            )
            .unwrap();
        assert_eq!(ev[0].action, "rolled_back");
        assert!(
            ev[0].reason.starts_with("gate failed: latency_p99"),
            "{}",
            ev[0].reason
        );
        assert!(ev[0].detail.get("gate").is_some());
    }
}
