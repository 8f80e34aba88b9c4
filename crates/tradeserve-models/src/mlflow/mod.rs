//! The MLflow Model Registry as a model source.
//!
//! - [`client`]: the REST calls TradeServe uses (aliases, versions, runs, the artifact proxy).
//! - [`location`]: turning a model version's `source` into a path under the artifact proxy.
//! - [`cache`]: the on-disk cache of downloaded model folders, keyed by name/version and
//!   verified by digest on every load, plus the last resolution for starting while MLflow is
//!   down.
//! - [`registry`]: resolving every role's alias and fetching a whole model set.
//! - [`publish`]: registering a model folder as a new version (and moving an alias).
//! - [`uri`]: one version named by `models:/<name>@<alias>` or `models:/<name>/<version>`,
//!   downloaded into the cache.

pub mod cache;
pub mod client;
pub mod location;
pub mod publish;
pub mod registry;
pub mod uri;

pub use cache::ModelCache;
pub use client::{MlflowClient, MlflowError};
pub use registry::{MlflowRegistry, Resolution, RoleSpec};
