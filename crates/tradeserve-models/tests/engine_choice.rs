//! `models.engine = "tract"`: every model is served by tract, even a plain dense MLP (a test
//! binary of its own: the choice is process-wide).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use tradeserve_core::ports::InferenceModel;
use tradeserve_models::engine::TractModel;
use tradeserve_models::model_dir::golden_inputs;
use tradeserve_models::onnx::{EngineChoice, OnnxModel, choose_engine};

#[test]
fn the_tract_choice_serves_every_model_with_tract() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/bull_specialist/1");
    let bytes = std::fs::read(dir.join("model.onnx")).unwrap();
    let golden = golden_inputs(&std::fs::read(dir.join("golden.json")).unwrap());
    assert_eq!("tract".parse::<EngineChoice>(), Ok(EngineChoice::Tract));
    assert_eq!("auto".parse::<EngineChoice>(), Ok(EngineChoice::Auto));
    assert!("onnxruntime".parse::<EngineChoice>().is_err());
    assert_eq!(
        OnnxModel::load(&bytes, "features", 12, &golden)
            .unwrap()
            .engine(),
        "dense"
    );
    choose_engine(EngineChoice::Tract);
    let served = OnnxModel::load(&bytes, "features", 12, &golden).unwrap();
    assert_eq!(served.engine(), "tract");
    let x = [
        0.001f32, 0.002, 0.003, 0.004, 0.0008, 0.0009, 0.9, 0.55, 0.001, 0.002, 0.0015, 0.3,
    ];
    let tract = TractModel::load(&bytes, "features", 12).unwrap();
    assert_eq!(served.predict(&x).unwrap(), tract.predict(&x).unwrap());
    choose_engine(EngineChoice::Auto);
    assert_eq!(
        OnnxModel::load(&bytes, "features", 12, &golden)
            .unwrap()
            .engine(),
        "dense"
    );
}
