//! `tradeserve.v1.Control`: the operator's halt, release, rollback and kill-switch calls over
//! gRPC, as the REST routes make them (role operator; the actor is the API key's id, or the
//! `x-actor` metadata without keys; a reason is the request's or the REST default).

use std::sync::Arc;

use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};
use tradeserve_auth::Access;
use tradeserve_core::control::commands::{CreateHalt, KillSwitch, ReleaseHalt, RollBack};
use tradeserve_core::halt::{Halt, HaltScope, HaltSpec};
use tradeserve_core::rollout::Rollout;
use tradeserve_core::types::Role;
use tradeserve_grpc::tradeserve::v1 as pb;
use tradeserve_grpc::tradeserve::v1::control_server::Control;

use crate::control::{Actor, Command};
use crate::error::ApiError;
use crate::metrics::Route;
use crate::routes::admit::Arrival;
use crate::routes::body::who_of;
use crate::state::AppState;

use super::{call, status};

/// The operator's control service.
pub struct ControlService {
    pub state: Arc<AppState>,
}

impl ControlService {
    /// Who asks (operator role), and why (`default` when the request gives no reason).
    async fn actor(
        &self,
        metadata: &MetadataMap,
        reason: &str,
        default: &str,
    ) -> Result<Actor, Status> {
        let caller = call::authorize(&self.state, metadata, Access::Operate).await?;
        let actor = metadata.get("x-actor").and_then(|v| v.to_str().ok());
        let reason = if reason.trim().is_empty() {
            default
        } else {
            reason
        };
        Ok(Actor {
            who: who_of(caller.as_ref(), actor),
            reason: reason.to_owned(),
        })
    }

    async fn execute(
        &self,
        command: Command,
        actor: &Actor,
    ) -> Result<Arc<crate::control::ControlState>, Status> {
        self.state
            .control
            .execute(command, actor)
            .await
            .map_err(|e| status::from_api(&ApiError::from(e)))
    }
}

/// Count a control call's answer.
fn observed<T>(
    state: &AppState,
    arrival: Arrival,
    result: Result<T, Status>,
) -> Result<Response<T>, Status> {
    call::observe(state, Route::Other, arrival, &result);
    result.map(Response::new)
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn create_halt(
        &self,
        request: Request<pb::CreateHaltRequest>,
    ) -> Result<Response<pb::Halt>, Status> {
        let arrival = Arrival::now();
        let result = async {
            let r = request.get_ref();
            let actor = self.actor(request.metadata(), &r.reason, "").await?;
            let scope = r
                .scope
                .as_ref()
                .ok_or_else(|| status::invalid("scope", "a scope is required"))?;
            let spec = HaltSpec {
                scope: scope_of(scope)?,
                reason: r.reason.clone(),
            };
            let view = self
                .execute(
                    CreateHalt {
                        spec,
                        unless_in_force: false,
                    }
                    .into(),
                    &actor,
                )
                .await?;
            let halt = view
                .halts
                .last()
                .ok_or_else(|| Status::internal("halt missing after the change"))?;
            halt_message(halt)
        }
        .await;
        observed(&self.state, arrival, result)
    }

    async fn release_halt(
        &self,
        request: Request<pb::ReleaseHaltRequest>,
    ) -> Result<Response<pb::Halt>, Status> {
        let arrival = Arrival::now();
        let result = async {
            let r = request.get_ref();
            let actor = self
                .actor(request.metadata(), &r.reason, "released")
                .await?;
            let command = ReleaseHalt {
                id: r.halt_id.clone(),
                approvals: self.state.halt_release_approvals,
            };
            let view = self.execute(command.into(), &actor).await?;
            let halt = view
                .halt(&r.halt_id)
                .ok_or_else(|| Status::internal("halt missing after the change"))?;
            halt_message(halt)
        }
        .await;
        observed(&self.state, arrival, result)
    }

    async fn roll_back_rollout(
        &self,
        request: Request<pb::RollBackRolloutRequest>,
    ) -> Result<Response<pb::Rollout>, Status> {
        let arrival = Arrival::now();
        let result = async {
            let r = request.get_ref();
            let actor = self
                .actor(request.metadata(), &r.reason, "manual rollback")
                .await?;
            let view = self
                .execute(
                    RollBack {
                        id: r.rollout_id.clone(),
                    }
                    .into(),
                    &actor,
                )
                .await?;
            let rollout = view
                .rollout(&r.rollout_id)
                .ok_or_else(|| Status::internal("rollout missing after the change"))?;
            rollout_message(rollout)
        }
        .await;
        observed(&self.state, arrival, result)
    }

    async fn kill_switch(
        &self,
        request: Request<pb::KillSwitchRequest>,
    ) -> Result<Response<pb::KillSwitchResponse>, Status> {
        let arrival = Arrival::now();
        let result = async {
            let actor = self
                .actor(request.metadata(), &request.get_ref().reason, "kill switch")
                .await?;
            let view = self.execute(KillSwitch.into(), &actor).await?;
            Ok(pb::KillSwitchResponse {
                revision: view.revision,
                persisted: !self.state.control.kill_pending(),
            })
        }
        .await;
        observed(&self.state, arrival, result)
    }
}

/// The REST body's `scope` of a message's.
fn scope_of(s: &pb::HaltScope) -> Result<HaltScope, Status> {
    Ok(match s.r#type.as_str() {
        "all" => HaltScope::All {},
        "symbol" => HaltScope::Symbol {
            symbol: s.symbol.clone(),
        },
        "desk" => HaltScope::Desk {
            key_id: s.key_id.clone(),
        },
        "model_version" => HaltScope::ModelVersion {
            role: Role::parse(&s.role)
                .ok_or_else(|| status::invalid("scope", format!("unknown role {:?}", s.role)))?,
            version: s.version.clone(),
        },
        other => {
            let kinds = HaltScope::KINDS.join(", ");
            return Err(status::invalid(
                "scope",
                format!("scope type {other:?} is not one of {kinds}"),
            ));
        }
    })
}

fn halt_message(h: &Halt) -> Result<pb::Halt, Status> {
    let json = serde_json::to_value(h).map_err(|e| Status::internal(e.to_string()))?;
    let scope = match &h.scope {
        HaltScope::All {} => pb::HaltScope {
            r#type: "all".into(),
            ..Default::default()
        },
        HaltScope::Symbol { symbol } => pb::HaltScope {
            r#type: "symbol".into(),
            symbol: symbol.clone(),
            ..Default::default()
        },
        HaltScope::Desk { key_id } => pb::HaltScope {
            r#type: "desk".into(),
            key_id: key_id.clone(),
            ..Default::default()
        },
        HaltScope::ModelVersion { role, version } => pb::HaltScope {
            r#type: "model_version".into(),
            role: role.as_str().into(),
            version: version.clone(),
            ..Default::default()
        },
    };
    Ok(pb::Halt {
        halt_id: h.halt_id.clone(),
        scope: Some(scope),
        status: json
            .get("status")
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_owned(),
        reason: h.reason.clone(),
        json: json.to_string(),
    })
}

fn rollout_message(r: &Rollout) -> Result<pb::Rollout, Status> {
    let json = serde_json::to_value(r).map_err(|e| Status::internal(e.to_string()))?;
    Ok(pb::Rollout {
        rollout_id: r.rollout_id.clone(),
        stage: r.stage.as_str().to_owned(),
        paused: r.paused,
        json: json.to_string(),
    })
}
