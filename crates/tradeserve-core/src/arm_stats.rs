//! Per-arm measurement for experiments and rollouts: what a replica records on the request
//! path ([`ArmStats`], two per [`UnitStats`]) and [`ArmState`], the plain, serializable copy of
//! one arm's records that merges with other replicas' copies into the fleet's. Counts and
//! latency histograms add exactly; outcome moments combine exactly (Welford, parallel form);
//! outcome reservoirs merge into a uniform sample of the union, drawn with a fixed seed so the
//! same inputs give the same report.
//!
//! Recording takes one short, uncontended `parking_lot` mutex per arm and never awaits.

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::experiment::Arm;
use crate::stats::{ActionMix, ArmSnapshot, Percentiles, Summary, ratio, sharpe};
use crate::types::Action;

/// Outcomes kept per arm for the bootstrap (a uniform reservoir sample beyond this).
pub const RESERVOIR: usize = 20_000;

/// Everything measured on one arm: one replica's, or several merged.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmState {
    /// Decisions returned to clients (and shadow runs, on a rollout's candidate).
    pub decisions: u64,
    /// Requests routed here that got no decision back.
    pub errors: u64,
    /// Decisions by action: BUY, SELL, HOLD.
    pub actions: [u64; 3],
    pub confidence_sum: f64,
    pub risk_checked: u64,
    pub risk_rejected: u64,
    /// Server latency of returned decisions, µs.
    #[serde(with = "buckets")]
    pub latency_us: Histogram<u64>,
    /// Ensemble inference time (live or shadow), µs.
    #[serde(with = "buckets")]
    pub inference_us: Histogram<u64>,
    pub outcomes: Summary,
    pub wins: u64,
    /// A uniform sample of the outcomes (all of them up to [`RESERVOIR`]).
    pub reservoir: Vec<f64>,
    pub shadow_compared: u64,
    pub shadow_agreed: u64,
}

/// Counts and summaries only: the histograms' and the reservoir's contents would fill a screen.
impl std::fmt::Debug for ArmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmState")
            .field("decisions", &self.decisions)
            .field("errors", &self.errors)
            .field("actions", &self.actions)
            .field("risk_checked", &self.risk_checked)
            .field("risk_rejected", &self.risk_rejected)
            .field("latency_us.len", &self.latency_us.len())
            .field("inference_us.len", &self.inference_us.len())
            .field("outcomes", &self.outcomes)
            .field("reservoir.len", &self.reservoir.len())
            .field("shadow_compared", &self.shadow_compared)
            .finish_non_exhaustive()
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 60 s at 3 significant digits: valid bounds, so construction cannot fail.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// A histogram as its non-empty buckets, `[[value, count], …]`: compact, and read back into the
/// same buckets (values outside the bounds are clamped to them).
mod buckets {
    use hdrhistogram::Histogram;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &Histogram<u64>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value())),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Histogram<u64>, D::Error> {
        let pairs = Vec::<(u64, u64)>::deserialize(d)?;
        let mut h = super::histogram();
        for (value, count) in pairs {
            h.saturating_record_n(value.max(1), count);
        }
        Ok(h)
    }
}

impl Default for ArmState {
    fn default() -> Self {
        ArmState {
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
        }
    }
}

impl ArmState {
    /// How much has been recorded: grows with every record of any kind, so an unchanged value
    /// means nothing new to publish.
    pub fn activity(&self) -> u64 {
        self.decisions + self.errors + self.outcomes.n + self.shadow_compared
    }

    /// Add `other`'s records to these (another replica's share of the same arm).
    pub fn merge(&mut self, other: &ArmState) {
        self.decisions += other.decisions;
        self.errors += other.errors;
        for (a, b) in self.actions.iter_mut().zip(other.actions) {
            *a += b;
        }
        self.confidence_sum += other.confidence_sum;
        self.risk_checked += other.risk_checked;
        self.risk_rejected += other.risk_rejected;
        add_histogram(&mut self.latency_us, &other.latency_us);
        add_histogram(&mut self.inference_us, &other.inference_us);
        self.reservoir = merge_reservoirs(
            (&self.reservoir, self.outcomes.n),
            (&other.reservoir, other.outcomes.n),
        );
        self.outcomes.merge(&other.outcomes);
        self.wins += other.wins;
        self.shadow_compared += other.shadow_compared;
        self.shadow_agreed += other.shadow_agreed;
    }

