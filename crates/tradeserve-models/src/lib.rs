//! Models: ONNX engines, MLflow-layout model folders, and model sets.
//!
//! - [`mlmodel`]: reading an `MLmodel` file and checking its signature against the schema.
//! - [`engine`]: the pure-Rust `tract-onnx` engine behind the core's `InferenceModel` port.
//! - [`dense`]: the dense-MLP evaluator for plain MatMul/Gemm + activation graphs.
//! - [`onnx`]: which of the two serves a model (dense only where it agrees with tract).
//! - [`model_dir`]: loading and verifying one model folder (digest, signature, golden vectors).
//! - [`bundled`]: the embedded model source: `models/<role>/<version>/` folders in the repo.
//! - [`mlflow`]: the MLflow Model Registry as a source: client, disk cache, resolution, publish.
//! - [`remote`]: roles served by another process (Open Inference Protocol servers), behind the
//!   core's `RemoteModel` port.

pub mod bundled;
pub mod dense;
pub mod engine;
pub mod mlflow;
pub mod mlmodel;
pub mod model_dir;
pub mod onnx;
pub mod remote;

pub use bundled::{BundledModels, VersionSelection};
pub use mlflow::RoleSpec;
pub use model_dir::{ModelLoadError, load_model_dir};
