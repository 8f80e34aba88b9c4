//! The statistics of experiment and rollout reports: running moments (Welford, mergeable
//! across replicas), the Welch t-test, the per-decision Sharpe ratio and its bootstrap CI, and
//! [`ArmSnapshot`], the view of one arm a report or gate reads. What is recorded per arm, and
//! how replicas' records merge, is [`crate::arm_stats`].

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// Running count, mean and sum of squared deviations (Welford).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
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

    /// Combine with the moments of another sample (Chan et al.'s parallel formula): the
    /// result is the moments of both samples together, as if pushed one by one.
    pub fn merge(&mut self, other: &Summary) {
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *other;
            return;
        }
        let n = self.n + other.n;
        let (na, nb, nt) = (self.n as f64, other.n as f64, n as f64);
        let delta = other.mean - self.mean;
        self.mean += delta * nb / nt;
        self.m2 += other.m2 + delta * delta * na * nb / nt;
        self.n = n;
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

pub(crate) fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Share of each action among an arm's decisions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActionMix {
    #[serde(rename = "BUY")]
    pub buy: f64,
    #[serde(rename = "SELL")]
    pub sell: f64,
    #[serde(rename = "HOLD")]
    pub hold: f64,
}

/// Latency percentiles in milliseconds (null without data).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

/// A copy of one arm's measurements. In an experiment's report, only the fields its
/// `metrics_to_track` select (`decisions` and `errors` always).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = ArmStats))]
pub struct ArmSnapshot {
    pub decisions: u64,
    pub errors: u64,
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub error_rate: f64,
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub action_mix: ActionMix,
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub mean_confidence: Option<f64>,
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub risk_reject_rate: Option<f64>,
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub latency_ms: Percentiles,
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub inference_p99_us: Option<f64>,
    /// Approved BUY/SELL decisions with a realized return.
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub outcomes: u64,
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub win_rate: Option<f64>,
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub mean_return: Option<f64>,
    /// Per decision: mean / sd of returns, not annualized.
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub sharpe: Option<f64>,
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub shadow_compared: u64,
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub shadow_agreed: u64,
    #[serde(skip)]
    pub summary: Summary,
    #[serde(skip)]
    pub sample: Vec<f64>,
}

/// Significance of treatment against control.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Comparison {
    /// Welch t-test, two-sided, on mean return.
    pub welch_p_value: Option<f64>,
    pub mean_return_diff: Option<f64>,
    pub sharpe_diff: Option<f64>,
    /// 95% percentile bootstrap CI of `sharpe(treatment) − sharpe(control)`, 1000
    /// resamples, seeded.
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
    fn merged_moments_equal_the_moments_of_both_samples() {
        let a = [0.5, -1.25, 3.0, 2.0];
        let b = [10.0, -4.0, 0.125];
        let mut m = Summary::from_slice(&a);
        m.merge(&Summary::from_slice(&b));
        let all = Summary::from_slice(&[&a[..], &b[..]].concat());
        assert_eq!(m.n, all.n);
        assert!((m.mean - all.mean).abs() < 1e-12);
        assert!((m.variance().unwrap() - all.variance().unwrap()).abs() < 1e-12);
        let mut empty = Summary::default();
        empty.merge(&all);
        assert_eq!(empty, all);
        let mut same = all;
        same.merge(&Summary::default());
        assert_eq!(same, all);
    }
}
