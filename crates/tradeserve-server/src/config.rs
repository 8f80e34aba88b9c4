//! Configuration: embedded defaults, an optional TOML file, then environment overrides.
//!
//! Precedence (later wins): built-in defaults → `--config FILE` → `TRADESERVE_<SECTION>__<KEY>`
//! variables (e.g. `TRADESERVE_SERVER__REQUEST_DEADLINE=25ms`, `TRADESERVE_RISK__MAX_DAILY_ORDERS=500`)
//! → `TRADESERVE_LISTEN` → `--listen`. Unknown keys are errors, and [`Config::validate`] checks
//! every value before a port is bound, so a bad config fails at start with a message that
//! names the key.
//!
//! Each section's type and its checks are in its own file ([`server`], [`models`],
//! [`features`], [`events`], [`control`]) or beside the adapter that reads it (`[risk]` and
//! `[sizing]` in core, `[ledger]` in [`crate::ledger`], `[auth]`, `[telemetry]`,
//! `[idempotency]` in core, `[explain]` in core); this file assembles them and checks what
//! spans sections.

mod control;
mod events;
mod features;
mod models;
mod paths;
mod server;

pub use control::{ControlConfig, StoreKind};
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
        fig = fig.merge(env);
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
mod tests {
    use super::*;
    use tradeserve_core::types::Role;

    /// An environment provider that sees nothing, so tests do not depend on the shell.
    fn load(file: Option<&Path>, listen: Option<&str>) -> Result<Config, ConfigError> {
        Config::load_from(
            file,
            listen,
            Env::prefixed("TRADESERVE_TEST_NOTHING_"),
            None,
        )
    }

    #[test]
    fn defaults_are_valid() {
        let c = load(None, None).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(
            c.server.request_deadline,
            tradeserve_core::bounded::PositiveDuration::millis(40)
        );
    }

