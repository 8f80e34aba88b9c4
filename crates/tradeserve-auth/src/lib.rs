//! Who may call what. With keys configured (`[auth]`), every route but the public ones needs a
//! key: [`Auth::check`] finds the presented key's entry (comparing salted hashes in constant
//! time, with a decoy for an unknown id so it costs what a wrong secret does), checks the
//! route's role and the key's quota, and answers the [`Caller`] — the key's id, never the key,
//! and its desk's limits — or why not ([`Refused`]). The HTTP layer in front of the routes
//! (the server's) turns a refusal into 401, 403 or 429.
//!
//! - [`config`]: `[auth]` and the keys file; [`key`]: key generation and the salted hash;
//!   [`quota`]: each key's request quota; [`metrics`]: the refusal counters.

pub mod config;
pub mod key;
pub mod metrics;
pub mod quota;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use config::{ApiRole, AuthConfig, KeyConfig};
use key::{KeyHash, claimed_id};
pub use metrics::AuthMetrics;
use quota::Quota;
use tradeserve_core::error::InvalidSetting;
use tradeserve_core::risk::DeskLimits;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No key, ever (`/health/live`).
    Public,
    /// `/health/ready`, `/metrics`: public unless `auth.protect_ops`, then any role.
    Ops,
    /// Any role.
    Read,
    /// `trader`.
    Trade,
    /// `operator`.
    Operate,
}

impl Access {
    fn needs(self) -> Option<ApiRole> {
        match self {
            Access::Trade => Some(ApiRole::Trader),
            Access::Operate => Some(ApiRole::Operator),
            Access::Public | Access::Ops | Access::Read => None,
        }
    }
}

/// The authenticated key of a request (in its extensions).
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: Arc<str>,
    /// Its desk's own risk limits.
    pub limits: DeskLimits,
}

struct Entry {
    id: Arc<str>,
    hash: KeyHash,
    roles: Vec<ApiRole>,
    quota: Option<Quota>,
    limits: DeskLimits,
}

/// The configured keys, ready to check.
pub struct Auth {
    keys: HashMap<String, Entry>,
    protect_ops: bool,
    /// Checked when a presented key names no configured id, so an unknown id costs what a
    /// wrong secret does.
    decoy: KeyHash,
    metrics: AuthMetrics,
}

impl Auth {
    /// `None` when no key is configured (authentication off).
    pub fn new(
        config: &AuthConfig,
        metrics: AuthMetrics,
    ) -> Result<Option<Arc<Auth>>, InvalidSetting> {
        config.validate()?;
        let keys = config.all_keys()?;
        if keys.is_empty() {
            return Ok(None);
        }
        let mut table = HashMap::new();
        for k in keys {
            let hash = k.hash.parse::<KeyHash>().map_err(|e| e.to_string())?;
            table.insert(
                k.id.clone(),
                Entry {
                    id: Arc::from(k.id.as_str()),
                    hash,
                    roles: k.roles,
                    quota: Quota::new(k.rate_per_minute, k.burst),
                    limits: DeskLimits {
                        daily_notional: k.daily_notional,
                        orders_per_second: k.orders_per_second,
                    },
                },
            );
        }
        Ok(Some(Arc::new(Auth {
            keys: table,
            protect_ops: config.protect_ops,
            decoy: KeyHash::new("", [0; 16]),
            metrics,
        })))
    }

    /// The key ids, for the start-up log.
    pub fn ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    /// Admit a request that presented `presented` (its bearer token, if any) to a route that
    /// needs `access`: its caller (`None` for a route that needs no key), or why not.
    pub fn check(
        &self,
        access: Access,
        presented: Option<&str>,
    ) -> Result<Option<Caller>, Refused> {
        if access == Access::Public || (access == Access::Ops && !self.protect_ops) {
            return Ok(None);
        }
        let Some(presented) = presented else {
            self.metrics.refused("missing");
            return Err(Refused::Missing);
        };
        let entry = claimed_id(presented).and_then(|id| self.keys.get(id));
        let matches = match entry {
            Some(e) => e.hash.matches(presented),
            None => {
                let _ = self.decoy.matches(presented);
                false
            }
        };
        let Some(entry) = entry.filter(|_| matches) else {
            self.metrics.refused("unknown");
            return Err(Refused::Unknown);
        };
        if let Some(role) = access.needs()
            && !entry.roles.contains(&role)
        {
            self.metrics.refused("forbidden");
            return Err(Refused::Forbidden {
                id: Arc::clone(&entry.id),
                role,
            });
        }
        if let Some(quota) = &entry.quota
            && let Err(wait) = quota.take()
        {
            self.metrics.limited(&entry.id);
            return Err(Refused::Limited {
                id: Arc::clone(&entry.id),
                per_minute: quota.per_minute,
                retry_after: wait,
            });
        }
        Ok(Some(Caller {
            id: Arc::clone(&entry.id),
            limits: entry.limits,
        }))
    }
}

/// Why a request is not let through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// 401.
    #[error("missing API key: send Authorization: Bearer <key>")]
    Missing,
    /// 401: no configured key has this id and secret.
    #[error("unknown API key")]
    Unknown,
    /// 403.
    #[error("key {id} lacks the role {} that this endpoint needs", role.as_str())]
    Forbidden { id: Arc<str>, role: ApiRole },
    /// 429: over the key's quota; `retry_after` is when a request would pass.
    #[error(
        "key {id} is over its quota of {per_minute} requests a minute; retry in {} ms",
        retry_after.as_millis()
    )]
    Limited {
        id: Arc<str>,
        per_minute: u32,
        retry_after: Duration,
    },
}