    /// The view reports and gates read.
    pub fn snapshot(&self) -> ArmSnapshot {
        let q = |h: &Histogram<u64>, q: f64| (!h.is_empty()).then(|| h.value_at_quantile(q) as f64);
        let returned = self.decisions;
        ArmSnapshot {
            decisions: self.decisions,
            errors: self.errors,
            error_rate: ratio(self.errors, self.decisions + self.errors),
            action_mix: ActionMix {
                buy: ratio(self.actions[0], returned),
                sell: ratio(self.actions[1], returned),
                hold: ratio(self.actions[2], returned),
            },
            mean_confidence: (returned > 0).then(|| self.confidence_sum / returned as f64),
            risk_reject_rate: (self.risk_checked > 0)
                .then(|| ratio(self.risk_rejected, self.risk_checked)),
            latency_ms: Percentiles {
                p50: q(&self.latency_us, 0.5).map(|v| v / 1e3),
                p95: q(&self.latency_us, 0.95).map(|v| v / 1e3),
                p99: q(&self.latency_us, 0.99).map(|v| v / 1e3),
            },
            inference_p99_us: q(&self.inference_us, 0.99),
            outcomes: self.outcomes.n,
            win_rate: (self.outcomes.n > 0).then(|| ratio(self.wins, self.outcomes.n)),
            mean_return: (self.outcomes.n > 0).then_some(self.outcomes.mean),
            sharpe: sharpe(&self.outcomes),
            shadow_compared: self.shadow_compared,
            shadow_agreed: self.shadow_agreed,
            summary: self.outcomes,
            sample: self.reservoir.clone(),
        }
    }
}

