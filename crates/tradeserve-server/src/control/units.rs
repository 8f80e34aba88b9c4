//! The measurements of every experiment and rollout stage this replica has routed to, by unit
//! key (`experiment:<id>`, `rollout:<id>:<stage>`). Shared by the control plane (which routes
//! decisions to them, reports and publishes them) and the outcome book (which credits an
//! outcome posted here for a decision another replica made to this replica's share of its
//! unit). A unit stays for the process's life: its share keeps counting in reports.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tradeserve_core::arm_stats::UnitStats;
use tradeserve_core::fleet::UnitKey;
use tradeserve_core::rollout::Stage;

/// The key of an experiment's measurements.
pub fn experiment_key(id: &str) -> UnitKey {
    UnitKey::Experiment(id.to_owned())
}

/// The key of one stage of a rollout's measurements (stats restart at each stage).
pub fn rollout_key(id: &str, stage: Stage) -> UnitKey {
    UnitKey::Rollout {
        id: id.to_owned(),
        stage,
    }
}

/// See the module docs.
#[derive(Default)]
pub struct Units {
    map: Mutex<HashMap<UnitKey, Arc<UnitStats>>>,
}

impl Units {
    /// The unit's measurements, created empty on first use.
    pub fn get_or_create(&self, key: &UnitKey) -> Arc<UnitStats> {
        let mut map = self.map.lock();
        if let Some(u) = map.get(key) {
            return Arc::clone(u);
        }
        let u = Arc::new(UnitStats::new());
        map.insert(key.clone(), Arc::clone(&u));
        u
    }

    pub fn get(&self, key: &UnitKey) -> Option<Arc<UnitStats>> {
        self.map.lock().get(key).cloned()
    }

    /// Every unit, for publishing.
    pub fn all(&self) -> Vec<(UnitKey, Arc<UnitStats>)> {
        self.map
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect()
    }
}
