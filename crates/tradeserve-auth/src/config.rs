//! `[auth]`: the API keys (stored hashes, roles, quotas), inline or in a secrets file, and
//! what stays public. No keys: authentication is off, which a service on a non-loopback
//! address refuses unless `allow_insecure` says so.

use std::path::{Path, PathBuf};
use tradeserve_core::error::InvalidSetting;

use serde::{Deserialize, Serialize};

use crate::key::{KeyHash, check_id};

/// What a key may do. Every role may read (`viewer` is reading only).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum ApiRole {
    /// Reads: models, symbols, experiments, rollouts, reports.
    Viewer,
    /// Decisions and outcomes, and reads.
    Trader,
    /// Experiments, rollouts, model reload, rollback, bar ingest, and reads.
    Operator,
}

impl ApiRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiRole::Viewer => "viewer",
            ApiRole::Trader => "trader",
            ApiRole::Operator => "operator",
        }
    }
}

/// One key: `[[auth.keys]]` or `[[keys]]` in `keys_file`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Names the key in events, logs and metrics (the key itself never appears).
    pub id: String,
    /// `sha256:<salt>:<digest>`, from `tradeserve auth new-key`.
    pub hash: String,
    pub roles: Vec<ApiRole>,
    /// Requests a minute this key may make (every endpoint but the public ones); none: no
    /// limit beyond the service's admission control.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_minute: Option<u32>,
    /// Requests it may make at once above the rate; default ten seconds' worth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// This desk's gross notional per UTC day, USD (`risk.desk_daily_notional` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_notional: Option<f64>,
    /// This desk's approved orders per second (`risk.max_orders_per_second_desk` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders_per_second: Option<u64>,
}

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub keys: Vec<KeyConfig>,
    /// A TOML file of `[[keys]]` (a mounted secret), added to `keys`.
    pub keys_file: Option<PathBuf>,
    /// `/health/ready` and `/metrics` need a key too (any role). `/health/live` never does.
    pub protect_ops: bool,
    /// Serve on a non-loopback address without keys (anyone who reaches the port may trade).
    pub allow_insecure: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    keys: Vec<KeyConfig>,
}

impl AuthConfig {
    /// Every configured key: inline ones, then the file's.
    pub fn all_keys(&self) -> Result<Vec<KeyConfig>, InvalidSetting> {
        let mut keys = self.keys.clone();
        if let Some(path) = &self.keys_file {
            keys.extend(read_keys_file(path)?);
        }
        Ok(keys)
    }

    /// Check every key (readable file, hash spelling, roles, unique ids, quotas).
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let keys = self.all_keys()?;
        if let Some(path) = &self.keys_file
            && keys.len() == self.keys.len()
        {
            return Err(format!(
                "auth.keys_file {} has no [[keys]]: an empty file would turn authentication off",
                path.display()
            )
            .into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for k in &keys {
            check_id(&k.id).map_err(|e| format!("auth.keys: {e}"))?;
            k.hash
                .parse::<KeyHash>()
                .map_err(|e| format!("auth.keys {:?}: {e}", k.id))?;
            if k.roles.is_empty() {
                return Err(format!("auth.keys {:?}: give it at least one role", k.id).into());
            }
            if k.rate_per_minute == Some(0) || k.burst == Some(0) {
                return Err(format!(
                    "auth.keys {:?}: rate_per_minute and burst must be at least 1 (leave rate_per_minute out for no limit)",
                    k.id
                ).into());
            }
            if k.daily_notional
                .is_some_and(|n| !(n.is_finite() && n > 0.0))
                || k.orders_per_second == Some(0)
            {
                return Err(format!(
                    "auth.keys {:?}: daily_notional must be a finite number > 0 and orders_per_second at least 1",
                    k.id
                ).into());
            }
            if k.burst.is_some() && k.rate_per_minute.is_none() {
                return Err(format!("auth.keys {:?}: burst needs rate_per_minute", k.id).into());
            }
            if !seen.insert(k.id.clone()) {
                return Err(format!("auth.keys: the id {:?} is used twice", k.id).into());
            }
        }
        Ok(())
    }
}

/// A service reachable from other machines needs keys, unless `auth.allow_insecure` says
/// otherwise. Checked on the configured address and again on the bound one.
pub fn check_exposure(
    config: &AuthConfig,
    addr: std::net::SocketAddr,
) -> Result<(), InvalidSetting> {
    let keyless = config.keys.is_empty() && config.keys_file.is_none();
    if addr.ip().is_loopback() || !keyless || config.allow_insecure {
        return Ok(());
    }
    Err(format!(
        "server.listen {addr} is reachable from other machines and no API key is configured: \
         anyone who reaches the port could trade. Configure auth.keys or auth.keys_file \
         (tradeserve auth new-key), or set auth.allow_insecure = true \
         (TRADESERVE_AUTH__ALLOW_INSECURE=true) to serve without authentication"
    )
    .into())
}

/// `keys` as TOML, as `[[<table>]]` entries (`auth.keys` in the configuration, `keys` in a
/// keys file).
pub fn keys_toml(keys: &[KeyConfig], table: &str) -> Result<String, toml::ser::Error> {
    let mut out = String::new();
    for k in keys {
        out.push_str(&format!("[[{table}]]\n"));
        out.push_str(&toml::to_string(k)?);
    }
    Ok(out)
}

fn read_keys_file(path: &Path) -> Result<Vec<KeyConfig>, InvalidSetting> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("auth.keys_file {}: {e}", path.display()))?;
    let file: KeysFile =
        toml::from_str(&text).map_err(|e| format!("auth.keys_file {}: {e}", path.display()))?;
    Ok(file.keys)
}
