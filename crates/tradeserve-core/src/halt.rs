//! Trading halts: one action that withholds every order, or those of one symbol, one desk (an
//! API key) or one model version, until a person releases it. A halt is part of the control
//! state (stored and shared like experiments and rollouts, so it survives restarts and
//! reaches every replica); the active ones ride in the routing snapshot, and a decision they
//! cover fails its `kill_switch` check with the halt's id. The commands that create and release
//! halts are in [`crate::control::commands`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::experiment::{InvalidField, invalid};
use crate::types::{Role, Symbol};

/// Longest reason kept with a halt or its release.
pub const MAX_REASON: usize = 500;

/// What a halt withholds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum HaltScope {
    /// Every order.
    // A struct variant with no fields: serde refuses unknown fields only in struct variants
    // of an internally tagged enum, and `{"type": "all", "x": 1}` must be 422.
    All {},
    /// Orders in one symbol.
    Symbol {
        #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Z][A-Z0-9.\-]{0,11}$"))]
        symbol: String,
    },
    /// Orders of one desk: the id of its API key (with authentication off, no request has a
    /// desk and such a halt covers nothing).
    Desk {
        #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
        key_id: String,
    },
    /// Orders decided by a model set that holds this version of this role.
    ModelVersion {
        role: Role,
        #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
        version: String,
    },
}

impl HaltScope {
    pub fn kind(&self) -> &'static str {
        match self {
            HaltScope::All {} => "all",
            HaltScope::Symbol { .. } => "symbol",
            HaltScope::Desk { .. } => "desk",
            HaltScope::ModelVersion { .. } => "model_version",
        }
    }

    pub const KINDS: [&'static str; 4] = ["all", "symbol", "desk", "model_version"];

    fn validate(&self) -> Result<(), InvalidField> {
        let bad = |m: &str| Err(invalid("scope", m));
        match self {
            HaltScope::All {} => Ok(()),
            HaltScope::Symbol { symbol } => match Symbol::parse(symbol) {
                Ok(_) => Ok(()),
                Err(e) => bad(&format!("symbol: {e}")),
            },
            HaltScope::Desk { key_id } if key_id.is_empty() || key_id.len() > 64 => {
                bad("key_id must be 1-64 characters")
            }
            HaltScope::ModelVersion { version, .. } if version.is_empty() || version.len() > 64 => {
                bad("version must be 1-64 characters")
            }
            _ => Ok(()),
        }
    }

    /// Whether an order of `symbol` by `desk`, decided on `versions`, is in scope.
    fn covers(&self, symbol: &str, desk: Option<&str>, versions: &BTreeMap<Role, String>) -> bool {
        match self {
            HaltScope::All {} => true,
            HaltScope::Symbol { symbol: s } => s == symbol,
            HaltScope::Desk { key_id } => desk == Some(key_id.as_str()),
            HaltScope::ModelVersion { role, version } => versions.get(role) == Some(version),
        }
    }
}

/// `POST /api/v1/halts`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HaltSpec {
    pub scope: HaltScope,
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 500))]
    pub reason: String,
}

impl HaltSpec {
    pub fn validate(&self) -> Result<(), InvalidField> {
        self.scope.validate()?;
        validate_reason(&self.reason)
    }
}

/// A reason is required: 1 to [`MAX_REASON`] characters.
pub fn validate_reason(reason: &str) -> Result<(), InvalidField> {
    if reason.trim().is_empty() || reason.chars().count() > MAX_REASON {
        return Err(invalid(
            "reason",
            format!("a reason of 1-{MAX_REASON} characters is required"),
        ));
    }
    Ok(())
}

/// Where a halt is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum HaltStatus {
    Active,
    /// Still active: one operator asked to release it, a second, different one must confirm.
    ReleaseRequested,
    Released,
}

impl HaltStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HaltStatus::Active => "active",
            HaltStatus::ReleaseRequested => "release_requested",
            HaltStatus::Released => "released",
        }
    }
}

/// Who did something to a halt, when and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = HaltSigned))]
pub struct Signed {
    pub by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub reason: String,
}

/// One halt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Halt {
    /// `halt-<UUIDv7>`: named in the `kill_switch` warning of every decision it withholds.
    pub halt_id: String,
    pub scope: HaltScope,
    pub status: HaltStatus,
    pub reason: String,
    pub created: Signed,
    /// The first of two operators (`release_approvals = 2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_requested: Option<Signed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<Signed>,
}

