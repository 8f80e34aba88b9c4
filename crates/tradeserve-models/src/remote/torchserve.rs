//! TorchServe: its inference API (`POST {inference_url}/predictions/{model}/{version}` with
//! `{"data": [[x0, ...]]}`, answered `[[p0, p1, p2]]` by the handler the project ships,
//! `serving/torchserve/handler.py`; or, with `protocol = "grpc"`, the same body through its
//! gRPC inference API at `grpc_url`: [`super::torchserve_grpc`]) and its management API's model status, which says whether
//! a version has a READY worker (TorchServe's `/ping` stays Healthy while a worker crash-loops).
//!
//! The client, its in-flight bound and the deadline are [`crate::remote::http`]'s; the
//! management calls are [`crate::remote::torchserve_mgmt`]'s. [`TorchServe::ensure`] makes a
//! version servable: registered already, or packaged into TorchServe's model store (when
//! TradeServe can write it) and registered through the management API.

use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tradeserve_core::bounded::{PositiveDuration, at_least_one_u32, at_least_one_usize};
use tradeserve_core::error::InvalidSetting;

use serde::{Deserialize, Serialize};
use tradeserve_core::model_set::{BackendInfo, RemoteModel, RemoteRows};
use tradeserve_core::types::Role;

use crate::remote::grpc::{ClientError, GrpcBackend, WireProtocol};
use crate::remote::http::{HttpBackend, bad_rows, rows_of_three, split_rows};
use crate::remote::package::{PackageError, PackageSpec, package};
use crate::remote::torchserve_grpc::TorchServeGrpcModel;
use crate::remote::torchserve_mgmt::{Management, ManagementError, Registration};

/// `[models.torchserve]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TorchServeConfig {
    /// The inference API, e.g. `http://127.0.0.1:8080` (TorchServe's default port, which is
    /// also TradeServe's: move one of them).
    pub inference_url: String,
    /// The management API, e.g. `http://127.0.0.1:8081`.
    pub management_url: String,
    /// `rest` (the inference API at `inference_url`) or `grpc` (its gRPC inference API at
    /// `grpc_url`: one HTTP/2 connection, calls multiplexed).
    pub protocol: WireProtocol,
    /// The gRPC inference API, e.g. `http://127.0.0.1:7070` (TorchServe's default port).
    pub grpc_url: String,
    /// The model's name on the server: `{role}`, `{name}` and `{version}` are replaced.
    pub model: String,
    /// Calls in flight at once; more wait for a slot within their deadline.
    pub max_in_flight: NonZeroUsize,
    pub connect_timeout: PositiveDuration,
    /// TorchServe's model store, when TradeServe can write to it (same host or a shared
    /// volume): a version a role needs that TorchServe does not have is then packaged there
    /// and registered through the management API. Unset, such a version is refused.
    pub model_store: Option<PathBuf>,
    /// `torch-model-archiver`, for packaging into `model_store`.
    pub archiver: PathBuf,
    /// Workers per version TradeServe registers.
    pub initial_workers: NonZeroU32,
    /// TorchServe's server-side batching for the versions TradeServe registers: up to
    /// `batch_size` concurrent calls are answered by one handler call, waiting at most
    /// `max_batch_delay` for the batch to fill.
    pub batch_size: NonZeroU32,
    #[serde(with = "humantime_serde")]
    pub max_batch_delay: Duration,
    /// How long a registration (workers starting) may take.
    pub register_timeout: PositiveDuration,
    /// A version TradeServe registered is unregistered once nothing has routed to it for
    /// this long.
    #[serde(with = "humantime_serde")]
    pub unregister_after: Duration,
}

impl Default for TorchServeConfig {
    fn default() -> Self {
        TorchServeConfig {
            inference_url: "http://127.0.0.1:8080".into(),
            management_url: "http://127.0.0.1:8081".into(),
            protocol: WireProtocol::Rest,
            grpc_url: "http://127.0.0.1:7070".into(),
            model: "{role}".into(),
            max_in_flight: at_least_one_usize(64),
            connect_timeout: PositiveDuration::millis(250),
            model_store: None,
            archiver: "torch-model-archiver".into(),
            initial_workers: at_least_one_u32(1),
            batch_size: at_least_one_u32(8),
            max_batch_delay: Duration::from_millis(2),
            register_timeout: PositiveDuration::secs(120),
            unregister_after: Duration::from_secs(300),
        }
    }
}

impl TorchServeConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        super::validate_common("models.torchserve", &self.inference_url, &self.model)?;
        if self.protocol == WireProtocol::Grpc {
            super::validate_grpc_url("models.torchserve", &self.grpc_url)?;
        }
        super::validate_common("models.torchserve", &self.management_url, &self.model)
    }
}

