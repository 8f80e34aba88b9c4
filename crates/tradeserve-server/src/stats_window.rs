//! The last minute of the decision path, for `GET /api/v1/stats` and the dashboard: the
//! service's own cumulative counters ([`Sample`], read from the same series `/metrics`
//! exports) sampled every second into a ring, and what happened between the oldest sample and
//! now ([`WindowView`]). Quantiles are interpolated within histogram buckets exactly as
//! Prometheus's `histogram_quantile` does, so the dashboard and a Grafana panel over
//! `/metrics` show the same figures.
//!
//! Nothing here runs on the request path: a sample reads a few dozen atomic counters.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

/// The cumulative counters of the decision route at one instant.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    /// Cumulative count per latency bucket (the histogram's `le` bounds, then `+Inf`).
    pub latency: Vec<u64>,
    /// Responses by status, as (label, count).
    pub statuses: Vec<(&'static str, u64)>,
    /// Decisions by action (BUY, SELL, HOLD) × (approved, rejected).
    pub decisions: [[u64; 2]; 3],
}

/// Percentiles in milliseconds, interpolated within the latency histogram's buckets as
/// Prometheus's `histogram_quantile` does (null without requests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LatencyMs {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

/// One point of the charts: the interval between two consecutive samples (at least half a
/// second long: the partial interval before a view is left out).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Point {
    /// How long before now the interval ended.
    pub seconds_ago: f64,
    pub requests_per_second: f64,
    pub latency_ms: LatencyMs,
}

/// Decisions by action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Actions {
    #[serde(rename = "BUY")]
    pub buy: u64,
    #[serde(rename = "SELL")]
    pub sell: u64,
    #[serde(rename = "HOLD")]
    pub hold: u64,
}

/// What happened on `POST /api/v1/predict` between the window's oldest sample and now.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct WindowView {
    /// Span of the window (up to 60).
    pub seconds: f64,
    /// Responses of any status.
    pub requests: u64,
    pub requests_per_second: f64,
    /// Decisions made (approved or rejected by risk).
    pub decisions: u64,
    pub decisions_per_second: f64,
    pub latency_ms: LatencyMs,
    /// Responses by status (only those that occurred).
    #[schema(value_type = BTreeMap<String, u64>)]
    pub statuses: BTreeMap<&'static str, u64>,
    /// 5xx responses over all responses.
    pub error_rate: f64,
    pub actions: Actions,
    pub risk_rejected: u64,
    /// One point per sampling interval, oldest first.
    pub series: Vec<Point>,
}

/// See the module docs.
pub struct Window {
    /// Upper bounds of the latency buckets, seconds (without `+Inf`).
    bounds: &'static [f64],
    span: Duration,
    samples: Mutex<VecDeque<Sample>>,
}

impl Window {
    pub fn new(bounds: &'static [f64], span: Duration) -> Window {
        Window {
            bounds,
            span,
            samples: Mutex::new(VecDeque::new()),
        }
    }

    /// Keep `s`; forget samples no view can use any more.
    pub fn push(&self, s: Sample) {
        let mut samples = self.samples.lock();
        let keep = self.span + Duration::from_secs(2);
        while samples
            .front()
            .is_some_and(|f| s.at.saturating_duration_since(f.at) > keep)
        {
            samples.pop_front();
        }
        samples.push_back(s);
    }

    /// From the oldest sample within the span before `now` (a sample taken for this view) to
    /// `now`.
    pub fn view(&self, now: &Sample) -> WindowView {
        let samples: Vec<Sample> = self
            .samples
            .lock()
            .iter()
            .filter(|s| s.at <= now.at && now.at.saturating_duration_since(s.at) <= self.span)
            .cloned()
            .collect();
        let base = samples.first().unwrap_or(now);
        let seconds = now.at.saturating_duration_since(base.at).as_secs_f64();
        let latency = delta(&now.latency, &base.latency);
        let requests = latency.last().copied().unwrap_or(0);
        let per_s = |n: u64| {
            if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            }
        };
        let d = |a: usize, o: usize| now.decisions[a][o].saturating_sub(base.decisions[a][o]);
        let actions = Actions {
            buy: d(0, 0) + d(0, 1),
            sell: d(1, 0) + d(1, 1),
            hold: d(2, 0) + d(2, 1),
        };
        let decisions = actions.buy + actions.sell + actions.hold;
        let mut statuses = BTreeMap::new();
        for ((label, n), (_, b)) in now.statuses.iter().zip(&base.statuses) {
            if n > b {
                statuses.insert(*label, n - b);
            }
        }
        let errors: u64 = statuses
            .iter()
            .filter(|(s, _)| s.starts_with('5'))
            .map(|(_, n)| n)
            .sum();
        WindowView {
            seconds,
            requests,
            requests_per_second: per_s(requests),
            decisions,
            decisions_per_second: per_s(decisions),
            latency_ms: self.percentiles(&latency),
            statuses,
            error_rate: if requests > 0 {
                errors as f64 / requests as f64
            } else {
                0.0
            },
            actions,
            risk_rejected: d(0, 1) + d(1, 1) + d(2, 1),
            series: self.series(&samples, now),
        }
    }

    fn series(&self, samples: &[Sample], now: &Sample) -> Vec<Point> {
        let all: Vec<&Sample> = samples.iter().chain(std::iter::once(now)).collect();
        all.windows(2)
            .filter_map(|w| {
                let secs = w[1].at.saturating_duration_since(w[0].at).as_secs_f64();
                // The partial interval since the last tick is too short to chart.
                (secs >= 0.5).then(|| {
                    let latency = delta(&w[1].latency, &w[0].latency);
                    Point {
                        seconds_ago: now.at.saturating_duration_since(w[1].at).as_secs_f64(),
                        requests_per_second: latency.last().copied().unwrap_or(0) as f64 / secs,
                        latency_ms: self.percentiles(&latency),
                    }
                })
            })
            .collect()
    }

    fn percentiles(&self, cumulative: &[u64]) -> LatencyMs {
        let q = |q: f64| quantile(q, self.bounds, cumulative).map(|s| s * 1e3);
        LatencyMs {
            p50: q(0.5),
            p95: q(0.95),
            p99: q(0.99),
        }
    }
}

