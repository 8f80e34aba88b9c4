//! Idempotent decisions: a request that carries a key (`client_order_id`, or the
//! `Idempotency-Key` header; the rule is [`crate::request::valid_key`]) is decided once. The first request claims the key; when its
//! decision is answered, the decision is kept under the key for a TTL, and a repeat with the
//! same request gets that decision back — the same `decision_id`, marked as a repeat — with no
//! second booking and no second event. The same key with a different request is a conflict
//! (409); a repeat while the first is still being decided is refused (409, retry). A request
//! that got no decision (an error) releases its claim, so a retry is decided afresh.
//!
//! [`IdempotencyStore`] is the port; [`InMemoryIdempotency`] the per-replica adapter (bounded:
//! the oldest keys go first when it is full); the server has a Redis one for the fleet.

use crate::error::InvalidSetting;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::ports::BoxFuture;

/// A decision kept under its key: what was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// 200 (approved) or 403 (rejected by risk).
    pub approved: bool,
    /// The decision as answered (JSON).
    pub decision: Arc<[u8]>,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is this request's now: decide, then [`IdempotencyStore::complete`] or
    /// [`IdempotencyStore::abandon`].
    New,
    /// Decided before, with the same request.
    Repeat(Stored),
    /// The key was used for a different request.
    Conflict,
    /// The first request with this key is still being decided.
    InFlight,
}

/// The store cannot answer (a request with a key is then refused: never decided twice).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("idempotency store unavailable: {0}")]
pub struct Unavailable(pub String);

/// Where keys and their decisions are kept.
pub trait IdempotencyStore: Send + Sync {
    /// Claim `key` for a request whose content is `fingerprint`.
    fn claim<'a>(
        &'a self,
        key: &'a str,
        fingerprint: &'a str,
    ) -> BoxFuture<'a, Result<Claim, Unavailable>>;

    /// Keep the answered decision under the key claimed for `fingerprint`.
    fn complete<'a>(
        &'a self,
        key: &'a str,
        fingerprint: &'a str,
        stored: Stored,
    ) -> BoxFuture<'a, ()>;

    /// Release a claim whose request got no decision.
    fn abandon<'a>(&'a self, key: &'a str, fingerprint: &'a str) -> BoxFuture<'a, ()>;
}

/// Sizes and times of the in-memory store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// How long a decision is kept under its key.
    pub ttl: Duration,
    /// How long a claim waits for its decision before another request may take the key (a
    /// request that never finished).
    pub in_flight_ttl: Duration,
    /// Keys kept at most; beyond, the oldest go first (counted in [`InMemoryIdempotency::evicted`]).
    pub max_entries: std::num::NonZeroUsize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            ttl: Duration::from_secs(24 * 3600),
            in_flight_ttl: Duration::from_secs(30),
            max_entries: crate::bounded::at_least_one_usize(100_000),
        }
    }
}

#[derive(Debug)]
struct Entry {
    fingerprint: String,
    decided: Option<Stored>,
    expires: Instant,
    /// Which insertion this is (an evicted-then-reclaimed key is a new one).
    seq: u64,
}

#[derive(Debug, Default)]
struct Keys {
    map: HashMap<String, Entry>,
    /// Keys in insertion order, with their insertion's `seq`.
    order: VecDeque<(u64, String)>,
    next: u64,
    evicted: u64,
}

/// The per-replica store: every key in memory, at most `max_entries`, each kept `ttl`.
#[derive(Debug)]
pub struct InMemoryIdempotency {
    limits: Limits,
    keys: Mutex<Keys>,
}

impl InMemoryIdempotency {
    pub fn new(limits: Limits) -> InMemoryIdempotency {
        InMemoryIdempotency {
            limits,
            keys: Mutex::new(Keys::default()),
        }
    }

    /// Keys dropped before their TTL because the store was full.
    pub fn evicted(&self) -> u64 {
        self.keys.lock().evicted
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.keys.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn claim_at(&self, key: &str, fingerprint: &str, now: Instant) -> Claim {
        let mut k = self.keys.lock();
        if let Some(e) = k.map.get(key)
            && e.expires > now
        {
            return match (&e.decided, e.fingerprint == fingerprint) {
                (_, false) => Claim::Conflict,
                (Some(stored), true) => Claim::Repeat(stored.clone()),
                (None, true) => Claim::InFlight,
            };
        }
        let seq = k.next;
        k.next += 1;
        k.map.insert(
            key.to_owned(),
            Entry {
                fingerprint: fingerprint.to_owned(),
                decided: None,
                expires: now + self.limits.in_flight_ttl,
                seq,
            },
        );
        k.order.push_back((seq, key.to_owned()));
        self.prune(&mut k, now);
        Claim::New
    }

    /// Drop expired keys from the front, then the oldest while over `max_entries`.
    fn prune(&self, k: &mut Keys, now: Instant) {
        while let Some((seq, key)) = k.order.front().cloned() {
            let current = k.map.get(&key).filter(|e| e.seq == seq);
            let over = k.map.len() > self.limits.max_entries.get();
            match current {
                // Replaced by a later claim of the same key: only the queue entry goes.
                None => {}
                Some(e) if e.expires <= now => {
                    k.map.remove(&key);
                }
                Some(_) if over => {
                    k.map.remove(&key);
                    k.evicted += 1;
                }
                Some(_) => return,
            }
            k.order.pop_front();
        }
    }

    fn complete_at(&self, key: &str, fingerprint: &str, stored: Stored, now: Instant) {
        let mut k = self.keys.lock();
        if let Some(e) = k.map.get_mut(key)
            && e.fingerprint == fingerprint
            && e.decided.is_none()
        {
            e.decided = Some(stored);
            e.expires = now + self.limits.ttl;
        }
    }

    fn abandon_now(&self, key: &str, fingerprint: &str) {
        let mut k = self.keys.lock();
        if k.map
            .get(key)
            .is_some_and(|e| e.fingerprint == fingerprint && e.decided.is_none())
        {
            k.map.remove(key);
        }
    }
}

impl IdempotencyStore for InMemoryIdempotency {
    fn claim<'a>(
        &'a self,
        key: &'a str,
        fingerprint: &'a str,
    ) -> BoxFuture<'a, Result<Claim, Unavailable>> {
        let claim = self.claim_at(key, fingerprint, Instant::now());
        Box::pin(std::future::ready(Ok(claim)))
    }

    fn complete<'a>(
        &'a self,
        key: &'a str,
        fingerprint: &'a str,
        stored: Stored,
    ) -> BoxFuture<'a, ()> {
        self.complete_at(key, fingerprint, stored, Instant::now());
        Box::pin(std::future::ready(()))
    }

    fn abandon<'a>(&'a self, key: &'a str, fingerprint: &'a str) -> BoxFuture<'a, ()> {
        self.abandon_now(key, fingerprint);
        Box::pin(std::future::ready(()))
    }
}

