//! The decision kernel: the ensemble (regime detector → entropy → meta-controller or override
//! → specialists → blend → choose) and the sizing of its result, as one pure function of the
//! model set, the feature snapshot, the override and the outputs already fetched from remote
//! backends. The request path, the shadow runner and replay all run it, so all three decide
//! alike.
//!
//! The ensemble's stages are written once, here ([`Stages`]): which roles take the features
//! alone, and whether the meta-controller runs on the regime. The in-process evaluation walks
//! them in order, and the remote path ([`crate::remote::fetch`]) calls the same stages'
//! remote roles before it — the first stage's all at once, since their input is ready.

use crate::blend::{self, Probs};
use crate::error::{ModelError, PredictError};
use crate::model_set::{LoadedModel, ModelSet};
use crate::schema::{FEATURE_WIDTH, META_WIDTH, RET_15, VOL_15};
use crate::sizing::SizingPolicy;
use crate::snapshot::FeatureSnapshot;
use crate::types::{Action, Role, RoleSet, Specialist};

/// Everything the ensemble computed for one feature snapshot. Pure function of the
/// snapshot, the model set and the override: what replay re-runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub regime: Probs,
    pub entropy: f64,
    pub weights: Probs,
    pub specialists: [Probs; 3],
    pub blended: Probs,
    pub action: Action,
    pub confidence: f64,
    pub dominant: Specialist,
}

/// Outputs of the roles served by remote backends, fetched for one request before the
/// kernel runs ([`crate::remote::fetch`]); the kernel uses them in place of the in-process
/// engines. [`Fetched::NONE`] runs every role in process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Fetched {
    /// Raw outputs, indexed by [`Role::index`].
    outputs: [Option<[f32; 3]>; 5],
    /// Remote roles whose backend failed, run by their in-process copy instead.
    pub fell_back: RoleSet,
}

impl Fetched {
    pub const NONE: Fetched = Fetched {
        outputs: [None; 5],
        fell_back: RoleSet::EMPTY,
    };

    pub fn set(&mut self, role: Role, output: [f32; 3]) {
        self.outputs[role.index()] = Some(output);
    }

    pub fn get(&self, role: Role) -> Option<[f32; 3]> {
        self.outputs[role.index()]
    }
}

/// The ensemble's stages for one decision: the roles whose input is the features alone (the
/// regime detector, and the specialists the decision may need: the override's alone, or all
/// three), then the weights: the meta-controller on the regime, or the override's. In process,
/// a specialist runs only once the weights give it a share; a remote one is called up front,
/// alongside the regime detector.
#[derive(Debug, Clone, Copy)]
pub struct Stages<'a> {
    models: &'a ModelSet,
    strategy_override: Option<Specialist>,
}

/// Where a decision's specialist weights come from.
#[derive(Debug, Clone, Copy)]
pub enum Weighting<'a> {
    /// The meta-controller, on the regime ([`meta_input`]).
    Meta(&'a LoadedModel),
    /// An override: all on one specialist.
    Fixed(Probs),
}

