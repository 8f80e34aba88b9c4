//! A/B experiments: the experiment record, its validation, and the stable
//! assignment of a decision to an arm.
//!
//! Assignment is a pure function of the salt and the bucketing key, so every replica, every
//! restart and every language agrees: `bucket = murmur3_x86_32(salt + ":" + key, seed 0) %
//! 10000`, treatment when `bucket < traffic_split * 10000`. Raising the split therefore only
//! moves control units into treatment. The test vectors in `docs/assignment_vectors.json` are
//! checked against this code and against Python's `mmh3`.

use std::io::Cursor;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Iso8601;
use uuid::Uuid;

use crate::types::Role;

/// Number of buckets a unit hashes into.
pub const BUCKETS: u32 = 10_000;

/// What a unit of assignment is: the same unit always lands in the same arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Bucketing {
    /// One symbol on one UTC day (`SYMBOL:YYYY-MM-DD`).
    #[default]
    SymbolDate,
    /// One symbol, for the experiment's whole life.
    Symbol,
    /// One client (the `X-Client-Id` header; `anonymous` when absent).
    Client,
    /// Each decision on its own (its `decision_id`).
    Decision,
}

/// Which side of an experiment or rollout a decision is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Arm {
    Control,
    Treatment,
}

impl Arm {
    pub const ALL: [Arm; 2] = [Arm::Control, Arm::Treatment];

    pub fn index(self) -> usize {
        match self {
            Arm::Control => 0,
            Arm::Treatment => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Arm::Control => "control",
            Arm::Treatment => "treatment",
        }
    }
}

/// What a decision is keyed on for assignment.
#[derive(Debug, Clone, Copy)]
pub struct Unit<'a> {
    pub symbol: &'a str,
    /// The instant the decision is about: the request's `timestamp`, or its arrival when absent.
    pub at: OffsetDateTime,
    pub client: Option<&'a str>,
    pub decision_id: Uuid,
}

impl Unit<'_> {
    /// The bucketing key of this unit.
    pub fn key(&self, bucketing: Bucketing) -> String {
        match bucketing {
            Bucketing::SymbolDate => {
                let date = self.at.to_offset(time::UtcOffset::UTC).date();
                let day = date
                    .format(&Iso8601::DATE)
                    .unwrap_or_else(|_| date.to_string());
                format!("{}:{day}", self.symbol)
            }
            Bucketing::Symbol => self.symbol.to_owned(),
            Bucketing::Client => self.client.unwrap_or("anonymous").to_owned(),
            Bucketing::Decision => self.decision_id.hyphenated().to_string(),
        }
    }
}

/// MurmurHash3 x86_32 of `salt:key` with seed 0.
pub fn hash(salt: &str, key: &str) -> u32 {
    let mut input = Vec::with_capacity(salt.len() + 1 + key.len());
    input.extend_from_slice(salt.as_bytes());
    input.push(b':');
    input.extend_from_slice(key.as_bytes());
    // Reading from an in-memory slice cannot fail.
    murmur3::murmur3_32(&mut Cursor::new(input), 0).unwrap_or_default()
}

/// The bucket, in `0..BUCKETS`, of `key` under `salt`.
pub fn bucket(salt: &str, key: &str) -> u32 {
    hash(salt, key) % BUCKETS
}

/// Treatment when `bucket < split * BUCKETS`.
pub fn arm_for(bucket: u32, split: f64) -> Arm {
    if f64::from(bucket) < split * f64::from(BUCKETS) {
        Arm::Treatment
    } else {
        Arm::Control
    }
}

/// The metrics a report may track.
pub const METRICS: [&str; 8] = [
    "decisions",
    "error_rate",
    "latency",
    "action_mix",
    "confidence",
    "risk_reject_rate",
    "win_rate",
    "sharpe",
];

/// An experiment as created through the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExperimentSpec {
    /// Generated (`exp-<uuid>`) when absent.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    )]
    pub experiment_id: Option<String>,
    pub role: Role,
    /// A registry version such as `"2"`: 1-64 characters, no path separator, no `..`.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 64, pattern = r"^(?!.*\.\.)[^/\\]+$")
    )]
    pub control_model_version: String,
    /// As `control_model_version`.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 64, pattern = r"^(?!.*\.\.)[^/\\]+$")
    )]
    pub treatment_model_version: String,
    /// Treatment share in [0, 1]: treatment when `bucket < split × 10000`, bucket =
    /// `murmur3_x86_32(salt + ':' + key, 0) % 10000`.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1))]
    pub traffic_split: f64,
    #[serde(default)]
    pub metrics_to_track: Option<Vec<String>>,
    #[serde(default)]
    pub bucketing: Bucketing,
    /// Defaults to the experiment id.
    #[serde(default)]
    pub salt: Option<String>,
    /// Free text: what the experiment is for.
    #[serde(default)]
    pub description: Option<String>,
}

/// A change to a running experiment (`PUT /api/v1/experiments/{id}`). What defines the units
/// (role, versions, bucketing, salt) cannot change: start a new experiment instead.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExperimentUpdate {
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1))]
    pub traffic_split: Option<f64>,
    #[serde(default)]
    pub metrics_to_track: Option<Vec<String>>,
    #[serde(default)]
    pub description: Option<String>,
}

