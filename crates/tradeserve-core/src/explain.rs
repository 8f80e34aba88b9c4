//! Explanations: Shapley values of the blended probability of the chosen action with respect
//! to the ensemble's inputs (the 12 features and the 3 strategy hit rates), through the whole
//! ensemble (regime detector → meta-controller → specialists → blend), against a baseline (the
//! training means shipped in the models' `MLmodel` metadata).
//!
//! Estimation is by permutation sampling with antithetic pairs (each permutation is also walked
//! in reverse), as Python's `shap.PermutationExplainer` does: every pass adds the players one
//! by one, from the baseline to the request, so each pass's marginal contributions sum exactly
//! to `f(x) − f(baseline)` and so does their mean (efficiency holds for any number of
//! permutations). All coalitions of one explanation are evaluated as one batch per model. The
//! permutations come from a fixed seed: the same request gets the same explanation.

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;

use crate::blend::{self, Probs};
use crate::error::{ModelError, PredictError};
use crate::model_set::{LoadedModel, ModelSet};
use crate::schema::{FEATURE_WIDTH, FEATURES, HIT_RATES, META_WIDTH, RET_15, VOL_15};
use crate::snapshot::FeatureSnapshot;
use crate::types::{Action, Specialist};

/// Players: the features, then the hit rates.
pub const PLAYERS: usize = FEATURE_WIDTH + HIT_RATES.len();

/// Name of each player, in order.
pub fn player_names() -> impl Iterator<Item = &'static str> {
    FEATURES.iter().chain(HIT_RATES.iter()).copied()
}

/// How explanations are estimated.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExplainConfig {
    /// Permutations sampled (each also walked in reverse).
    pub permutations: usize,
    /// Seed of the permutation sampler.
    pub seed: u64,
    /// Explanations computed at once (server); more are answered 429 at once.
    pub max_in_flight: std::num::NonZeroUsize,
}

impl Default for ExplainConfig {
    fn default() -> Self {
        ExplainConfig {
            permutations: 64,
            seed: 0x5eed_5a4b,
            max_in_flight: crate::bounded::at_least_one_usize(4),
        }
    }
}

/// The attributions of one decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The action whose blended probability is explained.
    pub output: Action,
    /// The blended probability of `output` at the baseline.
    pub base_value: f64,
    /// One value per player, in [`player_names`] order; `base_value + Σ values = f(x)`.
    pub values: [f64; PLAYERS],
    /// The blended probability of `output` for the request, as the batch computed it.
    pub output_value: f64,
}

/// The baseline: the regime detector's training means of the features and the
/// meta-controller's training means of the hit rates.
pub fn baseline(models: &ModelSet) -> Option<[f64; PLAYERS]> {
    let features = &models.regime_detector.input_means;
    let meta = &models.meta_controller.input_means;
    if features.len() != FEATURE_WIDTH || meta.len() != META_WIDTH {
        return None;
    }
    let mut b = [0.0; PLAYERS];
    b[..FEATURE_WIDTH].copy_from_slice(features);
    // META_INPUTS: p_bull, p_bear, p_sideways, entropy, hit_bull, hit_bear, hit_sideways, …
    b[FEATURE_WIDTH..].copy_from_slice(&meta[4..4 + HIT_RATES.len()]);
    Some(b)
}

fn model_error(model: &LoadedModel, cause: ModelError) -> PredictError {
    PredictError::Model {
        role: model.info.role,
        cause,
    }
}

/// Runs one model over a batch of rows (`n × width`, row-major): in process, or through the
/// role's remote backend as one batched call (the server's explainer).
pub trait BatchRunner {
    fn run(
        &self,
        model: &LoadedModel,
        rows: &[f32],
        width: usize,
    ) -> Result<Vec<[f32; 3]>, ModelError>;
}

/// The in-process engines (the embedded explainer uses them for remote roles too: the
/// in-process copy is the same verified version).
pub struct InProcess;