    #[test]
    fn the_example_file_documents_exactly_the_defaults() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/tradeserve.example.toml");
        assert_eq!(load(Some(&path), None).unwrap(), Config::default());
    }

    #[test]
    fn file_and_listen_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[server]\nrequest_deadline = \"25ms\"\n[risk]\nmax_daily_orders = 7\nrestricted_symbols = [\"GME\"]\n[models.versions]\nbull_specialist = \"2\"\n",
        )
        .unwrap();
        let c = load(Some(&path), Some("127.0.0.1:0")).unwrap();
        assert_eq!(
            c.server.request_deadline,
            tradeserve_core::bounded::PositiveDuration::millis(25)
        );
        assert_eq!(c.server.listen, "127.0.0.1:0");
        assert_eq!(c.risk.max_daily_orders, 7);
        assert_eq!(c.risk.restricted_symbols, vec!["GME".to_owned()]);
        assert_eq!(c.models.versions.bull_specialist, "2");
        assert_eq!(c.models.versions.bear_specialist, "1");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API fixes the error type
    fn environment_overrides_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[server]\nmax_in_flight = 10\n")?;
            jail.set_env("TRADESERVE_SERVER__MAX_IN_FLIGHT", "20");
            jail.set_env("TRADESERVE_SIZING__LOT_SIZE", "100");
            jail.set_env("TRADESERVE_LISTEN", "127.0.0.1:9999");
            jail.set_env("TRADESERVE_RISK__RESTRICTED_SYMBOLS", r#"["GME"]"#);
            jail.set_env("TRADESERVE_MODELS__VERSIONS__BULL_SPECIALIST", "2");
            jail.set_env("TRADESERVE_SERVER__REQUEST_DEADLINE", "25ms");
            jail.set_env("TRADESERVE_MODELS__BACKENDS__BULL_SPECIALIST", "torchserve");
            jail.set_env(
                "TRADESERVE_MODELS__BACKENDS__VERSIONS__BULL_SPECIALIST__1",
                "in_process",
            );
            let c = Config::load(Some(Path::new("c.toml")), None).map_err(|e| e.to_string())?;
            use tradeserve_models::remote::BackendKind;
            assert_eq!(
                c.models.backends.of(Role::BullSpecialist, "1"),
                BackendKind::InProcess
            );
            assert_eq!(
                c.models.backends.of(Role::BullSpecialist, "2"),
                BackendKind::Torchserve
            );
            assert_eq!(
                c.server.max_in_flight,
                std::num::NonZeroUsize::new(20).unwrap()
            );
            assert_eq!(c.sizing.lot_size, std::num::NonZeroU64::new(100).unwrap());
            assert_eq!(c.server.listen, "127.0.0.1:9999");
            assert_eq!(c.risk.restricted_symbols, vec!["GME".to_owned()]);
            assert_eq!(c.models.versions.bull_specialist, "2");
            assert_eq!(
                c.server.request_deadline,
                tradeserve_core::bounded::PositiveDuration::millis(25)
            );
            Ok(())
        });
    }

    #[test]
    fn a_single_underscore_between_section_and_key_is_refused() {
        let err = misspelled_env(["TRADESERVE_SERVER_REQUEST_DEADLINE".to_owned()].into_iter())
            .unwrap_err()
            .to_string();
        assert!(err.contains("TRADESERVE_SERVER__REQUEST_DEADLINE"), "{err}");
        // The right spelling, the listen shortcut and the test harness's variables pass.
        let fine = [
            "TRADESERVE_SERVER__REQUEST_DEADLINE",
            "TRADESERVE_LISTEN",
            "TRADESERVE_MLFLOW",
            "TRADESERVE_CACHE",
            "PATH",
        ];
        misspelled_env(fine.iter().map(|s| s.to_string())).unwrap();
    }

    #[test]
    fn every_section_refuses_a_single_underscore() {
        // The sections of the example file (which documents every key) are exactly the ones
        // the check knows.
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/tradeserve.example.toml");
        let example: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
        let mut documented: Vec<String> = example.keys().map(|k| k.to_uppercase()).collect();
        let mut known = sections();
        documented.sort();
        known.sort();
        assert_eq!(known, documented);
        assert_eq!(known.len(), 12);
        for section in known {
            let name = format!("TRADESERVE_{section}_SOME_KEY");
            let err = misspelled_env([name.clone()].into_iter())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("TRADESERVE_{section}__SOME_KEY")),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn kafka_alone_needs_the_shared_ledger() {
        let mut c = Config::default();
        c.events.sink = SinkKind::Kafka;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("ledger.store = \"redis\""), "{err}");
        c.ledger.store = crate::ledger::LedgerStore::Redis;
        c.validate().unwrap();
        c.ledger.store = crate::ledger::LedgerStore::Memory;
        c.events.sink = SinkKind::Both;
        c.validate().unwrap();
    }

    #[test]
    fn bad_config_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("[server]\nlisten = \"nowhere\"\n", "server.listen"),
            ("[server]\nbogus = 1\n", "bogus"),
            ("[risk]\nmax_concentration = 2.0\n", "max_concentration"),
            ("[sizing]\nlot_size = 0\n", "lot_size"),
            (
                "[server]\nrequest_deadline = \"soon\"\n",
                "request_deadline",
            ),
            (
                "[models.versions]\nregime_detector = \"\"\n",
                "regime_detector",
            ),
            (
                "[models]\nsource = \"mlflow\"\n[models.mlflow]\ntracking_uri = \"ftp://x\"\n",
                "tracking_uri",
            ),
            (
                "[models]\nsource = \"mlflow\"\n[models.mlflow.roles.trend]\nname = \"x\"\n",
                "roles.trend",
            ),
            ("[models]\nsource = \"s3\"\n", "source"),
            (
                "[models.backends]\nbull_specialist = \"triton\"\n",
                "bull_specialist",
            ),
            (
                "[models.backends]\nbull_specialist = \"kserve_v2\"\n[models.kserve_v2]\nurl = \"ftp://x\"\n",
                "models.kserve_v2.url",
            ),
            (
                "[models.backends.versions.bull_specialist]\n\"2\" = \"triton\"\n",
                "triton",
            ),
        ];
        for (text, key) in cases {
            let path = dir.path().join("c.toml");
            std::fs::write(&path, text).unwrap();
            let err = load(Some(&path), None).unwrap_err().to_string();
            assert!(err.contains(key), "{text:?} → {err}");
        }
        let missing = load(Some(Path::new("/nonexistent.toml")), None);
        assert!(missing.unwrap_err().to_string().contains("does not exist"));
    }

    #[test]
    fn a_zero_duration_or_count_is_refused_while_reading_and_the_error_names_the_key() {
        let durations = [
            "server.request_deadline",
            "server.header_read_timeout",
            "server.body_read_timeout",
            "server.idle_timeout",
            "server.tls.reload_interval",
            "events.fsync_interval",
            "ledger.timeout",
            "control.store_timeout",
            "models.mlflow.request_timeout",
            "models.remote.status_interval",
            "models.remote.circuit_open_for",
            "features.live.max_bar_age",
            "models.torchserve.connect_timeout",
            "models.torchserve.register_timeout",
            "models.tfserving.connect_timeout",
            "models.kserve_v2.connect_timeout",
        ];
        let counts = [
            "server.max_in_flight",
            "server.max_connections",
            "risk.max_order_quantity",
            "risk.max_orders_per_second_symbol",
            "risk.max_orders_per_second_desk",
            "risk.repeated_execution_max",
            "sizing.lot_size",
            "idempotency.max_entries",
            "features.live.retain_bars",
            "models.remote.batch_max_rows",
            "models.remote.batch_in_flight",
            "models.remote.circuit_failures",
            "models.torchserve.max_in_flight",
            "models.torchserve.initial_workers",
            "models.torchserve.batch_size",
            "models.tfserving.max_in_flight",
            "models.kserve_v2.max_in_flight",
            "explain.max_in_flight",
        ];
        let cases = durations
            .map(|k| {
                (
                    k,
                    "\"0s\"",
                    "\"250ms\"",
                    "expected a duration greater than zero",
                )
            })
            .into_iter()
            .chain(counts.map(|k| (k, "0", "3", "expected a nonzero")));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        for (dotted, zero, fine, expected) in cases {
            let (section, key) = dotted.rsplit_once('.').unwrap();
            std::fs::write(&path, format!("[{section}]\n{key} = {zero}\n")).unwrap();
            let err = load(Some(&path), None).unwrap_err().to_string();
            assert!(
                err.contains(expected) && err.contains(dotted),
                "{dotted} → {err}"
            );
            std::fs::write(&path, format!("[{section}]\n{key} = {fine}\n")).unwrap();
            load(Some(&path), None).unwrap();
        }
    }
}
