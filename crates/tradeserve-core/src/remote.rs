//! Remote roles on the request path. Before the kernel runs, every role of the model set that
//! a remote backend serves is called, within the request's deadline, stage by stage as the
//! kernel defines them ([`Stages`]): the roles whose input is the features alone all at once
//! (the regime detector and the specialists the decision may need), then the meta-controller
//! (its input needs the regime). The kernel then uses these outputs in place of the in-process
//! engines ([`Fetched`]). A set with no remote role costs nothing here.

use std::time::Instant;

use futures_util::future::join_all;

use crate::blend;
use crate::error::{ModelError, PredictError};
use crate::kernel::{Fetched, Stages, Weighting, meta_input, normalized, run};
use crate::model_set::{LoadedModel, ModelSet};
use crate::schema::FEATURE_WIDTH;
use crate::snapshot::FeatureSnapshot;
use crate::types::Specialist;

/// What a remote role's failure leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// The request fails: 503 `backend_unavailable` naming the role (504 at the deadline).
    #[default]
    None,
    /// The role's in-process copy of the same version answers instead (counted).
    InProcess,
}

/// Call the remote roles `models` needs for this snapshot; `deadline` bounds every call.
pub async fn fetch(
    models: &ModelSet,
    snapshot: &FeatureSnapshot,
    strategy_override: Option<Specialist>,
    deadline: Instant,
    fallback: Fallback,
) -> Result<Fetched, PredictError> {
    let mut fetched = Fetched::NONE;
    if !models.has_remote() {
        return Ok(fetched);
    }
    let stages = Stages::new(models, strategy_override);
    let x: [f32; FEATURE_WIDTH] = snapshot.features.map(|v| v as f32);
    let first: Vec<&LoadedModel> = stages
        .on_features()
        .filter(|m| m.remote.is_some())
        .collect();
    let calls = first.iter().map(|m| call(m, x.to_vec(), deadline));
    for (m, output) in first.iter().zip(join_all(calls).await) {
        take(&mut fetched, m, output, fallback)?;
    }
    // The meta-controller's input needs the regime (fetched above, or run here in process).
    if let Weighting::Meta(meta) = stages.weighting()
        && meta.remote.is_some()
    {
        let regime = run(&models.regime_detector, &x, &fetched)?;
        let entropy = blend::normalized_entropy(&regime);
        let input = meta_input(&regime, entropy, snapshot).to_vec();
        let output = call(meta, input, deadline).await;
        take(&mut fetched, meta, output, fallback)?;
    }
    Ok(fetched)
}

/// Keep a remote output; on a backend failure, fall back to the in-process copy when the
/// policy allows it.
fn take(
    fetched: &mut Fetched,
    model: &LoadedModel,
    output: Result<[f32; 3], PredictError>,
    fallback: Fallback,
) -> Result<(), PredictError> {
    match output {
        Ok(raw) => fetched.set(model.info.role, raw),
        Err(PredictError::Model {
            cause: ModelError::Unavailable(_) | ModelError::Deadline,
            ..
        }) if fallback == Fallback::InProcess => fetched.fell_back.insert(model.info.role),
        Err(e) => return Err(e),
    }
    Ok(())
}

