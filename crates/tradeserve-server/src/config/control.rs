//! `[control]`: where the control state (experiments, rollouts, halts, the kill switch) is
//! kept — a file for one replica, Redis for a fleet — and how often it and the fleet's
//! measurements are read and published.

use std::path::PathBuf;
use std::time::Duration;
use tradeserve_core::bounded::PositiveDuration;
use tradeserve_core::error::InvalidSetting;

use serde::{Deserialize, Serialize};

/// Experiments, rollouts and the kill switch: where their state lives and how often it is
/// checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// `file` (embedded default; one process) or `redis` (shared by every replica).
    pub store: StoreKind,
    /// The state file of the `file` store.
    pub file: PathBuf,
    /// `redis://[:password@]host:port/db` of the `redis` store.
    pub redis_url: String,
    /// Keys are `<prefix>:…`.
    pub redis_prefix: String,
    /// Deadline of each call to the store.
    pub store_timeout: PositiveDuration,
    /// How often the store is re-read (how fast other replicas' changes arrive).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How often the active rollout's gates are evaluated.
    #[serde(with = "humantime_serde")]
    pub gate_interval: Duration,
    /// Shadow runs that may wait; beyond this they are shed (counted, never blocking).
    pub shadow_queue: usize,
    /// Derive outcomes from the feature source (the embedded replay's next bar).
    pub derive_outcomes: bool,
    /// Recent decisions remembered for `POST /api/v1/outcomes`.
    pub outcome_window: usize,
    /// A rollout stage whose candidate gets no traffic this long is reported as starved
    /// (its gate report, `tradeserve_rollout_stage_starved`, a warning).
    #[serde(with = "humantime_serde")]
    pub stage_idle_after: Duration,
    /// With the `redis` store: how often this replica publishes its experiment and rollout
    /// measurements for the fleet's reports and gates (each sees the others' this much late).
    #[serde(with = "humantime_serde")]
    pub fleet_interval: Duration,
    /// With the `redis` store: how long a unit's published measurements are kept after its
    /// last publish (a stopped replica's share counts until then).
    #[serde(with = "humantime_serde")]
    pub fleet_ttl: Duration,
    /// With the `redis` store and posted outcomes: how long after its publish a decision's
    /// outcome can be posted to any replica (on its own replica: while in `outcome_window`).
    #[serde(with = "humantime_serde")]
    pub fleet_outcome_ttl: Duration,
    /// Operators needed to release a trading halt: 1, or 2 (a second, different operator
    /// confirms the first one's release; until then the halt stays in force).
    pub halt_release_approvals: u8,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            store: StoreKind::File,
            file: PathBuf::from("var/control/state.json"),
            redis_url: "redis://127.0.0.1:6379/0".into(),
            redis_prefix: "tradeserve".into(),
            store_timeout: PositiveDuration::millis(500),
            poll_interval: Duration::from_millis(500),
            gate_interval: Duration::from_secs(1),
            shadow_queue: 1024,
            derive_outcomes: true,
            outcome_window: 200_000,
            stage_idle_after: Duration::from_secs(60),
            fleet_interval: Duration::from_secs(1),
            fleet_ttl: Duration::from_secs(7 * 24 * 3600),
            fleet_outcome_ttl: Duration::from_secs(3600),
            halt_release_approvals: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    File,
    Redis,
}

impl ControlConfig {
    pub(super) fn validate(&self) -> Result<(), InvalidSetting> {
        if self.store == StoreKind::Redis
            && !(self.redis_url.starts_with("redis://") || self.redis_url.starts_with("rediss://"))
        {
            return Err("control.redis_url must be a redis:// or rediss:// URL".into());
        }
        if self.poll_interval < Duration::from_millis(50)
            || self.gate_interval < Duration::from_millis(50)
        {
            return Err(
                "control.poll_interval and control.gate_interval must be at least 50ms".into(),
            );
        }
        if self.fleet_interval < Duration::from_millis(50) {
            return Err("control.fleet_interval must be at least 50ms".into());
        }
        if !(1..=2).contains(&self.halt_release_approvals) {
            return Err("control.halt_release_approvals must be 1 or 2".into());
        }
        if self.fleet_ttl < Duration::from_secs(60)
            || self.fleet_outcome_ttl < Duration::from_secs(60)
        {
            return Err(
                "control.fleet_ttl and control.fleet_outcome_ttl must be at least 1m".into(),
            );
        }
        if self.shadow_queue == 0 || self.outcome_window == 0 {
            return Err(
                "control.shadow_queue and control.outcome_window must be at least 1".into(),
            );
        }
        Ok(())
    }
}
