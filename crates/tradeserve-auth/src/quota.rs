//! Per-key rate limits (GCRA, from `governor`): `rate_per_minute` with a burst; a request over
//! it is answered 429 `rate_limited` with `Retry-After`, before it takes an admission permit.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota as GovernorQuota, RateLimiter};

/// One key's limiter.
pub struct Quota {
    limiter: DefaultDirectRateLimiter,
    clock: DefaultClock,
    pub per_minute: u32,
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