impl BatchRunner for InProcess {
    fn run(
        &self,
        model: &LoadedModel,
        rows: &[f32],
        width: usize,
    ) -> Result<Vec<[f32; 3]>, ModelError> {
        model.model.predict_batch(rows, width)
    }
}

/// What is explained: the blended probability of `action` for `snapshot` on `models`.
#[derive(Clone, Copy)]
pub struct Question<'a> {
    pub models: &'a ModelSet,
    pub snapshot: &'a FeatureSnapshot,
    pub strategy_override: Option<Specialist>,
    pub action: Action,
}

fn run_batch(
    model: &LoadedModel,
    rows: &[f32],
    width: usize,
    runner: &dyn BatchRunner,
) -> Result<Vec<Probs>, PredictError> {
    let raw = runner
        .run(model, rows, width)
        .map_err(|e| model_error(model, e))?;
    raw.into_iter()
        .map(|r| {
            blend::normalize(r).ok_or_else(|| model_error(model, ModelError::BadOutput(r.to_vec())))
        })
        .collect()
}

/// The blended probability of `action` for each row of players, computed as
/// [`crate::pipeline::evaluate`] computes it, one batch per model.
pub fn blended_batch(
    models: &ModelSet,
    rows: &[[f64; PLAYERS]],
    strategy_override: Option<Specialist>,
    action: Action,
) -> Result<Vec<f64>, PredictError> {
    blended_batch_with(models, rows, strategy_override, action, &InProcess)
}

/// [`blended_batch`] with each model's batch run by `runner`.
pub fn blended_batch_with(
    models: &ModelSet,
    rows: &[[f64; PLAYERS]],
    strategy_override: Option<Specialist>,
    action: Action,
    runner: &dyn BatchRunner,
) -> Result<Vec<f64>, PredictError> {
    let x: Vec<f32> = rows
        .iter()
        .flat_map(|r| r[..FEATURE_WIDTH].iter().map(|v| *v as f32))
        .collect();
    let regime = run_batch(&models.regime_detector, &x, FEATURE_WIDTH, runner)?;
    let weights: Vec<Probs> = match strategy_override {
        Some(s) => {
            let mut w = [0.0; 3];
            w[s.index()] = 1.0;
            vec![w; rows.len()]
        }
        None => {
            let meta: Vec<f32> = rows
                .iter()
                .zip(&regime)
                .flat_map(|(r, p)| {
                    let h = &r[FEATURE_WIDTH..];
                    [
                        p[0],
                        p[1],
                        p[2],
                        blend::normalized_entropy(p),
                        h[0],
                        h[1],
                        h[2],
                        r[VOL_15],
                        r[RET_15],
                    ]
                    .map(|v| v as f32)
                })
                .collect();
            run_batch(&models.meta_controller, &meta, META_WIDTH, runner)?
        }
    };
    let mut specialists: Vec<[Probs; 3]> = vec![[[0.0, 0.0, 1.0]; 3]; rows.len()];
    for s in Specialist::ALL {
        if weights.iter().all(|w| w[s.index()] <= 0.0) {
            continue;
        }
        let out = run_batch(models.specialist(s), &x, FEATURE_WIDTH, runner)?;
        for (row, p) in specialists.iter_mut().zip(out) {
            row[s.index()] = p;
        }
    }
    let i = match action {
        Action::Buy => 0,
        Action::Sell => 1,
        Action::Hold => 2,
    };
    Ok(weights
        .iter()
        .zip(&specialists)
        .map(|(w, p)| blend::blend(w, p)[i])
        .collect())
}

/// Explain the blended probability of `action` for `snapshot`, in process.
pub fn explain(
    models: &ModelSet,
    snapshot: &FeatureSnapshot,
    strategy_override: Option<Specialist>,
    action: Action,
    config: &ExplainConfig,
) -> Result<Explanation, PredictError> {
    let q = Question {
        models,
        snapshot,
        strategy_override,
        action,
    };
    explain_with(&q, config, &InProcess)
}