/// Add `b`'s counts to `a`, bucket by bucket (same bounds, so nothing is clamped).
fn add_histogram(a: &mut Histogram<u64>, b: &Histogram<u64>) {
    if a.add(b).is_err() {
        for v in b.iter_recorded() {
            a.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }
}

/// A uniform sample of two streams' union from uniform samples of each (`(sample, stream
/// length)`): everything when it fits, otherwise a random subset of each in proportion to its
/// stream's length. Seeded by the lengths, so the same inputs give the same sample.
fn merge_reservoirs(a: (&[f64], u64), b: (&[f64], u64)) -> Vec<f64> {
    let ((sa, na), (sb, nb)) = (a, b);
    if sa.len() + sb.len() <= RESERVOIR {
        return [sa, sb].concat();
    }
    let total = (na + nb).max(1) as f64;
    let ka = ((RESERVOIR as f64 * na as f64 / total).round() as usize).min(sa.len());
    let kb = (RESERVOIR - ka).min(sb.len());
    let mut rng = SmallRng::seed_from_u64(na.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ nb);
    let mut out = Vec::with_capacity(ka + kb);
    for (sample, k) in [(sa, ka), (sb, kb)] {
        out.extend(
            rand::seq::index::sample(&mut rng, sample.len(), k)
                .into_iter()
                .map(|i| sample[i]),
        );
    }
    out
}

/// One arm's state and the generator of its reservoir.
#[derive(Debug)]
struct Inner {
    state: ArmState,
    rng: SmallRng,
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

/// One arm's measurements on this replica.
#[derive(Debug)]
pub struct ArmStats {
    inner: Mutex<Inner>,
}

impl ArmStats {
    fn new(seed: u64) -> ArmStats {
        ArmStats {
            inner: Mutex::new(Inner {
                state: ArmState::default(),
                rng: SmallRng::seed_from_u64(seed),
            }),
        }
    }

    pub fn record(&self, o: &Observation) {
        let a = &mut self.inner.lock().state;
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
        self.inner.lock().state.errors += 1;
    }

    pub fn record_shadow_agreement(&self, agreed: bool) {
        let a = &mut self.inner.lock().state;
        a.shadow_compared += 1;
        a.shadow_agreed += u64::from(agreed);
    }

    /// A realized return of one decision (already signed by its direction).
    pub fn record_outcome(&self, r: f64) {
        if !r.is_finite() {
            return;
        }
        let mut guard = self.inner.lock();
        let Inner { state: a, rng } = &mut *guard;
        a.outcomes.push(r);
        a.wins += u64::from(r > 0.0);
        let n = a.outcomes.n;
        if a.reservoir.len() < RESERVOIR {
            a.reservoir.push(r);
        } else {
            let j = rng.random_range(0..n);
            if let Ok(j) = usize::try_from(j)
                && j < RESERVOIR
            {
                a.reservoir[j] = r;
            }
        }
    }

    pub fn snapshot(&self) -> ArmSnapshot {
        self.inner.lock().state.snapshot()
    }

    /// [`ArmState::activity`] and the outcome count (cheap: no copy of the histograms or the
    /// sample), to tell whether anything was recorded since a publish.
    pub fn progress(&self) -> (u64, u64) {
        let a = self.inner.lock();
        (a.state.activity(), a.state.outcomes.n)
    }

    /// Decisions and errors so far (cheap: no copy of the histograms or the sample).
    pub fn counts(&self) -> (u64, u64) {
        let a = self.inner.lock();
        (a.state.decisions, a.state.errors)
    }

    /// A copy of the records, to publish or merge.
    pub fn state(&self) -> ArmState {
        self.inner.lock().state.clone()
    }
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

    /// Both arms' [`ArmStats::progress`], added.
    pub fn progress(&self) -> (u64, u64) {
        let ((a, b), (c, d)) = (self.arms[0].progress(), self.arms[1].progress());
        (a + c, b + d)
    }

    /// Both arms' records (control, treatment).
    pub fn states(&self) -> [ArmState; 2] {
        [self.arms[0].state(), self.arms[1].state()]
    }
}

impl Default for UnitStats {
    fn default() -> Self {
        UnitStats::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(action: Action, approved: Option<bool>, latency_us: u64) -> Observation {
        Observation {
            action,
            confidence: 0.5,
            approved,
            latency_us: Some(latency_us),
            inference_us: 20,
        }
    }

    #[test]
    fn arm_snapshot_counts() {
        let s = UnitStats::new();
        let arm = s.arm(Arm::Treatment);
        for (i, action) in [Action::Buy, Action::Buy, Action::Sell, Action::Hold]
            .into_iter()
            .enumerate()
        {
            arm.record(&obs(action, Some(i != 3), 100 * (i as u64 + 1)));
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

    /// Two replicas' records merged equal one replica having recorded everything, and a
    /// state survives its JSON round trip (how replicas exchange it) unchanged.
    #[test]
    fn merged_replicas_equal_one_replica_recording_everything() {
        let (a, b, all) = (ArmStats::new(1), ArmStats::new(2), ArmStats::new(3));
        for i in 0..500u64 {
            let action = [Action::Buy, Action::Sell, Action::Hold][(i % 3) as usize];
            let o = obs(
                action,
                (i % 4 != 0).then_some(i % 7 != 0),
                10 + i * 37 % 900,
            );
            let r = ((i * 7919) % 201) as f64 / 1e4 - 0.01;
            let side = if i % 3 == 0 { &a } else { &b };
            for arm in [side, &all] {
                arm.record(&o);
                arm.record_outcome(r);
                if i % 50 == 0 {
                    arm.record_error();
                    arm.record_shadow_agreement(i % 100 == 0);
                }
            }
        }
        let wire = |s: ArmState| -> ArmState {
            serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap()
        };
        let mut merged = wire(a.state());
        // Exactly (floats included): a replica's share is the same after the trip.
        assert!(merged == a.state(), "the JSON round trip changed the state");
        merged.merge(&wire(b.state()));
        let (m, one) = (merged.snapshot(), all.state().snapshot());
        assert_eq!(
            (
                m.decisions,
                m.errors,
                m.outcomes,
                m.shadow_compared,
                m.shadow_agreed
            ),
            (
                one.decisions,
                one.errors,
                one.outcomes,
                one.shadow_compared,
                one.shadow_agreed
            )
        );
        assert_eq!(m.action_mix, one.action_mix);
        assert_eq!(m.risk_reject_rate, one.risk_reject_rate);
        assert_eq!(m.latency_ms, one.latency_ms);
        assert_eq!(m.inference_p99_us, one.inference_p99_us);
        assert_eq!(m.win_rate, one.win_rate);
        assert!((m.mean_return.unwrap() - one.mean_return.unwrap()).abs() < 1e-15);
        assert!((m.sharpe.unwrap() - one.sharpe.unwrap()).abs() < 1e-12);
        assert!((m.mean_confidence.unwrap() - one.mean_confidence.unwrap()).abs() < 1e-12);
        // Under the reservoir size, the sample is every outcome of both.
        let mut s1 = m.sample.clone();
        let mut s2 = one.sample.clone();
        s1.sort_by(f64::total_cmp);
        s2.sort_by(f64::total_cmp);
        assert_eq!(s1, s2);
    }

    /// Over the reservoir size, the merged sample is full, drawn from each side in proportion
    /// to its stream, and the same every time.
    #[test]
    fn full_reservoirs_merge_in_proportion_and_deterministically() {
        let a: Vec<f64> = vec![1.0; RESERVOIR];
        let b: Vec<f64> = vec![2.0; RESERVOIR / 2];
        // Stream a had 3× b's outcomes (60,000 vs 10,000: b kept all of its 10,000).
        let m = merge_reservoirs((&a, 60_000), (&b, 10_000));
        assert_eq!(m.len(), RESERVOIR);
        let from_b = m.iter().filter(|x| **x == 2.0).count();
        assert_eq!(from_b, RESERVOIR / 7);
        assert_eq!(m, merge_reservoirs((&a, 60_000), (&b, 10_000)));
        assert_eq!(merge_reservoirs((&[0.5], 1), (&[], 0)), vec![0.5]);
    }
}