/// Where an experiment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ExperimentStatus {
    Running,
    /// Ended (by `DELETE` or the kill switch): all traffic on the champion; the report stays.
    Stopped,
}

/// An experiment as stored and returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Experiment {
    pub experiment_id: String,
    pub role: Role,
    pub control_model_version: String,
    pub treatment_model_version: String,
    pub traffic_split: f64,
    pub metrics_to_track: Vec<String>,
    pub bucketing: Bucketing,
    pub salt: String,
    pub description: Option<String>,
    pub status: ExperimentStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub stopped_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub stop_reason: Option<String>,
}

/// Why an experiment definition is refused (HTTP 422), naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidField {
    pub field: &'static str,
    pub message: String,
}

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> InvalidField {
    InvalidField {
        field,
        message: message.into(),
    }
}

/// Ids of experiments and rollouts: 1–64 of `[A-Za-z0-9_.-]`, starting alphanumeric.
pub fn validate_id(field: &'static str, id: &str) -> Result<(), InvalidField> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            "must be 1-64 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit",
        ))
    }
}

/// A split is 0 or at least one bucket of 10,000 (0.0001), at most 1; `-0.0` and
/// subnormal values like `1e-320` are refused rather than silently meaning "nobody".
pub fn validate_split(split: f64) -> Result<(), InvalidField> {
    let zero = split == 0.0 && split.is_sign_positive();
    if zero || (split.is_finite() && (1e-4..=1.0).contains(&split)) {
        Ok(())
    } else {
        Err(invalid(
            "traffic_split",
            "must be 0 or a number in [0.0001, 1] (one bucket is 1/10000)",
        ))
    }
}

fn validate_metrics(metrics: Option<Vec<String>>) -> Result<Vec<String>, InvalidField> {
    let Some(metrics) = metrics else {
        return Ok(METRICS.iter().map(|m| (*m).to_owned()).collect());
    };
    for m in &metrics {
        if !METRICS.contains(&m.as_str()) {
            return Err(invalid(
                "metrics_to_track",
                format!("unknown metric {m:?}; known: {}", METRICS.join(", ")),
            ));
        }
    }
    Ok(metrics)
}

/// A registry version: 1–64 characters, no path separators or `..` (it names a folder).
pub fn validate_version(field: &'static str, v: &str) -> Result<(), InvalidField> {
    if v.is_empty() || v.len() > 64 || v.contains(['/', '\\']) || v.contains("..") {
        return Err(invalid(field, "must be a registry version such as \"2\""));
    }
    Ok(())
}

impl ExperimentSpec {
    /// Check every field and build the stored record (status `running`). Whether the versions
    /// exist is checked by whoever loads them.
    pub fn into_experiment(self, now: OffsetDateTime) -> Result<Experiment, InvalidField> {
        let id = match self.experiment_id {
            Some(id) => id,
            None => format!("exp-{}", Uuid::now_v7().simple()),
        };
        validate_id("experiment_id", &id)?;
        validate_version("control_model_version", &self.control_model_version)?;
        validate_version("treatment_model_version", &self.treatment_model_version)?;
        if self.control_model_version == self.treatment_model_version {
            return Err(invalid(
                "treatment_model_version",
                "must differ from control_model_version",
            ));
        }
        validate_split(self.traffic_split)?;
        let metrics_to_track = validate_metrics(self.metrics_to_track)?;
        let salt = self.salt.unwrap_or_else(|| id.clone());
        if salt.is_empty() || salt.len() > 128 {
            return Err(invalid("salt", "must be 1-128 characters"));
        }
        Ok(Experiment {
            experiment_id: id,
            role: self.role,
            control_model_version: self.control_model_version,
            treatment_model_version: self.treatment_model_version,
            traffic_split: self.traffic_split,
            metrics_to_track,
            bucketing: self.bucketing,
            salt,
            description: self.description,
            status: ExperimentStatus::Running,
            created_at: now,
            updated_at: now,
            stopped_at: None,
            stop_reason: None,
        })
    }
}

impl Experiment {
    /// Apply a `PUT`; unchanged fields stay.
    pub fn update(&mut self, u: ExperimentUpdate, now: OffsetDateTime) -> Result<(), InvalidField> {
        if let Some(split) = u.traffic_split {
            validate_split(split)?;
        }
        let metrics = match u.metrics_to_track {
            Some(m) => Some(validate_metrics(Some(m))?),
            None => None,
        };
        if let Some(split) = u.traffic_split {
            self.traffic_split = split;
        }
        if let Some(m) = metrics {
            self.metrics_to_track = m;
        }
        if let Some(d) = u.description {
            self.description = Some(d);
        }
        self.updated_at = now;
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.status == ExperimentStatus::Running
    }

