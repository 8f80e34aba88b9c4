//! Configuration: embedded defaults, an optional TOML file, then environment overrides.
//!
//! Precedence (later wins): built-in defaults → `--config FILE` → `TRADESERVE_<SECTION>__<KEY>`
//! variables (e.g. `TRADESERVE_SERVER__REQUEST_DEADLINE=25ms`, `TRADESERVE_RISK__MAX_DAILY_ORDERS=500`)
//! → `TRADESERVE_LISTEN` → `--listen` (numbers in the environment may use exponent notation,
//! `1e12`: [`numeric_env`]). Unknown keys are errors, and [`Config::validate`] checks
//! every value before a port is bound, so a bad config fails at start with a message that
//! names the key.
//!
//! Each section's type and its checks are in its own file ([`server`], [`models`],
//! [`features`], [`events`], [`control`]) or beside the adapter that reads it (`[risk]` and
//! `[sizing]` in core, `[ledger]` in [`crate::ledger`], `[auth]`, `[telemetry]`,
//! `[idempotency]` in core, `[explain]` in core); this file assembles them and checks what
//! spans sections.

mod control;
mod drift;
mod events;
mod features;
mod models;
mod numeric_env;
mod paths;
mod server;

pub use control::{ControlConfig, StoreKind};
pub use drift::DriftConfig;
pub use events::{EventsConfig, KafkaConfig, SinkKind};
pub use features::{FeatureSourceKind, FeaturesConfig, LiveFeaturesConfig};
pub use models::{MlflowConfig, ModelSourceKind, ModelsConfig, RoleOverride};
pub use paths::{require_path, resolve_path};
pub use server::{LogFormat, ServerConfig};

use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use tradeserve_core::error::InvalidSetting;
use tradeserve_core::risk::RiskLimits;
use tradeserve_core::sizing::SizingPolicy;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub models: ModelsConfig,
    pub features: FeaturesConfig,
    pub events: EventsConfig,
    pub risk: RiskLimits,
    pub sizing: SizingPolicy,
    pub control: ControlConfig,
    /// Explanations (`explain: true`): permutations sampled and their seed.
    pub explain: tradeserve_core::explain::ExplainConfig,
    /// API keys, roles and quotas; none: authentication off (loopback only, unless
    /// `auth.allow_insecure`).
    pub auth: tradeserve_auth::config::AuthConfig,
    /// Where risk positions and daily order counts are kept: this replica, or Redis.
    pub ledger: crate::ledger::LedgerConfig,
    /// The access log and trace export.
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// How long a decision is kept under its idempotency key, and how many keys a replica
    /// holds in memory.
    pub idempotency: tradeserve_core::idempotency::IdempotencyConfig,
    /// The drift monitor: its window and the backtest its expected mix comes from.
    pub drift: DriftConfig,
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Parse(String),
    #[error("configuration: {0}")]
    Invalid(InvalidSetting),
}

impl Config {
    /// Defaults, then `file`, then the environment, then `listen`.
    pub fn load(file: Option<&Path>, listen: Option<&str>) -> Result<Config, ConfigError> {
        misspelled_env(std::env::vars().map(|(k, _)| k))?;
        let env = Env::prefixed("TRADESERVE_")
            .filter(|k| k.as_str().contains("__"))
            .split("__");
        Self::load_from(file, listen, env, std::env::var("TRADESERVE_LISTEN").ok())
    }