impl<'a> Stages<'a> {
    pub fn new(models: &'a ModelSet, strategy_override: Option<Specialist>) -> Stages<'a> {
        Stages {
            models,
            strategy_override,
        }
    }

    /// The specialists the decision may need, in [`Specialist::ALL`] order.
    pub fn specialists(&self) -> impl Iterator<Item = (Specialist, &'a LoadedModel)> + use<'a> {
        let (models, only) = (self.models, self.strategy_override);
        Specialist::ALL
            .into_iter()
            .filter(move |s| only.is_none_or(|o| o == *s))
            .map(move |s| (s, models.specialist(s)))
    }

    /// The first stage: every role whose input is the features, regime detector first.
    pub fn on_features(&self) -> impl Iterator<Item = &'a LoadedModel> + use<'a> {
        std::iter::once(&self.models.regime_detector).chain(self.specialists().map(|(_, m)| m))
    }

    /// The second stage: the weights.
    pub fn weighting(&self) -> Weighting<'a> {
        match self.strategy_override {
            Some(s) => {
                let mut w = [0.0; 3];
                w[s.index()] = 1.0;
                Weighting::Fixed(w)
            }
            None => Weighting::Meta(&self.models.meta_controller),
        }
    }
}

/// The role's output for `input`: fetched already, or from its in-process engine.
pub(crate) fn run(
    model: &LoadedModel,
    input: &[f32],
    fetched: &Fetched,
) -> Result<Probs, PredictError> {
    let role = model.info.role;
    let raw = match fetched.get(role) {
        Some(raw) => raw,
        None => model
            .model
            .predict(input)
            .map_err(|cause| PredictError::Model { role, cause })?,
    };
    normalized(role, raw)
}

/// A model's raw output as probabilities, or why it is not one.
pub(crate) fn normalized(role: Role, raw: [f32; 3]) -> Result<Probs, PredictError> {
    blend::normalize(raw).ok_or(PredictError::Model {
        role,
        cause: ModelError::BadOutput(raw.to_vec()),
    })
}

/// The meta-controller's input: the regime, its entropy, the hit rates and two features.
pub(crate) fn meta_input(
    regime: &Probs,
    entropy: f64,
    snapshot: &FeatureSnapshot,
) -> [f32; META_WIDTH] {
    let h = &snapshot.hit_rates;
    let f = &snapshot.features;
    [
        regime[0], regime[1], regime[2], entropy, h[0], h[1], h[2], f[VOL_15], f[RET_15],
    ]
    .map(|v| v as f32)
}

/// Run the ensemble on one feature snapshot, every role in process.
pub fn evaluate(
    models: &ModelSet,
    snapshot: &FeatureSnapshot,
    strategy_override: Option<Specialist>,
) -> Result<Evaluation, PredictError> {
    evaluate_with(models, snapshot, strategy_override, &Fetched::NONE)
}

/// [`evaluate`], with the outputs of remote roles already `fetched`.
pub fn evaluate_with(
    models: &ModelSet,
    snapshot: &FeatureSnapshot,
    strategy_override: Option<Specialist>,
    fetched: &Fetched,
) -> Result<Evaluation, PredictError> {
    let stages = Stages::new(models, strategy_override);
    let x: [f32; FEATURE_WIDTH] = snapshot.features.map(|v| v as f32);
    let regime = run(&models.regime_detector, &x, fetched)?;
    let entropy = blend::normalized_entropy(&regime);
    let weights = match stages.weighting() {
        Weighting::Meta(meta) => run(meta, &meta_input(&regime, entropy, snapshot), fetched)?,
        Weighting::Fixed(w) => w,
    };
    let mut specialists = [[0.0, 0.0, 1.0]; 3];
    for (s, model) in stages.specialists() {
        if weights[s.index()] > 0.0 {
            specialists[s.index()] = run(model, &x, fetched)?;
        }
    }
    let blended = blend::blend(&weights, &specialists);
    let (action, confidence) = blend::choose(&blended);
    let dominant = Specialist::ALL[blend::argmax(&weights)];
    Ok(Evaluation {
        regime,
        entropy,
        weights,
        specialists,
        blended,
        action,
        confidence,
        dominant,
    })
}

/// What the ensemble decided for one snapshot, and the quantity the sizing policy gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sized {
    pub eval: Evaluation,
    pub quantity: u64,
}

/// The decision kernel: run the ensemble on a snapshot and size the result. One function for
/// the request path, the shadow runner and replay, so all three decide alike.
pub fn kernel(
    models: &ModelSet,
    snapshot: &FeatureSnapshot,
    strategy_override: Option<Specialist>,
    sizing: &SizingPolicy,
) -> Result<Sized, PredictError> {
    kernel_with(models, snapshot, strategy_override, sizing, &Fetched::NONE)
}

/// [`kernel`], with the outputs of remote roles already `fetched` (the request path).
pub fn kernel_with(
    models: &ModelSet,
    snapshot: &FeatureSnapshot,
    strategy_override: Option<Specialist>,
    sizing: &SizingPolicy,
    fetched: &Fetched,
) -> Result<Sized, PredictError> {
    let eval = evaluate_with(models, snapshot, strategy_override, fetched)?;
    let quantity = sizing.quantity(
        eval.action,
        eval.confidence,
        snapshot.price,
        snapshot.features[VOL_15],
    );
    Ok(Sized { eval, quantity })
}