/// One remote call; its output must be a probability vector.
async fn call(
    model: &LoadedModel,
    input: Vec<f32>,
    deadline: Instant,
) -> Result<[f32; 3], PredictError> {
    let role = model.info.role;
    let Some(remote) = &model.remote else {
        return Err(PredictError::Model {
            role,
            cause: ModelError::Unavailable("no remote backend".into()),
        });
    };
    let raw = remote
        .infer(input, deadline)
        .await
        .map_err(|cause| PredictError::Model { role, cause })?;
    normalized(role, raw)?;
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parking_lot::Mutex;

    use time::macros::datetime;

    use super::*;
    use crate::kernel::evaluate_with;
    use crate::model_set::{BackendInfo, InferenceModel, ModelInfo, RemoteModel, RemoteRows};
    use crate::types::Role;

    /// Always the same output, in process.
    struct Fixed([f32; 3]);

    impl InferenceModel for Fixed {
        fn predict(&self, _: &[f32]) -> Result<[f32; 3], ModelError> {
            Ok(self.0)
        }
    }

    /// A remote model that records its inputs and answers `answer`.
    struct Recorded {
        answer: Result<[f32; 3], ModelError>,
        inputs: Mutex<Vec<Vec<f32>>>,
        info: BackendInfo,
    }

    impl RemoteModel for Recorded {
        fn infer_rows(&self, input: Vec<f32>, _: usize, _: Instant) -> RemoteRows {
            self.inputs.lock().push(input);
            let answer = self.answer.clone().map(|a| vec![a]);
            Box::pin(async move { answer })
        }

        fn backend(&self) -> &BackendInfo {
            &self.info
        }
    }

    fn recorded(answer: Result<[f32; 3], ModelError>) -> Arc<Recorded> {
        Arc::new(Recorded {
            answer,
            inputs: Mutex::new(Vec::new()),
            info: BackendInfo {
                kind: "test",
                endpoint: "test://".into(),
                model: "m".into(),
            },
        })
    }

    fn loaded(role: Role, remote: Option<Arc<Recorded>>) -> LoadedModel {
        LoadedModel {
            info: ModelInfo {
                role,
                name: role.registry_name(),
                version: "1".into(),
                alias: None,
                source: "test".into(),
                sha256: String::new(),
                loaded_at: datetime!(2025-01-01 0:00 UTC),
            },
            model: Arc::new(Fixed([0.2, 0.3, 0.5])),
            remote: remote.map(|r| r as Arc<dyn RemoteModel>),
            input_means: Arc::from(vec![0.0; 12]),
            drift_reference: None,
        }
    }

    /// Every role in process but the meta-controller and the bull specialist, when given.
    fn set_with(meta: Option<Arc<Recorded>>, bull: Option<Arc<Recorded>>) -> ModelSet {
        ModelSet::new(
            loaded(Role::RegimeDetector, None),
            loaded(Role::MetaController, meta),
            [
                loaded(Role::BullSpecialist, bull),
                loaded(Role::BearSpecialist, None),
                loaded(Role::SidewaysSpecialist, None),
            ],
        )
    }

    fn snapshot() -> FeatureSnapshot {
        FeatureSnapshot {
            as_of: datetime!(2025-01-01 0:00 UTC),
            price: 100.0,
            features: [0.01; FEATURE_WIDTH],
            hit_rates: [0.5; 3],
        }
    }

    /// Poll a future whose remote calls are all ready at once.
    fn ready<T>(f: impl std::future::Future<Output = T>) -> T {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("a test remote call is never pending"),
        }
    }

    #[test]
    fn remote_roles_are_fetched_and_used_in_place_of_their_engines() {
        let (meta, bull) = (
            recorded(Ok([0.6, 0.3, 0.1])),
            recorded(Ok([0.9, 0.05, 0.05])),
        );
        let set = set_with(Some(meta.clone()), Some(bull.clone()));
        let s = snapshot();
        let deadline = Instant::now() + std::time::Duration::from_secs(600);
        let fetched = ready(fetch(&set, &s, None, deadline, Fallback::None)).unwrap();
        assert_eq!(fetched.get(Role::BullSpecialist), Some([0.9, 0.05, 0.05]));
        assert_eq!(fetched.get(Role::MetaController), Some([0.6, 0.3, 0.1]));
        assert_eq!(fetched.get(Role::RegimeDetector), None);
        // The meta-controller got the regime the in-process detector gave, then its entropy.
        let meta_in = meta.inputs.lock()[0].clone();
        assert_eq!(meta_in.len(), crate::schema::META_WIDTH);
        assert_eq!(&meta_in[..3], &[0.2, 0.3, 0.5]);
        assert_eq!(bull.inputs.lock()[0], vec![0.01f32; FEATURE_WIDTH]);
        let eval = evaluate_with(&set, &s, None, &fetched).unwrap();
        assert!((eval.weights[0] - 0.6).abs() < 1e-6);
        assert!((eval.specialists[0][0] - 0.9).abs() < 1e-6);
        assert!(
            (eval.specialists[1][2] - 0.5).abs() < 1e-6,
            "bear ran in process"
        );
    }

    #[test]
    fn an_override_calls_only_its_specialist_and_an_error_names_the_role() {
        let bull = recorded(Err(ModelError::Unavailable("refused".into())));
        let meta = recorded(Ok([0.6, 0.3, 0.1]));
        let set = set_with(Some(meta.clone()), Some(bull.clone()));
        let deadline = Instant::now() + std::time::Duration::from_secs(600);
        let fetched = ready(fetch(
            &set,
            &snapshot(),
            Some(Specialist::Bear),
            deadline,
            Fallback::None,
        ))
        .unwrap();
        assert_eq!(fetched, Fetched::NONE);
        assert!(bull.inputs.lock().is_empty());
        assert!(
            meta.inputs.lock().is_empty(),
            "an override skips the meta-controller"
        );
        match ready(fetch(&set, &snapshot(), None, deadline, Fallback::None)) {
            Err(PredictError::Model {
                role: Role::BullSpecialist,
                cause: ModelError::Unavailable(_),
            }) => {}
            other => panic!("{other:?}"),
        }
        // With the in-process fallback the failed role runs here, and says so.
        let fetched = ready(fetch(
            &set,
            &snapshot(),
            None,
            deadline,
            Fallback::InProcess,
        ))
        .unwrap();
        assert_eq!(fetched.get(Role::BullSpecialist), None);
        assert!(fetched.fell_back.contains(Role::BullSpecialist));
        assert_eq!(fetched.fell_back.iter().count(), 1);
        let eval = evaluate_with(&set, &snapshot(), None, &fetched).unwrap();
        assert!(
            (eval.specialists[0][2] - 0.5).abs() < 1e-6,
            "bull ran in process"
        );
        // A set with no remote role fetches nothing.
        let local = set_with(None, None);
        assert_eq!(
            ready(fetch(&local, &snapshot(), None, deadline, Fallback::None)).unwrap(),
            Fetched::NONE
        );
    }
}
