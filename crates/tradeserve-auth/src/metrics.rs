//! Authentication's series: requests refused by reason
//! (`tradeserve_auth_refused_total{reason}`: missing, unknown, forbidden, rate_limited) and
//! over-quota requests by key id (`tradeserve_rate_limited_total{key}`; ids are configured, so
//! the label set is closed), and quota checks the fleet's store could not answer
//! (`tradeserve_quota_store_unavailable_total`).

use prometheus::{IntCounterVec, Opts, Registry};

/// See the module docs.
#[derive(Clone)]
pub struct AuthMetrics {
    refused: IntCounterVec,
    limited: IntCounterVec,
    shared_unavailable: prometheus::IntCounter,
}

/// Every reason a request is refused, each series present from the start.
pub const REASONS: [&str; 4] = ["missing", "unknown", "forbidden", "rate_limited"];

impl AuthMetrics {
    pub fn new(registry: &Registry) -> Result<AuthMetrics, prometheus::Error> {
        let refused = IntCounterVec::new(
            Opts::new(
                "tradeserve_auth_refused_total",
                "Requests refused by authentication: missing or unknown key, missing role, over quota",
            ),
            &["reason"],
        )?;
        let limited = IntCounterVec::new(
            Opts::new(
                "tradeserve_rate_limited_total",
                "Requests answered 429 rate_limited, by API key id",
            ),
            &["key"],
        )?;
        let shared_unavailable = prometheus::IntCounter::new(
            "tradeserve_quota_store_unavailable_total",
            "Quota checks the fleet's shared store (Redis) could not answer; this replica's own limiter decided them",
        )?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(limited.clone()))?;
        registry.register(Box::new(shared_unavailable.clone()))?;
        for r in REASONS {
            refused.with_label_values(&[r]);
        }
        Ok(AuthMetrics {
            refused,
            limited,
            shared_unavailable,
        })
    }

    pub fn shared_quota_unavailable(&self) {
        self.shared_unavailable.inc();
    }

    pub fn refused(&self, reason: &'static str) {
        self.refused.with_label_values(&[reason]).inc();
    }

    pub fn limited(&self, key: &str) {
        self.refused.with_label_values(&["rate_limited"]).inc();
        self.limited.with_label_values(&[key]).inc();
    }
}