/// `[idempotency]`: the settings of either store (this replica's, or the fleet's in Redis).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencyConfig {
    /// How long a decision is kept under its key.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// How long a claimed key waits for its decision before another request may take it.
    #[serde(with = "humantime_serde")]
    pub in_flight_ttl: Duration,
    /// Keys kept in memory at most (the per-replica store); the oldest go first.
    pub max_entries: std::num::NonZeroUsize,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        let l = Limits::default();
        IdempotencyConfig {
            ttl: l.ttl,
            in_flight_ttl: l.in_flight_ttl,
            max_entries: l.max_entries,
        }
    }
}

impl IdempotencyConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.ttl < Duration::from_secs(1) || self.in_flight_ttl < Duration::from_secs(1) {
            return Err("idempotency.ttl and idempotency.in_flight_ttl must be at least 1s".into());
        }
        Ok(())
    }

    pub fn limits(&self) -> Limits {
        Limits {
            ttl: self.ttl,
            in_flight_ttl: self.in_flight_ttl,
            max_entries: self.max_entries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(id: &str) -> Stored {
        Stored {
            approved: true,
            decision: Arc::from(id.as_bytes()),
        }
    }

    fn store(max_entries: usize) -> InMemoryIdempotency {
        InMemoryIdempotency::new(Limits {
            ttl: Duration::from_secs(100),
            in_flight_ttl: Duration::from_secs(10),
            max_entries: std::num::NonZeroUsize::new(max_entries).unwrap(),
        })
    }

    #[test]
    fn a_key_is_decided_once_then_repeated_conflicting_or_in_flight() {
        let s = store(10);
        let t = Instant::now();
        assert_eq!(s.claim_at("k", "a", t), Claim::New);
        assert_eq!(s.claim_at("k", "a", t), Claim::InFlight);
        assert_eq!(s.claim_at("k", "b", t), Claim::Conflict);
        s.complete_at("k", "a", stored("d1"), t);
        assert_eq!(s.claim_at("k", "a", t), Claim::Repeat(stored("d1")));
        assert_eq!(s.claim_at("k", "b", t), Claim::Conflict);
        // Kept for the TTL after the answer, then the key is free.
        let later = t + Duration::from_secs(99);
        assert_eq!(s.claim_at("k", "a", later), Claim::Repeat(stored("d1")));
        assert_eq!(
            s.claim_at("k", "b", t + Duration::from_secs(101)),
            Claim::New
        );
    }

    #[test]
    fn an_abandoned_or_stale_claim_frees_the_key() {
        let s = store(10);
        let t = Instant::now();
        assert_eq!(s.claim_at("k", "a", t), Claim::New);
        s.abandon_now("k", "a");
        assert_eq!(s.claim_at("k", "a", t), Claim::New);
        // A claim never completed (its request died) is free after the in-flight TTL.
        assert_eq!(
            s.claim_at("k", "a", t + Duration::from_secs(11)),
            Claim::New
        );
        // A later completion of an abandoned claim changes nothing.
        s.abandon_now("k", "a");
        s.complete_at("k", "a", stored("late"), t);
        assert_eq!(s.claim_at("k", "a", t), Claim::New);
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_keys_go_first() {
        let s = store(3);
        let t = Instant::now();
        for k in ["a", "b", "c", "d", "e"] {
            assert_eq!(s.claim_at(k, "f", t), Claim::New);
            s.complete_at(k, "f", stored(k), t);
        }
        assert_eq!(s.len(), 3);
        assert_eq!(s.evicted(), 2);
        assert_eq!(s.claim_at("e", "f", t), Claim::Repeat(stored("e")));
        assert_eq!(s.claim_at("a", "f", t), Claim::New);
        // Expired keys are dropped before any live one is evicted.
        let s = store(3);
        for k in ["a", "b", "c"] {
            s.claim_at(k, "f", t);
        }
        assert_eq!(
            s.claim_at("d", "f", t + Duration::from_secs(11)),
            Claim::New
        );
        assert_eq!((s.len(), s.evicted()), (1, 0));
    }
}