/// [`explain`], each model's coalitions run by `runner` as one batch.
pub fn explain_with(
    q: &Question<'_>,
    config: &ExplainConfig,
    runner: &dyn BatchRunner,
) -> Result<Explanation, PredictError> {
    let (models, snapshot, action) = (q.models, q.snapshot, q.action);
    let base = baseline(models).ok_or_else(|| PredictError::Model {
        role: models.regime_detector.info.role,
        cause: ModelError::Inference("the models ship no training means to explain against".into()),
    })?;
    let mut x = [0.0; PLAYERS];
    x[..FEATURE_WIDTH].copy_from_slice(&snapshot.features);
    x[FEATURE_WIDTH..].copy_from_slice(&snapshot.hit_rates);

    // Rows: the baseline, the request, then for each pass the PLAYERS − 1 coalitions between.
    let mut rng = SmallRng::seed_from_u64(config.seed);
    let mut order: Vec<usize> = (0..PLAYERS).collect();
    let mut passes: Vec<Vec<usize>> = Vec::with_capacity(2 * config.permutations.max(1));
    for _ in 0..config.permutations.max(1) {
        order.shuffle(&mut rng);
        passes.push(order.clone());
        passes.push(order.iter().rev().copied().collect());
    }
    let mut rows = Vec::with_capacity(2 + passes.len() * (PLAYERS - 1));
    rows.push(base);
    rows.push(x);
    for pass in &passes {
        let mut row = base;
        for &p in &pass[..PLAYERS - 1] {
            row[p] = x[p];
            rows.push(row);
        }
    }
    let f = blended_batch_with(models, &rows, q.strategy_override, action, runner)?;
    let (f_base, f_x) = (f[0], f[1]);
    let mut values = [0.0; PLAYERS];
    for (k, pass) in passes.iter().enumerate() {
        let inner = &f[2 + k * (PLAYERS - 1)..2 + (k + 1) * (PLAYERS - 1)];
        let mut prev = f_base;
        for (step, &p) in pass.iter().enumerate() {
            let next = inner.get(step).copied().unwrap_or(f_x);
            values[p] += next - prev;
            prev = next;
        }
    }
    let n = passes.len() as f64;
    Ok(Explanation {
        output: action,
        base_value: f_base,
        values: values.map(|v| v / n),
        output_value: f_x,
    })
}

impl serde::Serialize for Explanation {
    /// `{"method": "shap", "output": "<action>", "base_value": b, "values": {feature: v}}`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Values<'a>(&'a [f64; PLAYERS]);
        impl serde::Serialize for Values<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(Some(PLAYERS))?;
                for (name, v) in player_names().zip(self.0) {
                    map.serialize_entry(name, v)?;
                }
                map.end()
            }
        }
        let mut map = s.serialize_map(Some(4))?;
        map.serialize_entry("method", "shap")?;
        map.serialize_entry("output", &self.output)?;
        map.serialize_entry("base_value", &self.base_value)?;
        map.serialize_entry("values", &Values(&self.values))?;
        map.end()
    }
}

/// One attribution of an event's `explanation.top`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Attribution {
    pub feature: std::borrow::Cow<'static, str>,
    pub value: f64,
}

/// What a decision event carries of an explanation: the largest attributions.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EventExplanation {
    pub method: std::borrow::Cow<'static, str>,
    pub output: Action,
    pub base_value: f64,
    /// The [`TOP`] largest attributions by magnitude, largest first.
    pub top: Vec<Attribution>,
}

/// Attributions an event carries.
pub const TOP: usize = 5;

impl Explanation {
    pub fn for_event(&self) -> EventExplanation {
        let mut all: Vec<Attribution> = player_names()
            .zip(self.values)
            .map(|(feature, value)| Attribution {
                feature: feature.into(),
                value,
            })
            .collect();
        all.sort_by(|a, b| b.value.abs().total_cmp(&a.value.abs()));
        all.truncate(TOP);
        EventExplanation {
            method: "shap".into(),
            output: self.output,
            base_value: self.base_value,
            top: all,
        }
    }
}
