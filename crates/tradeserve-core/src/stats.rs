//! Per-arm measurement for experiments and rollouts, and the statistics their reports use.
//!
//! [`UnitStats`] holds two [`ArmStats`] (control, treatment/candidate). Recording takes one
//! short, uncontended `parking_lot` mutex per arm and never awaits; reading takes a
//! [`ArmSnapshot`] copy. Outcomes keep a running mean/variance (Welford) for the Welch t-test
//! and a bounded reservoir sample for the bootstrap CI of the Sharpe difference.

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::experiment::Arm;
use crate::types::Action;

/// Outcomes kept per arm for the bootstrap (a uniform reservoir sample beyond this).
pub const RESERVOIR: usize = 20_000;

/// Running count, mean and sum of squared deviations (Welford).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    pub n: u64,
    pub mean: f64,
    m2: f64,
}

impl Summary {
    pub fn push(&mut self, x: f64) {
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
    }

    /// Sample variance (n − 1).
    pub fn variance(&self) -> Option<f64> {
        (self.n >= 2).then(|| self.m2 / (self.n - 1) as f64)
    }

    pub fn from_slice(xs: &[f64]) -> Summary {
        let mut s = Summary::default();
        for &x in xs {
            s.push(x);
        }
        s
    }
}

/// Two-sided Welch t-test p-value for a difference of means.
pub fn welch_p_value(a: &Summary, b: &Summary) -> Option<f64> {
    let (va, vb) = (a.variance()?, b.variance()?);
    let (na, nb) = (a.n as f64, b.n as f64);
    let se2 = va / na + vb / nb;
    if se2 <= 0.0 || !se2.is_finite() {
        return None;
    }
    let t = (a.mean - b.mean) / se2.sqrt();
    let df = se2 * se2 / ((va / na).powi(2) / (na - 1.0) + (vb / nb).powi(2) / (nb - 1.0));
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    Some((2.0 * (1.0 - dist.cdf(t.abs()))).clamp(0.0, 1.0))
}

/// Per-decision Sharpe ratio (mean / sample standard deviation; not annualized).
pub fn sharpe(s: &Summary) -> Option<f64> {
    let sd = s.variance()?.sqrt();
    (sd > 0.0).then(|| s.mean / sd)
}

/// 95% percentile-bootstrap confidence interval of `sharpe(b) − sharpe(a)`, seeded so the
/// same data always gives the same interval.
pub fn bootstrap_sharpe_diff(
    a: &[f64],
    b: &[f64],
    resamples: usize,
    seed: u64,
) -> Option<(f64, f64)> {
    if a.len() < 2 || b.len() < 2 || resamples < 20 {
        return None;
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    let resample = |xs: &[f64], rng: &mut SmallRng| {
        let mut s = Summary::default();
        for _ in 0..xs.len() {
            s.push(xs[rng.random_range(0..xs.len())]);
        }
        sharpe(&s)
    };
    let mut diffs = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        if let (Some(sa), Some(sb)) = (resample(a, &mut rng), resample(b, &mut rng)) {
            diffs.push(sb - sa);
        }
    }
    if diffs.len() < resamples / 2 {
        return None;
    }
    diffs.sort_by(f64::total_cmp);
    let at = |q: f64| diffs[((diffs.len() - 1) as f64 * q).round() as usize];
    Some((at(0.025), at(0.975)))
}

/// Everything measured on one arm.
#[derive(Debug)]
struct ArmInner {
    decisions: u64,
    errors: u64,
    actions: [u64; 3],
    confidence_sum: f64,
    risk_checked: u64,
    risk_rejected: u64,
    /// Server latency of returned decisions, µs.
    latency_us: Histogram<u64>,
    /// Ensemble inference time (live or shadow), µs.
    inference_us: Histogram<u64>,
    outcomes: Summary,
    wins: u64,
    reservoir: Vec<f64>,
    shadow_compared: u64,
    shadow_agreed: u64,
    rng: SmallRng,
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 60 s at 3 significant digits: valid bounds, so construction cannot fail.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

impl ArmInner {
    fn new(seed: u64) -> ArmInner {
        ArmInner {
            decisions: 0,
            errors: 0,
            actions: [0; 3],
            confidence_sum: 0.0,
            risk_checked: 0,
            risk_rejected: 0,
            latency_us: histogram(),
            inference_us: histogram(),
            outcomes: Summary::default(),
            wins: 0,
            reservoir: Vec::new(),
            shadow_compared: 0,
            shadow_agreed: 0,
            rng: SmallRng::seed_from_u64(seed),
        }
    }
}

/// One returned (or shadow) decision, as an arm records it.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    pub action: Action,
    pub confidence: f64,
    /// `None` when the request asked for no risk check.
    pub approved: Option<bool>,
    pub latency_us: Option<u64>,
    pub inference_us: u64,
}

