//! Per-key rate limits (GCRA): `rate_per_minute` with a burst; a request over it is answered
//! 429 `rate_limited` with `Retry-After`, before it takes an admission permit.
//!
//! A fleet shares them through a [`SharedQuotas`] store (the server's is Redis: one atomic
//! GCRA step per request on the server's clock), so N replicas let a key through at its rate,
//! not N times it. [`Quota`] is this process's limiter (`governor`): the whole quota without a
//! shared store, and the fallback while the store cannot be reached — per replica then.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota as GovernorQuota, RateLimiter};
use tradeserve_core::ports::BoxFuture;

/// A key's quota: `per_minute` requests a minute, `burst` of them at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

impl Rate {
    /// The time between two requests at the rate, in microseconds.
    pub fn interval_us(&self) -> u64 {
        60_000_000 / u64::from(self.per_minute.max(1))
    }
}

/// The shared store could not answer (the caller falls back to its own limiter).
#[derive(Debug, Clone, thiserror::Error)]
#[error("quota store unavailable: {0}")]
pub struct QuotaUnavailable(pub String);

/// Quotas every replica shares: one step of the key's GCRA per request, atomic on the store.
pub trait SharedQuotas: Send + Sync {
    /// Take one request of key `id` at `rate`: `Ok(Ok(()))` through, `Ok(Err(wait))` over
    /// the quota until `wait` from now.
    fn take<'a>(
        &'a self,
        id: &'a str,
        rate: Rate,
    ) -> BoxFuture<'a, Result<Result<(), Duration>, QuotaUnavailable>>;
}

/// One key's limiter.
pub struct Quota {
    limiter: DefaultDirectRateLimiter,
    clock: DefaultClock,
    pub per_minute: u32,
    pub rate: Rate,
}

impl Quota {
    /// `None` when `per_minute` is `None`; burst defaults to ten seconds' worth (at least 1).
    pub fn new(per_minute: Option<u32>, burst: Option<u32>) -> Option<Quota> {
        let per_minute = NonZeroU32::new(per_minute?)?;
        let burst = burst.and_then(NonZeroU32::new).unwrap_or_else(|| {
            NonZeroU32::new(per_minute.get().div_ceil(6)).unwrap_or(NonZeroU32::MIN)
        });
        let clock = DefaultClock::default();
        let quota = GovernorQuota::per_minute(per_minute).allow_burst(burst);
        Some(Quota {
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
            per_minute: per_minute.get(),
            rate: Rate {
                per_minute: per_minute.get(),
                burst: burst.get(),
            },
        })
    }

    /// Take one request; `Err(wait)` when over the limit.
    pub fn take(&self) -> Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_burst_is_allowed_then_requests_wait_for_the_rate() {
        // 600 a minute = one each 100 ms; burst 5.
        let q = Quota::new(Some(600), Some(5)).unwrap();
        for _ in 0..5 {
            q.take().unwrap();
        }
        let wait = q.take().unwrap_err();
        assert!(
            wait > Duration::from_millis(50) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        assert!(Quota::new(None, Some(5)).is_none());
    }

    #[test]
    fn the_default_burst_is_ten_seconds_worth() {
        let q = Quota::new(Some(60), None).unwrap();
        let taken = (0..100).take_while(|_| q.take().is_ok()).count();
        assert_eq!(taken, 10);
        let q = Quota::new(Some(1), None).unwrap();
        assert_eq!((0..10).take_while(|_| q.take().is_ok()).count(), 1);
    }
}