    /// The arm and bucket of a unit.
    pub fn assign(&self, unit: &Unit<'_>) -> (Arm, u32) {
        let b = bucket(&self.salt, &unit.key(self.bucketing));
        (arm_for(b, self.traffic_split), b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_split_is_zero_or_at_least_one_bucket() {
        for ok in [0.0, 1e-4, 0.3, 1.0] {
            assert!(validate_split(ok).is_ok(), "{ok}");
        }
        for bad in [-0.0, 1e-320, 5e-5, -0.1, 1.0001, f64::NAN, f64::INFINITY] {
            let e = validate_split(bad).unwrap_err();
            assert_eq!(e.field, "traffic_split", "{bad}");
        }
    }

    #[test]
    fn murmur3_matches_reference_vectors() {
        // Reference values of MurmurHash3_x86_32 (Appleby's smhasher), seed 0.
        let h = |s: &str| murmur3::murmur3_32(&mut Cursor::new(s.as_bytes()), 0).unwrap();
        assert_eq!(h(""), 0);
        assert_eq!(h("hello"), 0x248b_fa47);
        assert_eq!(
            h("The quick brown fox jumps over the lazy dog"),
            0x2e4f_f723
        );
    }

    #[test]
    fn symbol_date_key_uses_the_utc_day() {
        let unit = Unit {
            symbol: "AAPL",
            // 23:30 at UTC-5 is already the next day in UTC.
            at: datetime!(2025-10-21 23:30 -5),
            client: None,
            decision_id: Uuid::nil(),
        };
        assert_eq!(unit.key(Bucketing::SymbolDate), "AAPL:2025-10-22");
        assert_eq!(unit.key(Bucketing::Symbol), "AAPL");
        assert_eq!(unit.key(Bucketing::Client), "anonymous");
        assert_eq!(
            unit.key(Bucketing::Decision),
            "00000000-0000-0000-0000-000000000000"
        );
    }

    #[test]
    fn arm_boundaries() {
        assert_eq!(arm_for(0, 0.0), Arm::Control);
        assert_eq!(arm_for(0, 0.0001), Arm::Treatment);
        assert_eq!(arm_for(999, 0.1), Arm::Treatment);
        assert_eq!(arm_for(1000, 0.1), Arm::Control);
        assert_eq!(arm_for(9999, 1.0), Arm::Treatment);
    }

    #[test]
    fn raising_the_split_never_moves_treatment_back() {
        let splits = [0.0, 0.05, 0.1, 0.25, 0.5, 0.9, 1.0];
        for i in 0..2000 {
            let key = format!("SYM{i}:2025-01-02");
            let b = bucket("exp-1", &key);
            let mut was_treatment = false;
            for s in splits {
                let t = arm_for(b, s) == Arm::Treatment;
                assert!(t || !was_treatment, "{key} moved back at split {s}");
                was_treatment = t;
            }
        }
    }

    fn spec() -> ExperimentSpec {
        ExperimentSpec {
            experiment_id: Some("exp-42".into()),
            role: Role::BullSpecialist,
            control_model_version: "1".into(),
            treatment_model_version: "2".into(),
            traffic_split: 0.5,
            metrics_to_track: None,
            bucketing: Bucketing::default(),
            salt: None,
            description: None,
        }
    }

    #[test]
    fn spec_defaults_and_validation() {
        let now = datetime!(2025-01-01 0:00 UTC);
        let e = spec().into_experiment(now).unwrap();
        assert_eq!(e.salt, "exp-42");
        assert_eq!(e.metrics_to_track.len(), METRICS.len());
        assert_eq!(e.status, ExperimentStatus::Running);

        let field = |s: ExperimentSpec| s.into_experiment(now).unwrap_err().field;
        assert_eq!(
            field(ExperimentSpec {
                traffic_split: 1.5,
                ..spec()
            }),
            "traffic_split"
        );
        assert_eq!(
            field(ExperimentSpec {
                traffic_split: f64::NAN,
                ..spec()
            }),
            "traffic_split"
        );
        assert_eq!(
            field(ExperimentSpec {
                treatment_model_version: "1".into(),
                ..spec()
            }),
            "treatment_model_version"
        );
        assert_eq!(
            field(ExperimentSpec {
                experiment_id: Some("../x".into()),
                ..spec()
            }),
            "experiment_id"
        );
        assert_eq!(
            field(ExperimentSpec {
                metrics_to_track: Some(vec!["alpha".into()]),
                ..spec()
            }),
            "metrics_to_track"
        );
        let generated = ExperimentSpec {
            experiment_id: None,
            ..spec()
        }
        .into_experiment(now)
        .unwrap();
        assert!(generated.experiment_id.starts_with("exp-"));
    }

    #[test]
    fn update_keeps_the_unit_definition() {
        let now = datetime!(2025-01-01 0:00 UTC);
        let mut e = spec().into_experiment(now).unwrap();
        let err = e
            .update(
                ExperimentUpdate {
                    traffic_split: Some(-0.1),
                    ..Default::default()
                },
                now,
            )
            .unwrap_err();
        assert_eq!(err.field, "traffic_split");
        assert_eq!(e.traffic_split, 0.5);
        e.update(
            ExperimentUpdate {
                traffic_split: Some(0.8),
                ..Default::default()
            },
            now,
        )
        .unwrap();
        assert_eq!(e.traffic_split, 0.8);
    }
}