/// One arm's measurements.
#[derive(Debug)]
pub struct ArmStats {
    inner: Mutex<ArmInner>,
}

impl ArmStats {
    fn new(seed: u64) -> ArmStats {
        ArmStats {
            inner: Mutex::new(ArmInner::new(seed)),
        }
    }

    pub fn record(&self, o: &Observation) {
        let mut a = self.inner.lock();
        a.decisions += 1;
        let i = match o.action {
            Action::Buy => 0,
            Action::Sell => 1,
            Action::Hold => 2,
        };
        a.actions[i] += 1;
        a.confidence_sum += o.confidence;
        if let Some(approved) = o.approved {
            a.risk_checked += 1;
            if !approved {
                a.risk_rejected += 1;
            }
        }
        if let Some(l) = o.latency_us {
            a.latency_us.saturating_record(l.max(1));
        }
        a.inference_us.saturating_record(o.inference_us.max(1));
    }

    /// A request routed to this arm that got no decision back (refused, failed, too late):
    /// an error, never a decision.
    pub fn record_error(&self) {
        self.inner.lock().errors += 1;
    }

    pub fn record_shadow_agreement(&self, agreed: bool) {
        let mut a = self.inner.lock();
        a.shadow_compared += 1;
        a.shadow_agreed += u64::from(agreed);
    }

    /// A realized return of one decision (already signed by its direction).
    pub fn record_outcome(&self, r: f64) {
        if !r.is_finite() {
            return;
        }
        let mut a = self.inner.lock();
        a.outcomes.push(r);
        a.wins += u64::from(r > 0.0);
        let n = a.outcomes.n;
        if a.reservoir.len() < RESERVOIR {
            a.reservoir.push(r);
        } else {
            let j = a.rng.random_range(0..n);
            if let Ok(j) = usize::try_from(j)
                && j < RESERVOIR
            {
                a.reservoir[j] = r;
            }
        }
    }