fn delta(now: &[u64], base: &[u64]) -> Vec<u64> {
    now.iter()
        .zip(base)
        .map(|(n, b)| n.saturating_sub(*b))
        .collect()
}

/// Prometheus's `histogram_quantile`: `cumulative` holds one count per bound, then `+Inf`.
/// Linear interpolation within the bucket holding the rank (from 0 for the first); a rank in
/// the `+Inf` bucket gives the highest finite bound. `None` without observations.
pub fn quantile(q: f64, bounds: &[f64], cumulative: &[u64]) -> Option<f64> {
    let total = *cumulative.last()?;
    if total == 0 || cumulative.len() != bounds.len() + 1 {
        return None;
    }
    let rank = q * total as f64;
    let i = cumulative.iter().position(|c| *c as f64 >= rank)?;
    if i == bounds.len() {
        return bounds.last().copied();
    }
    let (start, below) = match i {
        0 => (0.0, 0),
        _ => (bounds[i - 1], cumulative[i - 1]),
    };
    let in_bucket = cumulative[i] - below;
    if in_bucket == 0 {
        return Some(bounds[i]);
    }
    Some(start + (bounds[i] - start) * (rank - below as f64) / in_bucket as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: &[f64] = &[0.01, 0.05, 0.1, 0.25];

    fn sample(at: Instant, latency: [u64; 5], ok: u64, failed: u64) -> Sample {
        Sample {
            at,
            latency: latency.to_vec(),
            statuses: vec![("200", ok), ("503", failed)],
            decisions: [[ok, 0], [0, 0], [0, 0]],
        }
    }

    #[test]
    fn quantiles_interpolate_as_prometheus_does() {
        // All 150 in (0.1, 0.25]: Prometheus gives 0.1 + 0.15 × q (promtool test, alerts).
        let c = [0, 0, 0, 150, 150];
        assert!((quantile(0.95, BOUNDS, &c).unwrap() - 0.2425).abs() < 1e-12);
        assert!((quantile(0.99, BOUNDS, &c).unwrap() - 0.2485).abs() < 1e-12);
        // In the first bucket, from 0; past the last bound, the last bound.
        assert!((quantile(0.5, BOUNDS, &[10, 10, 10, 10, 10]).unwrap() - 0.005).abs() < 1e-12);
        assert_eq!(quantile(0.99, BOUNDS, &[0, 0, 0, 0, 7]), Some(0.25));
        assert_eq!(quantile(0.5, BOUNDS, &[0, 0, 0, 0, 0]), None);
    }

    #[test]
    fn the_window_is_the_last_span_and_its_series_per_interval() {
        let w = Window::new(BOUNDS, Duration::from_secs(60));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        w.push(sample(at(0), [0; 5], 0, 0));
        w.push(sample(at(30), [10, 10, 10, 10, 10], 10, 0));
        w.push(sample(at(70), [10, 30, 30, 30, 40], 38, 2));
        let v = w.view(&sample(at(80), [10, 30, 30, 30, 50], 48, 2));
        // The sample at 0 s is more than a minute old; the window runs from 30 s to 80 s.
        assert_eq!(v.seconds, 50.0);
        assert_eq!((v.requests, v.decisions), (40, 38));
        assert_eq!(v.statuses.get("503"), Some(&2));
        assert!((v.error_rate - 0.05).abs() < 1e-12);
        assert_eq!(v.series.len(), 2);
        assert_eq!(v.series[1].seconds_ago, 0.0);
        assert!((v.series[1].requests_per_second - 1.0).abs() < 1e-12);
        assert!((v.requests_per_second - 0.8).abs() < 1e-12);
    }
}
