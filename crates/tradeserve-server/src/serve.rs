//! Starting and stopping the service.
//!
//! Start: validate the config, load and verify the model set, load the market replay, open
//! the audit log, then bind (so a bad config or model never holds a port). Stop: on SIGTERM or
//! SIGINT readiness answers 503 and every response says `Connection: close` while requests are
//! still served for `server.drain_delay` (load balancers take the replica out, keep-alive
//! clients reconnect), then the listener closes, connections close between requests,
//! in-flight requests finish (bounded by
//! `server.shutdown_grace`), and the event sinks are flushed. Work abandoned when the grace
//! period expires makes the exit code non-zero.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tradeserve_core::control::ArmRecorder;
use tradeserve_core::ledger::{InMemoryRiskLedger, UnavailableLedger};
use tradeserve_core::pipeline::PipelineConfig;
use tradeserve_core::request::RequestRules;
use tradeserve_core::{ModelSet, Pipeline};
use tradeserve_events::audit_log::RetireHook;
use tradeserve_events::{AuditLog, AuditLogConfig};
use tradeserve_features::live::LiveFeatures;
use tradeserve_features::{MarketReplay, ReplayClock};
use tradeserve_models::BundledModels;

use crate::arms::ArmBook;
use crate::config::{
    Config, FeatureSourceKind, ModelSourceKind, SinkKind, require_path, resolve_path,
};
use crate::lanes;
use crate::metrics::Metrics;
use crate::registry::{self, ReloadError};
use crate::state::AppState;
use tradeserve_auth::Auth;
use tradeserve_core::ports::{EventSink, FeatureSource, RiskLedger};
use tradeserve_events::fanout::FanOut;
use tradeserve_events::kafka::{KafkaSink, KafkaSinkConfig};
use tradeserve_events::spool::SpoolConfig;
use tradeserve_events::wal::WalConfig;
use tradeserve_features::live::kafka::KafkaFeed;
use tradeserve_models::remote::backends::{BackendError, RemoteBackends};
use tradeserve_transport::listener::connection_cap;
use tradeserve_transport::tls::Tls;

