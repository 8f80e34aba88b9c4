//! The drift monitor: how far the live service's inputs and decisions have moved from what
//! the champion was trained and backtested on.
//!
//! - Inputs: the features of each decision are binned by the champion's regime-detector
//!   reference (`reference.json`, the training deciles) into a window of 12 slots
//!   (`drift.window`); the population stability index of each feature over the window against
//!   the training shares.
//! - Decisions: the BUY/SELL/HOLD mix and the mean regime probabilities over the window
//!   against the champion's backtest over recent history ([`expected`]), each as a PSI; the
//!   hit rate of the window's orders whose outcome the replay derives (next bar × direction)
//!   against the backtest's, as a one-sided binomial test.
//!
//! The window is a sample of the inputs the models saw: one per symbol and bar. A symbol asked
//! about a thousand times at one bar is one input (its features and its decision are the same
//! each time), so busy symbols and retries do not swamp it; a table of recent (symbol, bar)
//! fingerprints drops the repeats (one that was pushed out may count again).
//!
//! Recording is a few relaxed atomic adds per decision on the request path (no lock, no
//! allocation); slots rotate and the figures are computed by a background task
//! ([`DriftMonitor::tick`], driven by [`watch`]), exported as `tradeserve_drift_*` and in
//! `GET /api/v1/stats`.
//! A recorder that read the slot index just before a rotation adds to the slot just left,
//! which is still in the window: nothing is lost but a decision may land one slot early.

pub mod expected;
pub mod metrics;
pub mod watch;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use serde::Serialize;
use tradeserve_core::drift::{Distribution, Reference, lower_hit_rate_p_value, psi};
use tradeserve_core::prediction::Prediction;
use tradeserve_core::schema::{FEATURE_WIDTH, FEATURES};
use tradeserve_core::types::Action;

use crate::config::DriftConfig;
pub use expected::Expected;

/// Slots of the window.
const SLOTS: usize = 12;
/// Bins a feature may have (a reference with more is not watched).
const MAX_BINS: usize = 32;
/// Regime probabilities are summed in millionths.
const MICRO: f64 = 1e6;
/// Recent (symbol, bar) fingerprints kept to drop repeats.
const SEEN: usize = 65_536;

/// One slot's counts.
struct Slot {
    bins: [[AtomicU64; MAX_BINS]; FEATURE_WIDTH],
    actions: [AtomicU64; 3],
    regime_micros: [AtomicU64; 3],
    decisions: AtomicU64,
    /// Orders with a derived outcome, and those whose outcome was positive.
    judged: AtomicU64,
    hits: AtomicU64,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            bins: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            actions: std::array::from_fn(|_| AtomicU64::new(0)),
            regime_micros: std::array::from_fn(|_| AtomicU64::new(0)),
            decisions: AtomicU64::new(0),
            judged: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        }
    }

    fn clear(&self) {
        let all = self.bins.iter().flatten();
        for c in all.chain(&self.actions).chain(&self.regime_micros).chain([
            &self.decisions,
            &self.judged,
            &self.hits,
        ]) {
            c.store(0, Relaxed);
        }
    }
}

/// The reference the window is binned by, in [`FEATURES`] order.
struct Binning {
    source: Arc<Reference>,
    features: Vec<Distribution>,
}

impl Binning {
    fn of(reference: &Arc<Reference>) -> Option<Binning> {
        let features = FEATURES
            .iter()
            .map(|f| reference.features.get(*f).cloned())
            .collect::<Option<Vec<_>>>()?;
        features
            .iter()
            .all(|d| d.fractions.len() <= MAX_BINS)
            .then(|| Binning {
                source: Arc::clone(reference),
                features,
            })
    }
}

/// A share of each action (BUY, SELL, HOLD) and of each regime (bull, bear, sideways).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = DriftMix)]
pub struct Mix {
    pub buy: f64,
    pub sell: f64,
    pub hold: f64,
    pub bull: f64,
    pub bear: f64,
    pub sideways: f64,
}

impl Mix {
    pub fn actions(&self) -> [f64; 3] {
        [self.buy, self.sell, self.hold]
    }

    pub fn regimes(&self) -> [f64; 3] {
        [self.bull, self.bear, self.sideways]
    }
}

