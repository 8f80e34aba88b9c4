//! The shadow runner on its own: every job it accepts ends as one `shadow_result` event
//! carrying the candidate's decision; every job it cannot take is handed back and counted as
//! shed (the decision's own event was recorded before it was answered, so nothing is lost).
//! Under a burst far beyond its queue, nothing blocks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tradeserve_core::event::Event;
use tradeserve_core::experiment::Arm;
use tradeserve_core::ports::{EmitError, EventSink, ShadowJob, ShadowRunner};
use tradeserve_core::stats::UnitStats;
use tradeserve_models::{BundledModels, VersionSelection};
use tradeserve_server::arms::ArmBook;
use tradeserve_server::metrics::Metrics;
use tradeserve_server::shadow::ShadowPool;

#[derive(Default)]
struct Collect(Mutex<Vec<Event>>);

impl EventSink for Collect {
    fn emit(&self, event: Event) -> Result<(), EmitError> {
        self.0.lock().unwrap().push(event);
        Ok(())
    }
}

#[test]
fn a_burst_beyond_the_queue_is_shed_never_lost() {
    let models = BundledModels::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models"));
    let candidate = Arc::new(models.load_set(&VersionSelection::all("2")).unwrap());
    let sink = Arc::new(Collect::default());
    let metrics = Metrics::new().unwrap();
    let pool = ShadowPool::start(
        8,
        tradeserve_core::sizing::SizingPolicy::default(),
        sink.clone(),
        Arc::new(ArmBook::new(metrics.control.clone(), 16, None)),
        metrics.control.clone(),
    )
    .unwrap();
    let stats = Arc::new(UnitStats::new());
    let started = Instant::now();
    let mut handed_back = Vec::new();
    for i in 0..2_000u32 {
        let event = tradeserve_testkit::sample_event(
            uuid::Uuid::now_v7(),
            ["AAPL", "MSFT"][i as usize % 2],
        );
        let job = ShadowJob {
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
            candidate: Arc::clone(&candidate),
            stats: Arc::clone(&stats),
        };
        if let Err(job) = pool.submit(job) {
            handed_back.push(job.decision_id);
        }
    }
    // Submitting never waits for the shadow thread.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    pool.shutdown();
    let emitted = sink.0.lock().unwrap();
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