use crate::config::StoreKind;
use crate::control::ControlPlane;
use crate::control::catalog::{ModelCatalog, ModelProvider};
use crate::control::store::{ControlStore, FileStore, StoreError};
use crate::shadow::{ShadowConfig, ShadowPool};
use crate::state::Parts;
use tradeserve_redis::control_store::RedisStore;
use tradeserve_redis::fleet_shares::FleetStats;
use tradeserve_redis::outcomes::OutcomeStore;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("metrics")]
    Metrics(#[from] prometheus::Error),
    #[error("models")]
    Models(#[from] tradeserve_models::ModelLoadError),
    #[error("market data")]
    Features(#[from] tradeserve_features::BarError),
    #[error("events")]
    Events(#[from] tradeserve_events::AuditLogError),
    #[error("events")]
    Kafka(#[from] tradeserve_events::kafka::KafkaSinkError),
    #[error("auth: {0}")]
    Auth(tradeserve_core::error::InvalidSetting),
    #[error("{0}")]
    Tls(tradeserve_core::error::InvalidSetting),
    #[error("the gRPC services cannot be built: {0}")]
    Grpc(String),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "shutdown grace period of {grace:?} expired with {connections} connection(s) still busy; their requests were abandoned"
    )]
    Abandoned { connections: usize, grace: Duration },
    #[error("server: {0}")]
    Serve(std::io::Error),
    #[error("{0} panicked")]
    Panic(&'static str),
    #[error("model registry")]
    Registry(#[from] tradeserve_models::mlflow::MlflowError),
    #[error("control store")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("model backend")]
    Backend(#[from] BackendError),
    #[error("{key} = {path}: {why}")]
    NotWritable {
        key: &'static str,
        path: std::path::PathBuf,
        why: Unwritable,
    },
    #[error("cannot start a worker thread: {0}")]
    Shadow(std::io::Error),
}

/// The running parts that outlive the router.
pub struct Service {
    pub state: Arc<AppState>,
    pub audit_log: Option<Arc<AuditLog>>,
    pub kafka: Option<Arc<KafkaSink>>,
    pub shadow: Arc<ShadowPool>,
    /// The live feed's Kafka consumer (`features.live.kafka.brokers`), stopped when dropped.
    pub market_feed: Option<KafkaFeed>,
    /// TLS on the listener (`server.tls`); loaded by [`run`].
    pub tls: Option<Arc<Tls>>,
}

struct Sinks {
    audit_log: Option<Arc<AuditLog>>,
    kafka: Option<Arc<KafkaSink>>,
}

impl Sinks {
    fn emitter(&self) -> Arc<dyn EventSink> {
        let mut all: Vec<Arc<dyn EventSink>> = Vec::new();
        if let Some(a) = &self.audit_log {
            all.push(a.clone());
        }
        if let Some(k) = &self.kafka {
            all.push(k.clone());
        }
        match all.len() {
            1 => all.remove(0),
            _ => Arc::new(FanOut::new(all)),
        }
    }
}

fn start_sinks(config: &Config, metrics: &Metrics) -> Result<Sinks, StartError> {
    let e = &config.events;
    let chain = e
        .chain_key()
        .map_err(|m| StartError::Config(crate::config::ConfigError::Invalid(m)))?;
    // Rotated files are carried into the risk books' checkpoint before retention may delete
    // them (`tradeserve_events::books`), with the latch's counts of its current window.
    let key = chain.clone();
    let window = Some(config.risk.repeated_execution_window);
    let on_retired = RetireHook(Arc::new(move |log: &std::path::Path| {
        tradeserve_events::books::checkpoint_rotated(log, key.as_ref(), window).map_err(Into::into)
    }));
    let audit_log = match e.sink {
        SinkKind::AuditLog | SinkKind::Both => Some(Arc::new(AuditLog::start(
            AuditLogConfig {
                path: e.audit_log.clone(),
                fsync_interval: e.fsync_interval.get(),
                rotate_bytes: e.audit_rotate_bytes,
                retain_files: e.audit_retain_files,
                probe_interval: Duration::from_secs(1),
                chain,
                on_retired: Some(on_retired),
            },
            metrics.events.clone(),
        )?)),
        SinkKind::Kafka => None,
    };
    let kafka = match e.sink {
        SinkKind::Kafka | SinkKind::Both => {
            let k = &e.kafka;
            Some(Arc::new(KafkaSink::start(
                KafkaSinkConfig {
                    brokers: k.brokers.clone(),
                    topic: k.topic.clone(),
                    partitions: k.partitions,
                    replication: k.replication,
                    client: k.client.clone(),
                    queue_capacity: e.queue_capacity,
                    spool: SpoolConfig {
                        dir: k.spool_dir.clone(),
                        segment_bytes: k.spool_segment_bytes,
                    },
                    linger: k.linger,
                    compression: k.compression.clone(),
                    flush_timeout: k.flush_timeout,
                    probe_interval: k.probe_interval,
                    create_topic: k.create_topic,
                    wal: k.wal.then(|| WalConfig {
                        path: k.spool_dir.join("wal.jsonl"),
                        fsync_interval: e.fsync_interval.get(),
                        segment_bytes: k.wal_segment_bytes,
                    }),
                },
                metrics.kafka.clone(),
            )?))
        }
        SinkKind::AuditLog => None,
    };
    Ok(Sinks { audit_log, kafka })
}

/// Check, before anything is loaded, that the data the service reads is where the config says
/// (naming the key and where it looked) and that the files it writes can be written: an
/// existing file must open for appending; otherwise its nearest existing folder must be a
/// writable directory. Nothing is created.
pub fn check_paths(config: &Config) -> Result<(), StartError> {
    if config.models.source == ModelSourceKind::Bundled {
        require_path(
            "models.dir",
            &config.models.dir,
            "the folder of <role>/<version>/ model folders (the repository's models/)",
        )?;
    }
    require_path(
        "features.bars",
        &config.features.bars,
        "the bars CSV the embedded feature source replays (the repository's data/bars.csv)",
    )?;
    check_writable(config)
}

fn check_writable(config: &Config) -> Result<(), StartError> {
    let mut paths = vec![
        ("control.file", config.control.file.clone()),
        ("events.audit_log", config.events.audit_log.clone()),
    ];
    if config.events.sink != SinkKind::AuditLog {
        paths.push((
            "events.kafka.spool_dir",
            config.events.kafka.spool_dir.join("probe"),
        ));
    }
    for (key, path) in paths {
        writable(&path).map_err(|why| StartError::NotWritable {
            key,
            path: path.clone(),
            why,
        })?;
    }
    Ok(())
}

/// Why a file the service appends to cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum Unwritable {
    #[error("is a directory, not a file")]
    IsDir,
    #[error("cannot open for appending: {0}")]
    Open(std::io::Error),
    #[error("{0} is not a directory")]
    NotDir(std::path::PathBuf),
    #[error("cannot create files under {dir}: {errno}")]
    NoAccess {
        dir: std::path::PathBuf,
        errno: nix::errno::Errno,
    },
}

fn writable(path: &std::path::Path) -> Result<(), Unwritable> {
    use nix::unistd::{AccessFlags, access};
    if path.is_dir() {
        return Err(Unwritable::IsDir);
    }
    if path.exists() {
        return std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(Unwritable::Open);
    }
    let mut dir = path.parent();
    while let Some(d) = dir {
        let d = if d.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            d
        };
        if d.exists() {
            if !d.is_dir() {
                return Err(Unwritable::NotDir(d.to_owned()));
            }
            return access(d, AccessFlags::W_OK | AccessFlags::X_OK).map_err(|errno| {
                Unwritable::NoAccess {
                    dir: d.to_owned(),
                    errno,
                }
            });
        }
        dir = d.parent();
    }
    Ok(())
}

/// Load the active model set named by the config.
pub fn load_models(config: &Config) -> Result<ModelSet, tradeserve_models::ModelLoadError> {
    BundledModels::new(resolve_path(&config.models.dir)).load_set(&config.models.versions)
}

/// The bundled champion, in process (its remote roles are provided before listening: see
/// [`provide_champion`]).
fn load_champion(config: &Config) -> Result<Arc<ModelSet>, StartError> {
    Ok(Arc::new(load_models(config)?))
}

/// Before listening: the champion's remote roles on their servers, verified there; a version
/// that cannot be served stops the start.
async fn provide_champion(state: &AppState) -> Result<(), StartError> {
    let (Some(remote), Some(set)) = (&state.remote, state.control.champion()) else {
        return Ok(());
    };
    let provided = remote.provide_set((*set).clone()).await?;
    state.set_models(Arc::new(provided));
    Ok(())
}

/// Build every embedded adapter and the shared state, replaying market data on the live
/// clock. Blocking (file I/O, model compilation): call before serving or from a blocking
/// thread.
pub fn build(config: &Config) -> Result<Service, StartError> {
    build_with_clock(config, ReplayClock::live(config.features.replay_speed))
}

/// [`build`] with a chosen replay clock (tests pin it to a bar).
pub fn build_with_clock(config: &Config, clock: ReplayClock) -> Result<Service, StartError> {
    check_paths(config)?;
    tradeserve_models::onnx::choose_engine(config.models.engine);
    let metrics = Metrics::new()?;
    metrics.capacity.set(config.server.capacity_per_second);
    let (models, replay) = load_in_parallel(config, clock, &metrics)?;
    let remote = RemoteBackends::new(config.models.remote_setup())?;
    let registry = registry_manager(config, &metrics, &remote)?;
    let ledger = risk_ledger(config)?;
    let sinks = start_sinks(config, &metrics)?;
    let emitter = sinks.emitter();
    let control = control_plane(config, &registry, &remote, Arc::clone(&emitter), &metrics)?;
    let (features, live) = feature_source(config, replay);
    let market_feed = market_feed(config, &live)?;
    let drift = Arc::new(crate::drift::DriftMonitor::new(config.drift.clone()));
    let arms = arm_book(config, &metrics, &features, &control, &drift)?;
    let shadow = shadow_pool(config, &emitter, &(Arc::clone(&arms) as _), &metrics)?;
    let pipeline = Pipeline::new(features, ledger, emitter, pipeline_config(config))
        .with_idempotency(idempotency_store(config)?)
        .with_shadow(shadow.clone())
        .with_arms(Arc::clone(&arms) as _)
        .with_explainer(Arc::new(
            crate::explainer::BlockingExplainer::new(config.explain).map_err(StartError::Shadow)?,
        ));
    let state = Arc::new(AppState::new(Parts {
        auth: api_keys(config, &metrics)?,
        pipeline,
        control,
        models,
        registry,
        remote,
        feed: market_feed.as_ref().map(|f| Arc::clone(&f.state)),
        live,
        metrics,
        max_in_flight: config.server.max_in_flight.get(),
        bars_bytes: config.features.live.post_limit_bytes,
        body: crate::state::BodyLimits {
            bytes: config.server.body_limit_bytes,
            timeout: config.server.body_read_timeout.get(),
        },
        arms,
        kafka_sink: sinks.kafka.is_some(),
        access_log: config.telemetry.access_log,
        stats_window: config.telemetry.stats_window,
        halt_release_approvals: config.control.halt_release_approvals,
        drift,
    }));
    Ok(Service {
        state,
        audit_log: sinks.audit_log,
        kafka: sinks.kafka,
        shadow,
        market_feed,
        tls: None,
    })
}

/// The bundled champion and the market data replay, loaded in parallel: they are independent
/// and each takes a while. From the registry, models load after start-up (async, see
/// `start_registry`); the live source has no replay.
fn load_in_parallel(
    config: &Config,
    clock: ReplayClock,
    metrics: &Metrics,
) -> Result<(Option<Arc<ModelSet>>, Option<MarketReplay>), StartError> {
    let bars_path = resolve_path(&config.features.bars);
    let (models, replay) = std::thread::scope(|s| {
        let replay = s.spawn(|| match config.features.source {
            FeatureSourceKind::Replay => MarketReplay::load(&bars_path, clock).map(Some),
            FeatureSourceKind::Live => Ok(None),
        });
        let models = match config.models.source {
            ModelSourceKind::Bundled => load_champion(config).map(Some),
            ModelSourceKind::Mlflow => Ok(None),
        };
        (models, replay.join())
    });
    let models = models.inspect_err(|_| metrics.model_load_failures.inc())?;
    let replay = replay.map_err(|_| StartError::Panic("market data loader"))??;
    Ok((models, replay))
}

/// The API keys (`None`: authentication off), their quotas shared in the fleet's Redis when
/// there is one (see [`shared_redis`]).
fn api_keys(config: &Config, metrics: &Metrics) -> Result<Option<Arc<Auth>>, StartError> {
    use tradeserve_redis::quotas::RedisQuotas;
    let shared: Option<Arc<dyn tradeserve_auth::quota::SharedQuotas>> = match shared_redis(config) {
        Some((url, prefix, timeout)) => Some(Arc::new(
            RedisQuotas::new(url, prefix, timeout).map_err(|m| {
                StartError::Config(crate::config::ConfigError::Invalid(
                    format!("quota store: {m}").into(),
                ))
            })?,
        )),
        None => None,
    };
    let fleet_quotas = shared.is_some();
    let auth = Auth::new(&config.auth, metrics.auth.clone(), shared).map_err(StartError::Auth)?;
    if let Some(a) = &auth {
        tracing::info!(keys = ?a.ids(), protect_ops = config.auth.protect_ops, fleet_quotas, "API keys required");
    }
    Ok(auth)
}

/// The Redis the fleet shares per-request state in (idempotency keys, API-key quotas): the
/// risk ledger's, else the control store's, else none (this process keeps it).
fn shared_redis(config: &Config) -> Option<(&str, &str, Duration)> {
    use crate::config::StoreKind;
    use crate::ledger::LedgerStore;
    match (config.ledger.store, config.control.store) {
        (LedgerStore::Redis, _) => {
            let l = &config.ledger;
            Some((&l.redis_url, &l.redis_prefix, l.timeout.get()))
        }
        (_, StoreKind::Redis) => {
            let c = &config.control;
            Some((&c.redis_url, &c.redis_prefix, c.store_timeout.get()))
        }
        _ => None,
    }
}

/// The feature source requests read: the loaded replay, or the live source (kept apart too,
/// for the bars endpoint and the feed's status).
fn feature_source(
    config: &Config,
    replay: Option<MarketReplay>,
) -> (Arc<dyn FeatureSource>, Option<Arc<LiveFeatures>>) {
    match replay {
        Some(replay) => (Arc::new(replay), None),
        None => {
            let live = Arc::new(LiveFeatures::new(config.features.live.live_config()));
            (Arc::clone(&live) as Arc<dyn FeatureSource>, Some(live))
        }
    }
}

/// The Kafka consumer of the live feed, when the live source names brokers.
fn market_feed(
    config: &Config,
    live: &Option<Arc<LiveFeatures>>,
) -> Result<Option<KafkaFeed>, StartError> {
    let kafka = &config.features.live.kafka;
    match live {
        Some(live) if !kafka.brokers.is_empty() => Ok(Some(
            KafkaFeed::start(kafka.clone(), Arc::clone(live), crate::idle::enter)
                .map_err(StartError::Serve)?,
        )),
        _ => Ok(None),
    }
}

/// Where decisions, failures and outcomes are credited to arms; with the `redis` control
/// store, outcomes posted to any replica are credited once fleet-wide.
fn arm_book(
    config: &Config,
    metrics: &Metrics,
    features: &Arc<dyn FeatureSource>,
    control: &ControlPlane,
    drift: &Arc<crate::drift::DriftMonitor>,
) -> Result<Arc<ArmBook>, StartError> {
    let c = &config.control;
    let book = ArmBook::new(
        metrics.control.clone(),
        c.outcome_window,
        c.derive_outcomes.then(|| Arc::clone(features)),
    )
    .with_drift(Arc::clone(drift));
    Ok(Arc::new(match c.store {
        StoreKind::File => book,
        StoreKind::Redis => book.with_fleet(
            Arc::new(
                OutcomeStore::new(
                    &c.redis_url,
                    &c.redis_prefix,
                    c.store_timeout.get(),
                    c.fleet_outcome_ttl,
                )
                .map_err(|e| StoreError::Unavailable(e.to_string()))?,
            ),
            control.units(),
        ),
    }))
}

/// The shadow runner: rollout candidates re-decide off the request path.
fn shadow_pool(
    config: &Config,
    events: &Arc<dyn EventSink>,
    arms: &Arc<dyn ArmRecorder>,
    metrics: &Metrics,
) -> Result<Arc<ShadowPool>, StartError> {
    let pool = ShadowPool::start(
        ShadowConfig {
            capacity: config.control.shadow_queue,
            sizing: config.sizing.clone(),
            remote_deadline: config.server.request_deadline.get(),
            fallback: config.models.remote.fallback,
        },
        Arc::clone(events),
        Arc::clone(arms),
        metrics.control.clone(),
    )
    .map_err(StartError::Shadow)?;
    Ok(Arc::new(pool))
}

/// The MLflow side of the model set, when models come from the registry.
fn registry_manager(
    config: &Config,
    metrics: &Metrics,
    remote: &Option<Arc<RemoteBackends>>,
) -> Result<Option<Arc<registry::RegistryManager>>, StartError> {
    match config.models.source {
        ModelSourceKind::Bundled => {
            metrics.without_registry();
            Ok(None)
        }
        ModelSourceKind::Mlflow => Ok(Some(Arc::new(
            registry::manager(&config.models.mlflow)?.with_remote(remote.clone()),
        ))),
    }
}

/// The risk ledger: this replica's books (rebuilt from the audit log), or Redis's.
fn risk_ledger(config: &Config) -> Result<Arc<dyn RiskLedger>, StartError> {
    use crate::ledger::{LedgerStore, Unavailable, describe};
    use tradeserve_redis::risk_ledger::RedisRiskLedger;
    let l = &config.ledger;
    if l.store == LedgerStore::Memory {
        return Ok(match restored_ledger(config)? {
            Ok(ledger) => ledger,
            Err(missing) => {
                tracing::error!(error = %missing, "risk-checked orders are refused (503 risk_unavailable) until the books are reconciled");
                Arc::new(UnavailableLedger::new(missing.to_string()))
            }
        });
    }
    let local = match l.on_unavailable {
        Unavailable::Local => match restored_ledger(config)? {
            Ok(ledger) => Some(ledger),
            Err(missing) => {
                tracing::error!(error = %missing, "no local fallback: while Redis is unreachable, risk-checked orders are refused");
                None
            }
        },
        Unavailable::Reject => None,
    };
    let shared = RedisRiskLedger::new(&l.redis_url, &l.redis_prefix, l.timeout.get(), local)
        .map_err(|m| {
            StartError::Config(crate::config::ConfigError::Invalid(
                format!("ledger.redis_url: {m}").into(),
            ))
        })?;
    tracing::info!(store = %describe(l), on_unavailable = ?l.on_unavailable, "risk ledger shared in Redis");
    Ok(shared)
}

/// Where idempotency keys are kept: the fleet's Redis ([`shared_redis`]), else this process.
fn idempotency_store(
    config: &Config,
) -> Result<Arc<dyn tradeserve_core::idempotency::IdempotencyStore>, StartError> {
    use tradeserve_redis::idempotency::RedisIdempotency;
    let limits = config.idempotency.limits();
    let Some((url, prefix, timeout)) = shared_redis(config) else {
        return Ok(Arc::new(
            tradeserve_core::idempotency::InMemoryIdempotency::new(limits),
        ));
    };
    let store = RedisIdempotency::new(url, prefix, timeout, limits).map_err(|m| {
        StartError::Config(crate::config::ConfigError::Invalid(
            format!("idempotency store: {m}").into(),
        ))
    })?;
    Ok(Arc::new(store))
}

/// This replica's books from the checkpoint and the audit log (`Err(Missing)` when their
/// history is missing: the caller refuses orders rather than start them flat).
fn restored_ledger(
    config: &Config,
) -> Result<Result<Arc<InMemoryRiskLedger>, tradeserve_events::books::Missing>, StartError> {
    let ledger = Arc::new(InMemoryRiskLedger::new());
    match config.events.sink {
        SinkKind::AuditLog | SinkKind::Both => {
            let key = config
                .events
                .chain_key()
                .map_err(|m| StartError::Config(crate::config::ConfigError::Invalid(m)))?;
            let window = config.risk.repeated_execution_window;
            let log = &config.events.audit_log;
            if let Err(missing) =
                tradeserve_events::books::restore(&ledger, log, key.as_ref(), window)
            {
                return Ok(Err(missing));
            }
        }
        // Refused by `Config::validate`: no record to rebuild the books from.
        SinkKind::Kafka => {
            return Ok(Err(tradeserve_events::books::Missing(
                "events.sink = kafka keeps no local record to rebuild the risk books from".into(),
            )));
        }
    }
    Ok(Ok(ledger))
}

/// The control plane over the configured store and model catalog.
fn control_plane(
    config: &Config,
    registry: &Option<Arc<registry::RegistryManager>>,
    remote: &Option<Arc<RemoteBackends>>,
    events: Arc<dyn EventSink>,
    metrics: &Metrics,
) -> Result<ControlPlane, StartError> {
    let c = &config.control;
    let store: Arc<dyn ControlStore> = match c.store {
        StoreKind::File => Arc::new(FileStore::new(c.file.clone())),
        StoreKind::Redis => Arc::new(RedisStore::new(
            &c.redis_url,
            &c.redis_prefix,
            c.store_timeout.get(),
        )?),
    };
    let catalog = ModelCatalog::new(
        match registry {
            Some(r) => Arc::clone(r) as Arc<dyn ModelProvider>,
            None => Arc::new(BundledModels::new(resolve_path(&config.models.dir))),
        },
        remote.clone(),
    );
    let offline = crate::control::backtest::OfflineGate {
        bars: resolve_path(&config.features.bars),
        config: pipeline_config(config),
        max_position_notional: config.risk.max_position_notional,
    };
    let plane = ControlPlane::new(store, catalog, events, metrics.control.clone())
        .with_stage_idle_after(c.stage_idle_after)
        .with_offline_gate(Arc::new(offline));
    Ok(match c.store {
        StoreKind::File => plane,
        StoreKind::Redis => plane.with_fleet(Arc::new(
            FleetStats::new(
                &c.redis_url,
                &c.redis_prefix,
                c.store_timeout.get(),
                c.fleet_ttl,
                FleetStats::process_id(),
            )
            .map_err(|e| StoreError::Unavailable(e.to_string()))?,
        )),
    })
}

/// The pipeline's settings from the config.
pub fn pipeline_config(config: &Config) -> PipelineConfig {
    PipelineConfig {
        sizing: config.sizing.clone(),
        risk: config.risk.clone(),
        request: RequestRules {
            max_clock_skew: time::Duration::try_from(config.server.max_clock_skew)
                .unwrap_or(time::Duration::seconds(5)),
        },
        deadline: config.server.request_deadline.get(),
        explain: config.explain,
        on_event_failure: config.events.on_failure,
        backend_fallback: config.models.remote.fallback,
    }
}

/// With models from the registry: load the current set (from MLflow, or from the disk cache
/// when MLflow is unreachable), then keep polling. Returns the poller to abort at shutdown;
/// `None` for bundled models. Without MLflow and without a cache the service runs not-ready
/// (503) and the poller keeps trying.
pub async fn start_registry(
    state: &Arc<AppState>,
    startup_timeout: Duration,
) -> Option<tokio::task::JoinHandle<()>> {
    let manager = state.registry.clone()?;
    let started = Instant::now();
    let first = tokio::time::timeout(startup_timeout, manager.reload(state.as_ref())).await;
    match first {
        Ok(Ok(outcome)) => {
            tracing::info!(
                ?outcome,
                ms = started.elapsed().as_secs_f64() * 1e3,
                uri = manager.tracking_uri(),
                "models loaded from MLflow"
            )
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot load models from MLflow at start; trying the disk cache");
            from_cache(state, &manager, e).await;
        }
        Err(_) => {
            let e = ReloadError::Unavailable(format!("no answer within {startup_timeout:?}"));
            tracing::warn!(error = %e, "cannot load models from MLflow at start; trying the disk cache");
            from_cache(state, &manager, e).await;
        }
    }
    let poller = tokio::spawn(registry::poll(
        Arc::clone(state) as Arc<dyn registry::Serving>,
        manager,
    ));
    Some(poller)
}

async fn from_cache(
    state: &Arc<AppState>,
    manager: &Arc<registry::RegistryManager>,
    why: ReloadError,
) {
    let m = Arc::clone(manager);
    let cached = match tokio::task::spawn_blocking(move || m.load_from_cache()).await {
        Ok(Some((resolution, set))) => match manager.provide(set).await {
            Ok(set) => Some((resolution, set)),
            Err(e) => {
                tracing::error!(error = %e, "the cached models' remote backends cannot serve them");
                None
            }
        },
        _ => None,
    };
    match cached {
        Some((resolution, set)) => {
            tracing::warn!(versions = ?resolution.versions(), reason = %why, "serving the last known models from the disk cache");
            state.set_models(Arc::new(set));
            manager.adopt(resolution).await;
        }
        None => {
            tracing::error!(reason = %why, "no usable model cache: not ready until the registry answers")
        }
    }
}

/// Load the stored control state (experiments, rollouts; a store that is down is retried by
/// the poller while the champion serves), then start the poller and the gate evaluator.
pub async fn start_control(
    state: &Arc<AppState>,
    config: &Config,
) -> Vec<tokio::task::JoinHandle<()>> {
    match state.control.refresh().await {
        Ok(_) => {
            let view = state.control.view();
            tracing::info!(
                store = %state.control.describe_store(),
                revision = view.revision,
                experiment = view.running_experiment().map(|e| e.experiment_id.as_str()).unwrap_or("-"),
                rollout = view.active_rollout().map(|r| r.rollout_id.as_str()).unwrap_or("-"),
                "control state loaded"
            );
        }
        Err(e) => {
            tracing::error!(error = %e, store = %state.control.describe_store(), "control store unavailable at start; serving the champion only until it answers")
        }
    }
    let mut tasks = vec![
        tokio::spawn(crate::control::tasks::poll(
            Arc::clone(&state.control),
            config.control.poll_interval,
        )),
        tokio::spawn(crate::control::tasks::gates(
            Arc::clone(&state.control),
            config.control.gate_interval,
        )),
    ];
    if state.control.has_fleet() {
        tasks.push(tokio::spawn(crate::control::tasks::publish(
            Arc::clone(&state.control),
            Arc::clone(&state.arms),
            config.control.fleet_interval,
        )));
    }
    tasks
}

/// The backend steward, when a role or version is served remotely.
pub fn start_steward(
    state: &Arc<AppState>,
    config: &Config,
) -> Option<tokio::task::JoinHandle<()>> {
    let remote = state.remote.clone()?;
    let routed = Arc::clone(state);
    Some(tokio::spawn(tradeserve_models::remote::steward::run(
        move || routed.routed(),
        remote,
        Arc::clone(&state.steward),
        config.models.remote.status_interval.get(),
    )))
}

/// Run until `shutdown` resolves, then drain and stop.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let started = Instant::now();
    let cfg = config.clone();
    let mut service = tokio::task::spawn_blocking(move || build(&cfg))
        .await
        .map_err(|e| StartError::Serve(std::io::Error::other(e.to_string())))??;
    service.tls = Tls::load(&config.server.tls).map_err(StartError::Tls)?;
    provide_champion(&service.state).await?;
    let startup_timeout = config.models.mlflow.request_timeout.get() * 3;
    // Models first (the registry may set the champion), then the control state over them.
    let mut tasks: Vec<tokio::task::JoinHandle<()>> =
        start_registry(&service.state, startup_timeout)
            .await
            .into_iter()
            .collect();
    tasks.extend(start_control(&service.state, &config).await);
    tasks.push(tokio::spawn(crate::routes::stats::sample_every(
        Arc::clone(&service.state),
        Duration::from_secs(1),
    )));
    tasks.push(tokio::spawn(crate::drift::watch::run(
        crate::drift::watch::Watch {
            monitor: Arc::clone(&service.state.drift),
            control: Arc::clone(&service.state.control),
            metrics: service.state.metrics.drift.clone(),
            bars: resolve_path(&config.features.bars),
            days: config.drift.backtest_days,
            pipeline: pipeline_config(&config),
            capital_per_symbol: config.risk.max_position_notional,
        },
    )));
    tasks.extend(start_steward(&service.state, &config));
    tasks.extend(service.tls.as_ref().map(Tls::spawn_reloader));
    let listeners = bind_lanes(&config, &service).await?;
    let addr = listeners.trading.local_addr().map_err(StartError::Serve)?;
    let symbols = service.state.symbols.len();
    let tls = service.tls.is_some();
    tracing::info!(%addr, symbols, tls, startup_ms = started.elapsed().as_secs_f64() * 1e3, "listening");
    let abandoned = lanes::serve_until(&service.state, listeners, &config, shutdown).await;
    for t in tasks {
        t.abort();
    }
    // The last measurements since the previous publish: without them the fleet's reports
    // would miss up to one interval of what this replica served.
    if let Err(e) = service.state.control.publish_measurements(true).await {
        tracing::warn!(error = %e, "last experiment and rollout measurements not published");
    }
    if let Err(e) = service.state.arms.publish_awaiting().await {
        tracing::warn!(error = %e, "the last decisions awaiting an outcome were not published: only this replica could have credited them");
    }
    stop_sinks(&service, config.server.shutdown_grace).await;
    if abandoned > 0 {
        return Err(StartError::Abandoned {
            connections: abandoned,
            grace: config.server.shutdown_grace,
        });
    }
    Ok(())
}

/// Bind the trading listener and, when configured, the operator lane (logged), with the
/// connection cap fitted under the open-files limit.
async fn bind_lanes(config: &Config, service: &Service) -> Result<lanes::Listeners, StartError> {
    let fd_limit = tradeserve_transport::listener::raise_fd_limit();
    let trading = bind(&config.server.listen).await?;
    let operator = match &config.server.admin_listen {
        Some(admin) => Some(bind(admin).await?),
        None => None,
    };
    if let Some(admin) = operator.as_ref().and_then(|l| l.local_addr().ok()) {
        tracing::info!(%admin, "operator lane listening (control, halts, models, health, metrics)");
    }
    let grpc = match &config.server.grpc_listen {
        Some(addr) => Some(bind_grpc(addr, service).await?),
        None => None,
    };
    Ok(lanes::Listeners {
        trading,
        operator,
        grpc,
        max_connections: connection_cap(config.server.max_connections.get(), fd_limit),
        tls: service.tls.clone(),
    })
}

/// The gRPC listener and its services (logged).
async fn bind_grpc(addr: &str, service: &Service) -> Result<lanes::GrpcListener, StartError> {
    let listener = bind(addr).await?;
    let (app, health) =
        crate::grpc::router(&service.state).map_err(|e| StartError::Grpc(e.to_string()))?;
    if let Ok(grpc) = listener.local_addr() {
        tracing::info!(%grpc, "gRPC listening (tradeserve.v1, inference.GRPCInferenceService, health, reflection)");
    }
    Ok(lanes::GrpcListener {
        listener,
        app,
        health,
    })
}

async fn bind(addr: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: addr.to_owned(),
            source,
        })
}