/// What the monitor last computed (`GET /api/v1/stats` → `drift`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DriftSummary {
    /// The window, in seconds, and the inputs in it (one per symbol and bar decided).
    pub window_seconds: f64,
    pub samples: u64,
    /// Inputs needed before figures are computed.
    pub min_samples: u64,
    /// The reference's model (the champion's regime detector), when it ships one.
    pub reference_sha256: Option<String>,
    /// PSI of each feature against its training distribution (null: not computed).
    pub feature_psi: std::collections::BTreeMap<String, Option<f64>>,
    /// The largest of them.
    pub max_feature_psi: Option<f64>,
    /// The window's action shares and mean regime probabilities.
    pub live: Option<Mix>,
    /// The champion's backtest over recent history (null until it has run).
    pub backtest: Option<Mix>,
    /// PSI of the live action mix and regime mix against the backtest's.
    pub action_psi: Option<f64>,
    pub regime_psi: Option<f64>,
    /// Orders in the window with an outcome (derived from the next bar), and their hit rate.
    pub judged: u64,
    pub hit_rate: Option<f64>,
    /// The backtest orders' hit rate.
    pub backtest_hit_rate: Option<f64>,
    /// One-sided binomial test: the chance of a hit rate this low or lower if the orders hit
    /// as often as in the backtest (small: they do worse).
    pub hit_rate_p_value: Option<f64>,
}

/// One decision as the window counts it.
struct Input<'a> {
    symbol: &'a str,
    /// Unix seconds of the bar its features describe.
    bar: i64,
    features: &'a [f64; FEATURE_WIDTH],
    action: Action,
    /// Bull, bear, sideways.
    regime: [f64; 3],
    /// An order's derived outcome (next-bar return × direction), when it has one.
    outcome: Option<f64>,
}

/// See the module docs.
pub struct DriftMonitor {
    config: DriftConfig,
    slots: Vec<Slot>,
    current: AtomicUsize,
    binning: ArcSwapOption<Binning>,
    expected: ArcSwapOption<Expected>,
    rotated: Mutex<Instant>,
    summary: ArcSwapOption<DriftSummary>,
    seen: Box<[AtomicU64]>,
}

fn action_index(a: Action) -> usize {
    match a {
        Action::Buy => 0,
        Action::Sell => 1,
        Action::Hold => 2,
    }
}

