//! Who may call what. With keys configured (`[auth]`), every route but the public ones needs a
//! key: [`Auth::check`] finds the presented key's entry (comparing salted hashes in constant
//! time, with a decoy for an unknown id so it costs what a wrong secret does), checks the
//! route's role and the key's quota, and answers the [`Caller`] — the key's id, never the key,
//! and its desk's limits — or why not ([`Refused`]). The HTTP layer in front of the routes
//! (the server's) turns a refusal into 401, 403 or 429.
//!
//! - [`config`]: `[auth]` and the keys file; [`key`]: key generation and the salted hash;
//!   [`quota`]: each key's request quota, and the port of quotas the fleet shares;
//!   [`metrics`]: the refusal counters.

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
use quota::{Quota, SharedQuotas};
use tradeserve_core::error::InvalidSetting;
use tradeserve_core::log_every::LogEvery;
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
    /// The fleet's quotas (`None`: this process's limiters are the quotas).
    shared: Option<Arc<dyn SharedQuotas>>,
}

/// The warning that quotas fell back to each replica's own, at most once a minute.
static FALLBACK_WARNING: LogEvery = LogEvery::new(Duration::from_secs(60));

impl Auth {
    /// `None` when no key is configured (authentication off). With `shared`, quotas hold for
    /// the fleet (see [`quota`]).
    pub fn new(
        config: &AuthConfig,
        metrics: AuthMetrics,
        shared: Option<Arc<dyn SharedQuotas>>,
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
            shared,
        })))
    }

    /// The key ids, for the start-up log.
    pub fn ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    /// Admit a request that presented `presented` (its bearer token, if any) to a route that
    /// needs `access`: its caller (`None` for a route that needs no key), or why not. Awaits
    /// only for a key with a quota when the fleet shares quotas.
    pub async fn check(
        &self,
        access: Access,
        presented: Option<&str>,
    ) -> Result<Option<Caller>, Refused> {
        let Some(entry) = self.identify(access, presented)? else {
            return Ok(None);
        };
        if let Some(quota) = &entry.quota
            && let Err(wait) = self.take(&entry.id, quota).await
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

    /// One request of key `id` against its quota: the fleet's when shared and reachable, else
    /// this replica's.
    async fn take(&self, id: &str, quota: &Quota) -> Result<(), Duration> {
        let Some(shared) = &self.shared else {
            return quota.take();
        };
        match shared.take(id, quota.rate).await {
            Ok(verdict) => verdict,
            Err(e) => {
                self.metrics.shared_quota_unavailable();
                if let Some(held_back) = FALLBACK_WARNING.due() {
                    tracing::warn!(error = %e, held_back, "shared quotas unavailable: each replica applies the whole quota on its own until the store answers");
                }
                quota.take()
            }
        }
    }

    /// The key's entry, when the route needs one and it has the route's role.
    fn identify(&self, access: Access, presented: Option<&str>) -> Result<Option<&Entry>, Refused> {
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
        Ok(Some(entry))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::quota::{QuotaUnavailable, Rate};
    use tradeserve_core::ports::BoxFuture;

    /// A shared store that always answers `verdict` (or is down), counting its calls.
    struct Store {
        verdict: Result<Result<(), Duration>, QuotaUnavailable>,
        asked: std::sync::atomic::AtomicU32,
        rate: std::sync::Mutex<Option<Rate>>,
    }

    impl SharedQuotas for Store {
        fn take<'a>(
            &'a self,
            _id: &'a str,
            rate: Rate,
        ) -> BoxFuture<'a, Result<Result<(), Duration>, QuotaUnavailable>> {
            self.asked
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            *self.rate.lock().unwrap() = Some(rate);
            Box::pin(std::future::ready(self.verdict.clone()))
        }
    }

    fn auth(store: Arc<Store>) -> (Arc<Auth>, String) {
        let (key, hash) = key::generate("desk-1").unwrap();
        let config = AuthConfig {
            keys: vec![KeyConfig {
                id: "desk-1".into(),
                hash: hash.to_string(),
                roles: vec![ApiRole::Trader],
                rate_per_minute: Some(60),
                burst: Some(2),
                daily_notional: None,
                orders_per_second: None,
            }],
            ..AuthConfig::default()
        };
        let metrics = AuthMetrics::new(&prometheus::Registry::new()).unwrap();
        let auth = Auth::new(&config, metrics, Some(store)).unwrap().unwrap();
        (auth, key)
    }

    fn store(verdict: Result<Result<(), Duration>, QuotaUnavailable>) -> Arc<Store> {
        Arc::new(Store {
            verdict,
            asked: Default::default(),
            rate: Default::default(),
        })
    }

    #[tokio::test]
    async fn the_shared_store_decides_and_this_replica_decides_only_while_it_is_down() {
        // The store lets everything through: more than this replica's burst of 2 passes.
        let through = store(Ok(Ok(())));
        let (a, key) = auth(Arc::clone(&through));
        for _ in 0..5 {
            a.check(Access::Trade, Some(&key)).await.unwrap().unwrap();
        }
        assert_eq!(
            *through.rate.lock().unwrap(),
            Some(Rate {
                per_minute: 60,
                burst: 2
            })
        );
        // The store refuses: 429 with its wait, whatever this replica's limiter has left.
        let (a, key) = auth(store(Ok(Err(Duration::from_millis(1500)))));
        let refused = a.check(Access::Trade, Some(&key)).await.unwrap_err();
        assert!(
            matches!(&refused, Refused::Limited { retry_after, per_minute: 60, .. } if *retry_after == Duration::from_millis(1500)),
            "{refused:?}"
        );
        // The store is down: this replica's own limiter (burst 2) decides.
        let down = store(Err(QuotaUnavailable("connection refused".into())));
        let (a, key) = auth(Arc::clone(&down));
        for _ in 0..2 {
            a.check(Access::Trade, Some(&key)).await.unwrap().unwrap();
        }
        assert!(matches!(
            a.check(Access::Trade, Some(&key)).await,
            Err(Refused::Limited { .. })
        ));
        assert_eq!(down.asked.load(std::sync::atomic::Ordering::Relaxed), 3);
        // Routes that need no key never ask the store.
        let quiet = store(Ok(Ok(())));
        let (a, _) = auth(Arc::clone(&quiet));
        assert!(a.check(Access::Public, None).await.unwrap().is_none());
        assert_eq!(quiet.asked.load(std::sync::atomic::Ordering::Relaxed), 0);
    }
}