impl Halt {
    /// Whether it still withholds orders.
    pub fn is_active(&self) -> bool {
        self.status != HaltStatus::Released
    }
}

/// The active halts a request is checked against (in the routing snapshot).
#[derive(Debug, Clone, Default)]
pub struct ActiveHalts(Vec<Halt>);

impl ActiveHalts {
    pub fn new<'a>(halts: impl IntoIterator<Item = &'a Halt>) -> ActiveHalts {
        ActiveHalts(
            halts
                .into_iter()
                .filter(|h| h.is_active())
                .cloned()
                .collect(),
        )
    }

    /// The first active halt covering an order of `symbol` by `desk` decided on `versions`.
    pub fn covering(
        &self,
        symbol: &str,
        desk: Option<&str>,
        versions: &BTreeMap<Role, String>,
    ) -> Option<&Halt> {
        self.0
            .iter()
            .find(|h| h.scope.covers(symbol, desk, versions))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Active halts by scope kind.
    pub fn by_kind(&self) -> BTreeMap<&'static str, usize> {
        let mut counts: BTreeMap<&'static str, usize> =
            HaltScope::KINDS.iter().map(|k| (*k, 0)).collect();
        for h in &self.0 {
            *counts.entry(h.scope.kind()).or_default() += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn halt(scope: HaltScope) -> Halt {
        Halt {
            halt_id: "h".into(),
            scope,
            status: HaltStatus::Active,
            reason: "r".into(),
            created: Signed {
                by: "op".into(),
                at: OffsetDateTime::UNIX_EPOCH,
                reason: "r".into(),
            },
            release_requested: None,
            released: None,
        }
    }

    #[test]
    fn each_scope_covers_what_it_names_and_nothing_else() {
        let versions: BTreeMap<Role, String> = Role::ALL.iter().map(|r| (*r, "1".into())).collect();
        let mut v2 = versions.clone();
        v2.insert(Role::BullSpecialist, "2".into());
        let cases = [
            (HaltScope::All {}, "MSFT", None, &versions, true),
            (
                HaltScope::Symbol {
                    symbol: "AAPL".into(),
                },
                "AAPL",
                None,
                &versions,
                true,
            ),
            (
                HaltScope::Symbol {
                    symbol: "AAPL".into(),
                },
                "MSFT",
                None,
                &versions,
                false,
            ),
            (
                HaltScope::Desk {
                    key_id: "desk-1".into(),
                },
                "AAPL",
                Some("desk-1"),
                &versions,
                true,
            ),
            (
                HaltScope::Desk {
                    key_id: "desk-1".into(),
                },
                "AAPL",
                Some("desk-2"),
                &versions,
                false,
            ),
            (
                HaltScope::Desk {
                    key_id: "desk-1".into(),
                },
                "AAPL",
                None,
                &versions,
                false,
            ),
            (
                HaltScope::ModelVersion {
                    role: Role::BullSpecialist,
                    version: "2".into(),
                },
                "AAPL",
                None,
                &v2,
                true,
            ),
            (
                HaltScope::ModelVersion {
                    role: Role::BullSpecialist,
                    version: "2".into(),
                },
                "AAPL",
                None,
                &versions,
                false,
            ),
        ];
        for (scope, symbol, desk, versions, covered) in cases {
            let active = ActiveHalts::new([&halt(scope.clone())]);
            assert_eq!(
                active.covering(symbol, desk, versions).is_some(),
                covered,
                "{scope:?}"
            );
        }
        let mut released = halt(HaltScope::All {});
        released.status = HaltStatus::Released;
        assert!(ActiveHalts::new([&released]).is_empty());
    }

    #[test]
    fn a_scope_reads_from_json_and_bad_ones_are_refused() {
        let spec: HaltSpec = serde_json::from_str(
            r#"{"scope":{"type":"model_version","role":"bull_specialist","version":"2"},"reason":"drift"}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(spec.validate().is_ok());
        for bad in [
            r#"{"scope":{"type":"symbol","symbol":"aapl"},"reason":"x"}"#,
            r#"{"scope":{"type":"all"},"reason":" "}"#,
            r#"{"scope":{"type":"desk","key_id":""},"reason":"x"}"#,
        ] {
            let spec: HaltSpec = serde_json::from_str(bad).unwrap_or_else(|e| panic!("{e}"));
            assert!(spec.validate().is_err(), "{bad}");
        }
        assert!(
            serde_json::from_str::<HaltSpec>(r#"{"scope":{"type":"planet"},"reason":"x"}"#)
                .is_err()
        );
    }
}