impl DriftMonitor {
    pub fn new(config: DriftConfig) -> DriftMonitor {
        DriftMonitor {
            config,
            slots: (0..SLOTS).map(|_| Slot::new()).collect(),
            current: AtomicUsize::new(0),
            binning: ArcSwapOption::empty(),
            expected: ArcSwapOption::empty(),
            rotated: Mutex::new(Instant::now()),
            summary: ArcSwapOption::empty(),
            seen: (0..SEEN).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Whether this (symbol, bar) was counted already (and now it is).
    fn repeat(&self, symbol: &str, bar: i64) -> bool {
        use std::hash::BuildHasher;
        // A fixed hasher: the same inputs give the same window on every run.
        let hasher = std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default();
        let fingerprint = hasher.hash_one((symbol, bar)) | 1;
        let i = (fingerprint >> 1) as usize % SEEN;
        self.seen[i].swap(fingerprint, Relaxed) == fingerprint
    }

    /// Count one decision (the request path: relaxed atomic operations only), unless its
    /// symbol and bar were counted already. `next_bar_return`: the outcome the replay derives
    /// (none from a live feed or for HOLD).
    pub fn observe(&self, p: &Prediction, next_bar_return: Option<f64>) {
        let d = p.outcome.decision();
        let approved = d.risk_validation.as_ref().is_none_or(|v| v.approved);
        let direction = match d.action {
            Action::Buy => 1.0,
            Action::Sell => -1.0,
            Action::Hold => 0.0,
        };
        let order = (approved && d.recommended_quantity > 0 && direction != 0.0)
            .then_some(next_bar_return)
            .flatten();
        let r = &d.regime_probabilities;
        self.count(&Input {
            symbol: d.symbol.as_str(),
            bar: p.snapshot.as_of.unix_timestamp(),
            features: &p.snapshot.features,
            action: d.action,
            regime: [r.bull, r.bear, r.sideways],
            outcome: order.map(|r| r * direction),
        });
    }

    /// Count one input (see [`Self::observe`]).
    fn count(&self, input: &Input<'_>) {
        if self.repeat(input.symbol, input.bar) {
            return;
        }
        let slot = &self.slots[self.current.load(Relaxed) % SLOTS];
        if let Some(b) = self.binning.load().as_ref() {
            for (j, (d, x)) in b.features.iter().zip(input.features).enumerate() {
                slot.bins[j][d.bin(*x).min(MAX_BINS - 1)].fetch_add(1, Relaxed);
            }
        }
        slot.actions[action_index(input.action)].fetch_add(1, Relaxed);
        for (c, v) in slot.regime_micros.iter().zip(input.regime) {
            c.fetch_add((v.clamp(0.0, 1.0) * MICRO) as u64, Relaxed);
        }
        slot.decisions.fetch_add(1, Relaxed);
        if let Some(outcome) = input.outcome {
            slot.judged.fetch_add(1, Relaxed);
            slot.hits.fetch_add(u64::from(outcome > 0.0), Relaxed);
        }
    }

    /// Bin by `reference` from now on (the champion's); a different one empties the window.
    pub fn use_reference(&self, reference: Option<&Arc<Reference>>) {
        let same = match (self.binning.load().as_ref(), reference) {
            (Some(b), Some(r)) => Arc::ptr_eq(&b.source, r),
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        if reference.is_some_and(|r| Binning::of(r).is_none()) {
            tracing::warn!(
                "the champion's training reference does not cover every feature in at most 32 bins: inputs are not watched for drift"
            );
        }
        self.binning
            .store(reference.and_then(Binning::of).map(Arc::new));
        for s in &self.slots {
            s.clear();
        }
        for f in self.seen.iter() {
            f.store(0, Relaxed);
        }
    }

    /// The champion's expected mix (from its backtest).
    pub fn set_expected(&self, expected: Option<Expected>) {
        self.expected.store(expected.map(Arc::new));
    }

    pub fn expected(&self) -> Option<Arc<Expected>> {
        self.expected.load_full()
    }

    /// The last summary computed.
    pub fn summary(&self) -> Option<Arc<DriftSummary>> {
        self.summary.load_full()
    }

    /// Rotate the slots when one is due, then compute the summary.
    pub fn tick(&self) -> Arc<DriftSummary> {
        let slot_len = self.config.window / SLOTS as u32;
        {
            let mut rotated = self.rotated.lock();
            if rotated.elapsed() >= slot_len {
                let next = (self.current.load(Relaxed) + 1) % SLOTS;
                self.slots[next].clear();
                self.current.store(next, Relaxed);
                *rotated = Instant::now();
            }
        }
        let summary = Arc::new(self.compute());
        self.summary.store(Some(Arc::clone(&summary)));
        summary
    }

    /// How often [`Self::tick`] should run: often enough to rotate on time and keep the
    /// figures fresh.
    pub fn tick_every(&self) -> Duration {
        (self.config.window / SLOTS as u32).min(Duration::from_secs(5))
    }

    /// Each feature's PSI over the window (`None` without a reference to bin by).
    fn feature_psi(
        &self,
        binning: Option<&Binning>,
    ) -> std::collections::BTreeMap<String, Option<f64>> {
        let sum = |c: &dyn Fn(&Slot) -> u64| self.slots.iter().map(c).sum::<u64>();
        FEATURES
            .iter()
            .enumerate()
            .map(|(j, name)| {
                let value = binning.and_then(|b| {
                    let d = &b.features[j];
                    let counts: Vec<u64> = (0..d.fractions.len())
                        .map(|k| sum(&|s| s.bins[j][k].load(Relaxed)))
                        .collect();
                    psi(&d.fractions, &counts)
                });
                ((*name).to_owned(), value)
            })
            .collect()
    }

    fn compute(&self) -> DriftSummary {
        let sum = |c: &dyn Fn(&Slot) -> u64| self.slots.iter().map(c).sum::<u64>();
        let decisions = sum(&|s| s.decisions.load(Relaxed));
        let enough = decisions >= self.config.min_samples.max(1);
        let binning = self.binning.load_full();
        let feature_psi = self.feature_psi(binning.as_deref().filter(|_| enough));
        let max_feature_psi = feature_psi.values().flatten().copied().reduce(f64::max);
        let live = enough.then(|| {
            let n = decisions as f64;
            let a = |i: usize| sum(&|s| s.actions[i].load(Relaxed)) as f64 / n;
            let r = |i: usize| sum(&|s| s.regime_micros[i].load(Relaxed)) as f64 / MICRO / n;
            Mix {
                buy: a(0),
                sell: a(1),
                hold: a(2),
                bull: r(0),
                bear: r(1),
                sideways: r(2),
            }
        });
        let expected = self.expected.load_full();
        let backtest = expected.as_ref().map(|e| e.mix);
        let backtest_hit_rate = expected.as_ref().and_then(|e| e.hit_rate);
        let judged = sum(&|s| s.judged.load(Relaxed));
        let hits = sum(&|s| s.hits.load(Relaxed));
        let hit_rate = (enough && judged > 0).then(|| hits as f64 / judged as f64);
        let hit_rate_p_value = backtest_hit_rate
            .filter(|_| enough)
            .and_then(|p0| lower_hit_rate_p_value(hits, judged, p0));
        let (action_psi, regime_psi) = match (live, backtest) {
            (Some(l), Some(b)) => (
                share_psi(&b.actions(), &l.actions()),
                share_psi(&b.regimes(), &l.regimes()),
            ),
            _ => (None, None),
        };
        DriftSummary {
            window_seconds: self.config.window.as_secs_f64(),
            samples: decisions,
            min_samples: self.config.min_samples,
            reference_sha256: binning.map(|b| b.source.model_sha256.clone()),
            feature_psi,
            max_feature_psi,
            live,
            backtest,
            action_psi,
            regime_psi,
            judged,
            hit_rate,
            backtest_hit_rate,
            hit_rate_p_value,
        }
    }
}

/// PSI of `actual` shares against `expected` ones (both summing to about 1).
fn share_psi(expected: &[f64; 3], actual: &[f64; 3]) -> Option<f64> {
    // Shares as counts in millionths: the same floor and formula as the features'.
    let counts: Vec<u64> = actual.iter().map(|a| (a * MICRO).round() as u64).collect();
    psi(expected, &counts)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tradeserve_core::drift::Distribution;

    fn monitor() -> DriftMonitor {
        let m = DriftMonitor::new(DriftConfig {
            window: Duration::from_secs(3600),
            min_samples: 100,
            backtest_days: 1,
        });
        let deciles = Distribution {
            edges: (1..10).map(|i| f64::from(i) / 10.0).collect(),
            fractions: vec![0.1; 10],
        };
        let reference = Arc::new(Reference {
            model_sha256: "x".into(),
            data: String::new(),
            rows: 0,
            features: FEATURES
                .iter()
                .map(|f| ((*f).to_owned(), deciles.clone()))
                .collect(),
        });
        m.use_reference(Some(&reference));
        m
    }

    /// `n` inputs of symbol `s`, feature values spread evenly over [lo, lo + 0.1 × width),
    /// every other one a BUY whose outcome is a hit in `hit_fifths` of five.
    fn feed(m: &DriftMonitor, s: &str, n: usize, lo: f64, width: f64, hit_fifths: usize) {
        for i in 0..n {
            let x = lo + width * (i % 10) as f64 / 100.0 + 0.005;
            let buy = i % 2 == 0;
            m.count(&Input {
                symbol: s,
                bar: i as i64,
                features: &[x; FEATURE_WIDTH],
                action: if buy { Action::Buy } else { Action::Hold },
                regime: [0.2, 0.3, 0.5],
                outcome: buy.then_some(if (i / 2) % 5 < hit_fifths {
                    0.01
                } else {
                    -0.01
                }),
            });
        }
    }

    #[test]
    fn a_window_like_the_reference_is_stable_and_a_shifted_one_is_not() {
        let m = monitor();
        feed(&m, "A", 40, 0.0, 10.0, 3);
        // Too few inputs yet: nothing computed.
        let s = m.tick();
        assert_eq!((s.samples, s.max_feature_psi), (40, None));
        feed(&m, "B", 160, 0.0, 10.0, 3);
        // The same (symbol, bar) again is one input.
        feed(&m, "B", 160, 0.0, 10.0, 3);
        let s = m.tick();
        assert_eq!(s.samples, 200);
        assert!(s.max_feature_psi.unwrap() < 1e-9, "{s:?}");
        let live = s.live.unwrap();
        assert!((live.buy - 0.5).abs() < 1e-12 && (live.sideways - 0.5).abs() < 1e-9);
        assert_eq!(s.judged, 100);
        // No backtest yet: no comparison.
        assert_eq!((s.action_psi, s.hit_rate_p_value), (None, None));

        // Everything in the top three deciles: a major shift.
        feed(&m, "C", 600, 0.7, 3.0, 3);
        let s = m.tick();
        assert!(s.max_feature_psi.unwrap() > 0.25, "{s:?}");
    }

    #[test]
    fn live_orders_are_tested_against_the_backtest_hit_rate() {
        let m = monitor();
        m.set_expected(m_expected(0.55));
        // 1,000 orders hitting 40% of the time against an expected 55%.
        feed(&m, "A", 2000, 0.0, 10.0, 2);
        let s = m.tick();
        assert_eq!(s.judged, 1000);
        assert!((s.hit_rate.unwrap() - 0.4).abs() < 1e-12);
        assert!(s.hit_rate_p_value.unwrap() < 1e-10, "{s:?}");
        // The mix is the backtest's: PSI about 0.
        assert!(
            s.action_psi.unwrap() < 1e-6 && s.regime_psi.unwrap() < 1e-6,
            "{s:?}"
        );

        // As often as expected: the test says nothing.
        let m = monitor();
        m.set_expected(m_expected(0.6));
        feed(&m, "A", 2000, 0.0, 10.0, 3);
        assert!(m.tick().hit_rate_p_value.unwrap() > 0.3);
    }

    fn m_expected(hit_rate: f64) -> Option<Expected> {
        Some(Expected {
            versions: Default::default(),
            mix: Mix {
                buy: 0.5,
                sell: 0.0,
                hold: 0.5,
                bull: 0.2,
                bear: 0.3,
                sideways: 0.5,
            },
            hit_rate: Some(hit_rate),
            decisions: 1000,
        })
    }
}