/// One TorchServe.
#[derive(Clone)]
pub struct TorchServe {
    http: HttpBackend,
    /// The gRPC channel, when `protocol = "grpc"`.
    grpc: Option<GrpcBackend>,
    management: Management,
    config: Arc<TorchServeConfig>,
}

/// What [`TorchServe::ensure`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// Registered already, with a READY worker (by an operator, or by TradeServe earlier).
    Present,
    /// Packaged into the model store and registered now, by TradeServe.
    Registered,
}

/// Why a version cannot be served from TorchServe.
#[derive(Debug, thiserror::Error)]
pub enum EnsureError {
    #[error(transparent)]
    Management(#[from] ManagementError),
    #[error("{name} v{version} is registered but has no READY worker ({workers} workers)")]
    NotReady {
        name: String,
        version: String,
        workers: usize,
    },
    #[error(
        "{name} v{version} is not registered on TorchServe, and models.torchserve.model_store \
         is not set so TradeServe cannot register it: register its archive \
         (tradeserve torchserve package) or set model_store"
    )]
    NotRegistered { name: String, version: String },
    #[error("cannot package {name} v{version}: {why}")]
    Package {
        name: String,
        version: String,
        why: String,
        /// Not the model's fault (a full disk, the archiver failing): retried at the next
        /// poll. A model that does not verify is not.
        transient: bool,
    },
}

impl EnsureError {
    /// Worth retrying later: the server or the machine failed, not the version.
    pub fn is_transient(&self) -> bool {
        match self {
            EnsureError::Management(ManagementError::Unreachable { .. }) => true,
            EnsureError::Package { transient, .. } => *transient,
            _ => false,
        }
    }
}

impl TorchServe {
    pub fn new(config: TorchServeConfig) -> Result<TorchServe, ClientError> {
        let timeout = config.connect_timeout.get();
        let grpc = GrpcBackend::for_protocol(
            config.protocol,
            &config.grpc_url,
            config.max_in_flight,
            timeout,
        )?;
        Ok(TorchServe {
            http: HttpBackend::new(config.max_in_flight, timeout)?,
            grpc,
            management: Management::new(
                &config.management_url,
                Duration::from_secs(10),
                config.register_timeout.get(),
            )?,
            config: Arc::new(config),
        })
    }

    pub fn config(&self) -> &TorchServeConfig {
        &self.config
    }

    pub fn management(&self) -> &Management {
        &self.management
    }

    /// The role's model name on this server for `version`.
    pub fn name(&self, role: Role, version: &str) -> String {
        super::model_name(&self.config.model, role, version)
    }

    /// Make `version` of `role` servable: already registered with a READY worker, or
    /// packaged from `folder` (a verified model folder) into the model store and registered.
    /// Verification through the inference API is the caller's next step.
    pub async fn ensure(
        &self,
        role: Role,
        version: &str,
        folder: &Path,
    ) -> Result<Ensured, EnsureError> {
        let name = self.name(role, version);
        match self.management.status(&name, version).await? {
            Some(s) if s.is_ready() => return Ok(Ensured::Present),
            Some(s) => {
                return Err(EnsureError::NotReady {
                    name,
                    version: version.to_owned(),
                    workers: s.workers,
                });
            }
            None => {}
        }
        let Some(store) = self.config.model_store.clone() else {
            return Err(EnsureError::NotRegistered {
                name,
                version: version.to_owned(),
            });
        };
        let archive = self
            .package_into(&store, role, &name, version, folder)
            .await?;
        let how = Registration {
            initial_workers: self.config.initial_workers,
            batch_size: self.config.batch_size,
            max_batch_delay: self.config.max_batch_delay,
        };
        self.management.register(&archive, &name, how).await?;
        Ok(Ensured::Registered)
    }

