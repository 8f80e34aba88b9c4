//! Who may call what. With keys configured (`[auth]`), every route but the public ones needs
//! `Authorization: Bearer <key>`: 401 `unauthorized` for a missing or unknown key, 403
//! `forbidden` for a key without the route's role, 429 `rate_limited` over the key's quota.
//! The key's id — never the key — goes on as the request's [`Caller`]: the `actor` of control
//! changes and decision events. Without keys the layer is not installed at all.

pub mod config;
pub mod key;
pub mod metrics;
pub mod quota;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub use config::{ApiRole, AuthConfig, KeyConfig};
use key::{KeyHash, claimed_id};
use quota::Quota;
use tradeserve_core::error::InvalidSetting;
use tradeserve_core::risk::DeskLimits;

use crate::error::ApiError;
pub use metrics::AuthMetrics;

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

    /// Admit `request` to a route that needs `access`, or say why not.
    fn check(&self, access: Access, request: &Request) -> Result<Option<Caller>, Refusal> {
        if access == Access::Public || (access == Access::Ops && !self.protect_ops) {
            return Ok(None);
        }
        let Some(presented) = bearer(request) else {
            self.metrics.refused("missing");
            return Err(unauthorized("missing API key: send Authorization: Bearer <key>").into());
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
            return Err(unauthorized("unknown API key").into());
        };
        if let Some(role) = access.needs() {
            if !entry.roles.contains(&role) {
                self.metrics.refused("forbidden");
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "key {} lacks the role {} that this endpoint needs",
                        entry.id,
                        role.as_str()
                    ),
                )
                .into());
            }
        }
        if let Some(quota) = &entry.quota {
            if let Err(wait) = quota.take() {
                self.metrics.limited(&entry.id);
                return Err(Refusal {
                    error: ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limited",
                        format!(
                            "key {} is over its quota of {} requests a minute; retry in {} ms",
                            entry.id,
                            quota.per_minute,
                            wait.as_millis()
                        ),
                    ),
                    retry_after: Some(wait),
                });
            }
        }
        Ok(Some(Caller {
            id: Arc::clone(&entry.id),
            limits: entry.limits,
        }))
    }
}

/// Why a request is not let through.
struct Refusal {
    error: ApiError,
    /// Over quota: when to try again.
    retry_after: Option<Duration>,
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Refusal {
        Refusal {
            error,
            retry_after: None,
        }
    }
}

/// The bearer token of a request, if it sent one.
fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// The layer in front of a route that needs `access`.
pub async fn guard(
    State((auth, access)): State<(Arc<Auth>, Access)>,
    mut request: Request,
    next: Next,
) -> Response {
    match auth.check(access, &request) {
        Ok(caller) => {
            if let Some(caller) = caller {
                request.extensions_mut().insert(caller);
            }
            next.run(request).await
        }
        Err(Refusal { error, retry_after }) => {
            let unauthorized = error.status == StatusCode::UNAUTHORIZED;
            let mut response = error.into_response();
            let headers = response.headers_mut();
            if unauthorized {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            if let Some(wait) = retry_after {
                // Whole seconds, rounded up: a client that waits that long gets through.
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            response
        }
    }
}