/// Run the shadow jobs still queued (their events go out first), then flush and stop the
/// event sinks, each bounded by `grace` (at least a second).
async fn stop_sinks(service: &Service, grace: Duration) {
    let shadow = Arc::clone(&service.shadow);
    if tokio::task::spawn_blocking(move || shadow.shutdown())
        .await
        .is_err()
    {
        tracing::error!("shadow shutdown task failed");
    }
    let bound = grace.max(Duration::from_secs(1));
    if let Some(kafka) = service.kafka.clone() {
        match tokio::task::spawn_blocking(move || kafka.shutdown(bound)).await {
            Ok(Ok(r)) => tracing::info!(
                delivered = r.delivered,
                spooled = r.spooled,
                "kafka sink flushed"
            ),
            Ok(Err(e)) => tracing::error!(error = %e, "kafka sink did not stop cleanly"),
            Err(e) => tracing::error!(error = %e, "kafka sink shutdown task failed"),
        }
    }
    if let Some(audit) = service.audit_log.clone() {
        match tokio::task::spawn_blocking(move || audit.shutdown(bound)).await {
            Ok(Ok(written)) => {
                tracing::info!(events_written = written, "audit log flushed; stopped")
            }
            Ok(Err(e)) => tracing::error!(error = %e, "audit log did not flush cleanly"),
            Err(e) => tracing::error!(error = %e, "audit log flush task failed"),
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        }
        _ => {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}