    /// Package `folder` as `<store>/<name>-v<version>.mar` (built aside, then renamed in, so
    /// TorchServe never reads half an archive); returns the archive's file name.
    async fn package_into(
        &self,
        store: &Path,
        role: Role,
        name: &str,
        version: &str,
        folder: &Path,
    ) -> Result<String, EnsureError> {
        let archive = format!("{name}-v{version}.mar");
        let fail = |(why, transient): (String, bool)| EnsureError::Package {
            name: name.to_owned(),
            version: version.to_owned(),
            why,
            transient,
        };
        let (store, folder) = (store.to_path_buf(), folder.to_path_buf());
        let (name_owned, version_owned) = (name.to_owned(), version.to_owned());
        let archiver = self.config.archiver.clone();
        let target = store.join(&archive);
        tokio::task::spawn_blocking(move || {
            let aside = store.join(format!(".tradeserve-{}", uuid::Uuid::now_v7()));
            let built = package(&PackageSpec {
                model_dir: &folder,
                role,
                name: &name_owned,
                version: &version_owned,
                export_path: &aside,
                archiver: &archiver,
            })
            .map_err(|e| (e.to_string(), !matches!(e, PackageError::Model(_))))
            .and_then(|mar| std::fs::rename(mar, &target).map_err(|e| (e.to_string(), true)));
            let _ = std::fs::remove_dir_all(&aside);
            built
        })
        .await
        .map_err(|e| fail((e.to_string(), true)))?
        .map_err(fail)?;
        Ok(archive)
    }

    /// The handle of one role's version on this server.
    pub fn model(&self, role: Role, version: &str) -> Arc<dyn RemoteModel> {
        let name = super::model_name(&self.config.model, role, version);
        if let Some(grpc) = &self.grpc {
            return Arc::new(TorchServeGrpcModel {
                backend: grpc.clone(),
                version: version.to_owned(),
                info: BackendInfo {
                    kind: "torchserve",
                    endpoint: format!(
                        "{}/org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions",
                        grpc.url()
                    ),
                    model: name.clone(),
                },
                name,
            });
        }
        let base = self.config.inference_url.trim_end_matches('/');
        Arc::new(TorchServeModel {
            http: self.http.clone(),
            info: BackendInfo {
                kind: "torchserve",
                endpoint: format!("{base}/predictions/{name}/{version}"),
                model: name,
            },
        })
    }
}

struct TorchServeModel {
    http: HttpBackend,
    info: BackendInfo,
}

#[derive(Serialize)]
struct Rows {
    data: Vec<Vec<f32>>,
}

impl RemoteModel for TorchServeModel {
    fn infer_rows(&self, rows: Vec<f32>, width: usize, deadline: Instant) -> RemoteRows {
        let Some(data) = split_rows(&rows, width) else {
            let e = bad_rows(&rows, width);
            return Box::pin(async move { Err(e) });
        };
        let n = data.len();
        let http = self.http.clone();
        let endpoint = self.info.endpoint.clone();
        let body = Rows { data };
        Box::pin(async move {
            let rows: Vec<Vec<f32>> = http.post(&endpoint, &body, deadline).await?;
            rows_of_three(&rows, n)
        })
    }

    fn backend(&self) -> &BackendInfo {
        &self.info
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn bundled(role: Role) -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models"))
            .join(role.as_str())
            .join("1")
    }

    fn client() -> TorchServe {
        TorchServe::new(TorchServeConfig {
            archiver: PathBuf::from("/nonexistent/torch-model-archiver"),
            ..TorchServeConfig::default()
        })
        .unwrap()
    }

    /// A store that cannot be written (a full disk, a missing mount) is the machine's fault:
    /// retried at the next poll, not remembered as a broken version.
    #[tokio::test]
    async fn a_store_that_cannot_be_written_is_transient() {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("store");
        std::fs::write(&store, b"a file where the store should be").unwrap();
        let role = Role::BullSpecialist;
        let err = client()
            .package_into(&store, role, "bull_specialist", "1", &bundled(role))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                EnsureError::Package {
                    transient: true,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.is_transient());
    }

    /// The archiver failing is retried too (it fails on a full disk as well).
    #[tokio::test]
    async fn an_archiver_that_fails_is_transient() {
        let store = tempfile::tempdir().unwrap();
        let role = Role::BearSpecialist;
        let err = client()
            .package_into(store.path(), role, "bear_specialist", "1", &bundled(role))
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(err.to_string().contains("torch-model-archiver"), "{err}");
        assert_eq!(std::fs::read_dir(store.path()).unwrap().count(), 0);
    }

    /// A version that does not verify is refused for good.
    #[tokio::test]
    async fn a_model_that_does_not_verify_is_not_transient() {
        let tmp = tempfile::tempdir().unwrap();
        let broken = tmp.path().join("bull_specialist/1");
        tradeserve_testkit::corrupt_model_copy(&bundled(Role::BullSpecialist), &broken);
        let err = client()
            .package_into(
                tmp.path(),
                Role::BullSpecialist,
                "bull_specialist",
                "1",
                &broken,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                EnsureError::Package {
                    transient: false,
                    ..
                }
            ),
            "{err}"
        );
        assert!(!err.is_transient());
    }
}