    pub fn snapshot(&self) -> ArmSnapshot {
        let a = self.inner.lock();
        let q = |h: &Histogram<u64>, q: f64| (!h.is_empty()).then(|| h.value_at_quantile(q) as f64);
        let returned = a.decisions;
        ArmSnapshot {
            decisions: a.decisions,
            errors: a.errors,
            error_rate: ratio(a.errors, a.decisions + a.errors),
            action_mix: ActionMix {
                buy: ratio(a.actions[0], returned),
                sell: ratio(a.actions[1], returned),
                hold: ratio(a.actions[2], returned),
            },
            mean_confidence: (returned > 0).then(|| a.confidence_sum / returned as f64),
            risk_reject_rate: (a.risk_checked > 0).then(|| ratio(a.risk_rejected, a.risk_checked)),
            latency_ms: Percentiles {
                p50: q(&a.latency_us, 0.5).map(|v| v / 1e3),
                p95: q(&a.latency_us, 0.95).map(|v| v / 1e3),
                p99: q(&a.latency_us, 0.99).map(|v| v / 1e3),
            },
            inference_p99_us: q(&a.inference_us, 0.99),
            outcomes: a.outcomes.n,
            win_rate: (a.outcomes.n > 0).then(|| ratio(a.wins, a.outcomes.n)),
            mean_return: (a.outcomes.n > 0).then_some(a.outcomes.mean),
            sharpe: sharpe(&a.outcomes),
            shadow_compared: a.shadow_compared,
            shadow_agreed: a.shadow_agreed,
            summary: a.outcomes,
            sample: a.reservoir.clone(),
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ActionMix {
    #[serde(rename = "BUY")]
    pub buy: f64,
    #[serde(rename = "SELL")]
    pub sell: f64,
    #[serde(rename = "HOLD")]
    pub hold: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

/// A copy of one arm's measurements.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArmSnapshot {
    pub decisions: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub action_mix: ActionMix,
    pub mean_confidence: Option<f64>,
    pub risk_reject_rate: Option<f64>,
    pub latency_ms: Percentiles,
    pub inference_p99_us: Option<f64>,
    pub outcomes: u64,
    pub win_rate: Option<f64>,
    pub mean_return: Option<f64>,
    pub sharpe: Option<f64>,
    pub shadow_compared: u64,
    pub shadow_agreed: u64,
    #[serde(skip)]
    pub summary: Summary,
    #[serde(skip)]
    pub sample: Vec<f64>,
}

/// The two arms of one experiment (or one rollout stage).
#[derive(Debug)]
pub struct UnitStats {
    arms: [ArmStats; 2],
}

impl UnitStats {
    pub fn new() -> UnitStats {
        UnitStats {
            arms: [ArmStats::new(1), ArmStats::new(2)],
        }
    }

    pub fn arm(&self, arm: Arm) -> &ArmStats {
        &self.arms[arm.index()]
    }
}

impl Default for UnitStats {
    fn default() -> Self {
        UnitStats::new()
    }
}

/// Significance of treatment against control.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    /// Welch t-test, two-sided, on mean return.
    pub welch_p_value: Option<f64>,
    pub mean_return_diff: Option<f64>,
    pub sharpe_diff: Option<f64>,
    /// 95% bootstrap CI of `sharpe(treatment) − sharpe(control)`.
    pub sharpe_diff_ci95: Option<(f64, f64)>,
}

/// Compare two arms' outcomes.
pub fn compare(control: &ArmSnapshot, treatment: &ArmSnapshot) -> Comparison {
    Comparison {
        welch_p_value: welch_p_value(&treatment.summary, &control.summary),
        mean_return_diff: match (treatment.mean_return, control.mean_return) {
            (Some(t), Some(c)) => Some(t - c),
            _ => None,
        },
        sharpe_diff: match (treatment.sharpe, control.sharpe) {
            (Some(t), Some(c)) => Some(t - c),
            _ => None,
        },
        sharpe_diff_ci95: bootstrap_sharpe_diff(&control.sample, &treatment.sample, 1000, 42),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welford_matches_two_pass() {
        let xs = [1.0, 2.0, 4.0, 7.0, 11.0];
        let s = Summary::from_slice(&xs);
        assert_eq!(s.n, 5);
        assert!((s.mean - 5.0).abs() < 1e-12);
        // Σ(x-5)² = 16+9+1+4+36 = 66; / 4
        assert!((s.variance().unwrap() - 16.5).abs() < 1e-12);
    }

    #[test]
    fn welch_matches_scipy() {
        // scipy.stats.ttest_ind(a, b, equal_var=False) → pvalue 0.021378001462866992
        let a = [
            27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7,
            21.4,
        ];
        let b = [
            27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5,
            24.4,
        ];
        let p = welch_p_value(&Summary::from_slice(&a), &Summary::from_slice(&b)).unwrap();
        assert!((p - 0.021_378_001_462_866_992).abs() < 1e-9, "{p}");
        assert!(welch_p_value(&Summary::from_slice(&[1.0]), &Summary::from_slice(&b)).is_none());
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_the_difference() {
        let a: Vec<f64> = (0..500)
            .map(|i| ((i * 37 % 101) as f64 - 50.0) / 1000.0)
            .collect();
        let b: Vec<f64> = a.iter().map(|x| x + 0.02).collect();
        let ci = bootstrap_sharpe_diff(&a, &b, 500, 7).unwrap();
        assert_eq!(ci, bootstrap_sharpe_diff(&a, &b, 500, 7).unwrap());
        let point =
            sharpe(&Summary::from_slice(&b)).unwrap() - sharpe(&Summary::from_slice(&a)).unwrap();
        assert!(ci.0 < point && point < ci.1, "{ci:?} vs {point}");
        assert!(
            ci.0 > 0.0,
            "a clear improvement has a CI above zero: {ci:?}"
        );
    }

    #[test]
    fn arm_snapshot_counts() {
        let s = UnitStats::new();
        let arm = s.arm(Arm::Treatment);
        for (i, action) in [Action::Buy, Action::Buy, Action::Sell, Action::Hold]
            .into_iter()
            .enumerate()
        {
            arm.record(&Observation {
                action,
                confidence: 0.5,
                approved: Some(i != 3),
                latency_us: Some(100 * (i as u64 + 1)),
                inference_us: 20,
            });
        }
        arm.record_error();
        arm.record_outcome(0.01);
        arm.record_outcome(-0.02);
        let snap = arm.snapshot();
        // Decisions are what clients received; the error is counted apart.
        assert_eq!(snap.decisions, 4);
        assert_eq!(snap.errors, 1);
        assert!((snap.error_rate - 0.2).abs() < 1e-12);
        assert!((snap.action_mix.buy - 0.5).abs() < 1e-12);
        assert!((snap.risk_reject_rate.unwrap() - 0.25).abs() < 1e-12);
        assert!((snap.win_rate.unwrap() - 0.5).abs() < 1e-12);
        assert!((snap.mean_return.unwrap() + 0.005).abs() < 1e-12);
        assert!((snap.latency_ms.p99.unwrap() - 0.4).abs() < 1e-3);
        assert_eq!(s.arm(Arm::Control).snapshot().decisions, 0);
    }
}
