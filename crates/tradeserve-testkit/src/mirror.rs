//! A stand-in remote backend for fast tests of what goes *through* the `RemoteModel` port:
//! it answers with the in-process engine it wraps (so results must equal in-process ones),
//! records every call's row count, and can be switched off to fail like a dead server.
//! The real servers (KServe, TorchServe) are tested against the same port elsewhere; this is
//! for counting calls and injecting faults, never instead of them.

use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tradeserve_core::error::ModelError;
use tradeserve_core::model_set::{
    BackendInfo, InferenceModel, LoadedModel, ModelSet, RemoteModel, RemoteRows,
};

/// See the module docs.
pub struct Mirror {
    engine: Arc<dyn InferenceModel>,
    info: BackendInfo,
    /// Rows of each call, in order.
    pub calls: Mutex<Vec<usize>>,
    /// While set, every call fails as an unreachable server does.
    pub down: AtomicBool,
}

impl Mirror {
    /// A mirror of `model`'s in-process engine.
    pub fn of(model: &LoadedModel) -> Arc<Mirror> {
        Arc::new(Mirror {
            engine: Arc::clone(&model.model),
            info: BackendInfo {
                kind: "mirror",
                endpoint: format!("mirror://{}", model.info.role),
                model: model.info.role.as_str().to_owned(),
            },
            calls: Mutex::new(Vec::new()),
            down: AtomicBool::new(false),
        })
    }

    /// Rows of each call so far.
    pub fn calls(&self) -> Vec<usize> {
        self.calls.lock().clone()
    }
}

impl RemoteModel for Mirror {
    fn infer_rows(&self, rows: Vec<f32>, width: usize, _: Instant) -> RemoteRows {
        self.calls.lock().push(rows.len() / width.max(1));
        let answer = match self.down.load(Ordering::SeqCst) {
            true => Err(ModelError::Unavailable("mirror is down".into())),
            false => self.engine.predict_batch(&rows, width),
        };
        Box::pin(async move { answer })
    }

    fn backend(&self) -> &BackendInfo {
        &self.info
    }
}

/// `set` with its three specialists on mirrors; the mirrors, in `Specialist::ALL` order.
pub fn specialists_on_mirrors(set: &ModelSet) -> (ModelSet, [Arc<Mirror>; 3]) {
    let mirrors = set.specialists.each_ref().map(Mirror::of);
    let specialists = std::array::from_fn(|i| {
        let mut m = set.specialists[i].clone();
        m.remote = Some(Arc::clone(&mirrors[i]) as Arc<dyn RemoteModel>);
        m
    });
    (
        ModelSet::new(
            set.regime_detector.clone(),
            set.meta_controller.clone(),
            specialists,
        ),
        mirrors,
    )
}