    fn load_from(
        file: Option<&Path>,
        listen: Option<&str>,
        env: Env,
        listen_env: Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::Parse(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        fig = fig.merge(numeric_env::NumericEnv(env));
        if let Some(v) = listen_env {
            fig = fig.merge(("server.listen", v));
        }
        if let Some(v) = listen {
            fig = fig.merge(("server.listen", v));
        }
        let config: Config = fig
            .extract()
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Check every value; the message names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m.into()));
        self.server.validate().map_err(ConfigError::Invalid)?;
        self.auth.validate().map_err(ConfigError::Invalid)?;
        if let Ok(addr) = self.server.listen.parse::<SocketAddr>() {
            tradeserve_auth::config::check_exposure(&self.auth, addr)
                .map_err(ConfigError::Invalid)?;
        }
        if !(self.features.replay_speed.is_finite() && self.features.replay_speed >= 0.0) {
            return invalid("features.replay_speed must be a finite number >= 0".into());
        }
        self.features
            .live
            .validate()
            .map_err(ConfigError::Invalid)?;
        if self.events.queue_capacity == 0 {
            return invalid("events.queue_capacity must be at least 1".into());
        }
        if self.events.sink != SinkKind::AuditLog {
            self.events.kafka.validate().map_err(ConfigError::Invalid)?;
        }
        if self.events.audit_chain {
            self.events.chain_key().map_err(ConfigError::Invalid)?;
        }
        if self.events.audit_rotate_bytes < 4096 {
            return invalid("events.audit_rotate_bytes must be at least 4096".into());
        }
        self.risk.validate().map_err(ConfigError::Invalid)?;
        self.ledger.validate().map_err(ConfigError::Invalid)?;
        self.check_books_survive()?;
        self.idempotency.validate().map_err(ConfigError::Invalid)?;
        self.drift.validate().map_err(ConfigError::Invalid)?;
        self.telemetry.validate().map_err(ConfigError::Invalid)?;
        self.control.validate().map_err(ConfigError::Invalid)?;
        if !(1..=256).contains(&self.explain.permutations) {
            return invalid("explain.permutations must be between 1 and 256".into());
        }
        self.sizing.validate().map_err(ConfigError::Invalid)?;
        if self.models.source == ModelSourceKind::Mlflow {
            self.models
                .mlflow
                .validate()
                .map_err(ConfigError::Invalid)?;
        }
        self.models
            .validate_backends()
            .map_err(ConfigError::Invalid)?;
        for role in tradeserve_core::Role::ALL {
            if self.models.versions.get(role).trim().is_empty() {
                return invalid(format!("models.versions.{role} must not be empty"));
            }
        }
        Ok(())
    }
}

impl Config {
    /// The in-process risk books are rebuilt from the audit log at a restart: without one
    /// (Kafka alone) they would start flat, so that needs the shared ledger.
    fn check_books_survive(&self) -> Result<(), ConfigError> {
        if self.events.sink == SinkKind::Kafka
            && self.ledger.store == crate::ledger::LedgerStore::Memory
        {
            return Err(ConfigError::Invalid(
                "events.sink = \"kafka\" keeps no local record to rebuild this replica's risk \
                 books from at a restart (they would start flat): set events.sink = \"both\", \
                 or ledger.store = \"redis\""
                    .into(),
            ));
        }
        Ok(())
    }
}

/// The sections a `TRADESERVE_<SECTION>__<KEY>` variable can name: [`Config`]'s fields, read
/// from the type itself so a new section is never missed.
fn sections() -> Vec<String> {
    match serde_json::to_value(Config::default()) {
        Ok(serde_json::Value::Object(fields)) => fields.keys().map(|k| k.to_uppercase()).collect(),
        _ => Vec::new(),
    }
}

/// Refuse `TRADESERVE_SERVER_REQUEST_DEADLINE` and the like: a section and a key joined by
/// one underscore would otherwise be ignored without a word.
fn misspelled_env(names: impl Iterator<Item = String>) -> Result<(), ConfigError> {
    let sections = sections();
    for name in names {
        let Some(rest) = name.strip_prefix("TRADESERVE_") else {
            continue;
        };
        if rest.contains("__") {
            continue;
        }
        if let Some(section) = sections.iter().find(|s| rest.starts_with(&format!("{s}_"))) {
            let key = &rest[section.len() + 1..];
            return Err(ConfigError::Invalid(format!(
                "environment variable {name} is not read: a section and its key are joined by two underscores (TRADESERVE_{section}__{key})"
            ).into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
