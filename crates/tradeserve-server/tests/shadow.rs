//! The shadow runner on its own: every job it accepts ends as one `shadow_result` event
//! carrying the candidate's decision; every job it cannot take is handed back and counted as
//! shed (the decision's own event was recorded before it was answered, so nothing is lost).
//! Under a burst far beyond its queue, nothing blocks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use tradeserve_core::ModelSet;
use tradeserve_core::arm_stats::UnitStats;
use tradeserve_core::event::Event;
use tradeserve_core::experiment::Arm;
use tradeserve_core::ports::{EmitError, EventSink, ShadowJob, ShadowRunner};
use tradeserve_models::{BundledModels, VersionSelection};
use tradeserve_server::arms::ArmBook;
use tradeserve_server::metrics::Metrics;
use tradeserve_server::shadow::{ShadowConfig, ShadowPool};
use tradeserve_testkit::HANG;

#[derive(Default)]
struct Collect(Mutex<Vec<Event>>);

impl EventSink for Collect {
    fn emit(&self, event: Event) -> Result<(), EmitError> {
        self.0.lock().push(event);
        Ok(())
    }
}

/// A shadow pool of `capacity` emitting to `sink`, counting in `metrics`.
fn pool(capacity: usize, sink: &Arc<Collect>, metrics: &Metrics) -> ShadowPool {
    ShadowPool::start(
        ShadowConfig {
            capacity,
            sizing: tradeserve_core::sizing::SizingPolicy::default(),
            remote_deadline: Duration::from_secs(1),
            fallback: Default::default(),
        },
        Arc::clone(sink) as Arc<dyn EventSink>,
        Arc::new(ArmBook::new(metrics.control.clone(), 16, None)),
        metrics.control.clone(),
    )
    .unwrap()
}

/// The `i`th job of a burst: a sample decision, shadowed on `candidate`.
fn job_for(i: u32, candidate: &Arc<ModelSet>, stats: &Arc<UnitStats>) -> ShadowJob {
    let event =
        tradeserve_testkit::sample_event(uuid::Uuid::now_v7(), ["AAPL", "MSFT"][i as usize % 2]);
    ShadowJob {
        decision_id: event.decision_id,
        symbol: event.symbol.clone(),
        action: event.action,
        strategy_override: None,
        snapshot: tradeserve_core::ports::FeatureSnapshot {
            as_of: event.features_as_of,
            price: event.price,
            features: event.features.features,
            hit_rates: event.features.hit_rates,
        },
        rollout: tradeserve_core::routing::RolloutRef {
            id: "r1".into(),
            stage: tradeserve_core::rollout::Stage::Shadow,
            arm: Arm::Treatment,
            bucket: 7,
        },
        candidate: Arc::clone(candidate),
        stats: Arc::clone(stats),
    }
}

#[test]
fn a_burst_beyond_the_queue_is_shed_never_lost() {
    let models = BundledModels::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models"));
    let candidate = Arc::new(models.load_set(&VersionSelection::all("2")).unwrap());
    let sink = Arc::new(Collect::default());
    let metrics = Metrics::new().unwrap();
    let pool = pool(8, &sink, &metrics);
    let stats = Arc::new(UnitStats::new());
    let started = Instant::now();
    let mut handed_back = Vec::new();
    for i in 0..2_000u32 {
        let job = job_for(i, &candidate, &stats);
        if let Err(job) = pool.submit(job) {
            handed_back.push(job.decision_id);
        }
    }
    // Submitting never waits for the shadow thread: a full queue hands the job back (below:
    // some were) rather than blocking until there is room.
    eprintln!("2,000 submits in {:?}", started.elapsed());
    pool.shutdown();
    let emitted = sink.0.lock();
    let shed = handed_back.len();
    assert!(shed > 0, "a queue of 8 cannot take a burst of 2,000");
    assert_eq!(
        emitted.len() + shed,
        2_000,
        "every job emitted or handed back"
    );
    assert_eq!(metrics.control.shadow_shed.get() as usize, shed);
    let m = &metrics.control;
    assert_eq!(
        (m.shadow_agreed.get() + m.shadow_disagreed.get()) as usize,
        emitted.len(),
        "every run counted as agreed or disagreed"
    );
    assert_eq!(m.shadow_errors.get(), 0);
    let candidate_arm = stats.arm(Arm::Treatment).snapshot();
    assert_eq!(candidate_arm.decisions as usize, emitted.len());
    assert_eq!(candidate_arm.shadow_compared as usize, emitted.len());
    for e in emitted.iter() {
        let Event::Shadow(d) = e else {
            panic!("not a shadow event")
        };
        assert!(!handed_back.contains(&d.decision_id));
        assert_eq!(
            (d.rollout.id.as_str(), d.event_type),
            ("r1", "shadow_result")
        );
        let s = &d.shadow;
        assert_eq!(
            s.model_versions[&tradeserve_core::Role::BullSpecialist],
            "2"
        );
        assert!(s.error.is_none());
        assert_eq!(s.agreed, s.action == Some(d.action));
    }
}

/// A candidate whose specialists are served remotely is shadowed on its backends (one call
/// per specialist per job, with the in-process engine's answers); a dead backend makes the
/// shadow run an error, counted, never a lost event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_candidate_is_shadowed_on_its_backends() {
    let models = BundledModels::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models"));
    let local = models.load_set(&VersionSelection::all("2")).unwrap();
    let (remote, mirrors) = tradeserve_testkit::mirror::specialists_on_mirrors(&local);
    let candidate = Arc::new(remote);
    let sink = Arc::new(Collect::default());
    let metrics = Metrics::new().unwrap();
    let pool = pool(64, &sink, &metrics);
    let stats = Arc::new(UnitStats::new());
    for i in 0..4 {
        pool.submit(job_for(i, &candidate, &stats)).ok().unwrap();
    }
    let until = Instant::now() + HANG;
    while sink.0.lock().len() < 4 {
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(5));
    }
    mirrors[1]
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    pool.submit(job_for(4, &candidate, &stats)).ok().unwrap();
    tokio::task::spawn_blocking(move || pool.shutdown())
        .await
        .unwrap();
    let emitted = sink.0.lock();
    assert_eq!(emitted.len(), 5);
    for m in &mirrors {
        assert!(m.calls().iter().all(|rows| *rows == 1));
    }
    assert_eq!(mirrors[0].calls().len(), 5);
    let results: Vec<_> = emitted
        .iter()
        .map(|e| match e {
            Event::Shadow(d) => d.shadow.error.clone(),
            _ => panic!("not a shadow event"),
        })
        .collect();
    assert!(results[..4].iter().all(Option::is_none), "{results:?}");
    let error = results[4].clone().unwrap();
    assert!(error.contains("bear_specialist"), "{error}");
    assert_eq!(metrics.control.shadow_errors.get(), 1);
}
