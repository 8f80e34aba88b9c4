//! Closed sets of the domain (actions, model roles, specialists) and the validated [`Symbol`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// What the desk should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Action {
    Buy,
    Sell,
    Hold,
}

impl Action {
    /// Order of the specialists' output tensor: P(BUY), P(SELL), P(HOLD).
    pub const ALL: [Action; 3] = [Action::Buy, Action::Sell, Action::Hold];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Buy => "BUY",
            Action::Sell => "SELL",
            Action::Hold => "HOLD",
        }
    }

    /// +1 for BUY, -1 for SELL, 0 for HOLD: the sign of the position change.
    pub fn direction(self) -> i64 {
        match self {
            Action::Buy => 1,
            Action::Sell => -1,
            Action::Hold => 0,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The three strategy specialists the meta-controller weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Specialist {
    #[serde(rename = "bull_specialist")]
    Bull,
    #[serde(rename = "bear_specialist")]
    Bear,
    #[serde(rename = "sideways_specialist")]
    Sideways,
}

impl Specialist {
    /// Order of the meta-controller's output tensor and of the regimes.
    pub const ALL: [Specialist; 3] = [Specialist::Bull, Specialist::Bear, Specialist::Sideways];

    pub fn role(self) -> Role {
        match self {
            Specialist::Bull => Role::BullSpecialist,
            Specialist::Bear => Role::BearSpecialist,
            Specialist::Sideways => Role::SidewaysSpecialist,
        }
    }

    pub fn index(self) -> usize {
        match self {
            Specialist::Bull => 0,
            Specialist::Bear => 1,
            Specialist::Sideways => 2,
        }
    }
}

/// The five model roles of a model set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    RegimeDetector,
    MetaController,
    BullSpecialist,
    BearSpecialist,
    SidewaysSpecialist,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::RegimeDetector,
        Role::MetaController,
        Role::BullSpecialist,
        Role::BearSpecialist,
        Role::SidewaysSpecialist,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::RegimeDetector => "regime_detector",
            Role::MetaController => "meta_controller",
            Role::BullSpecialist => "bull_specialist",
            Role::BearSpecialist => "bear_specialist",
            Role::SidewaysSpecialist => "sideways_specialist",
        }
    }

    /// Position in [`Role::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The registry name of the role's model (`tradeserve.<role>`).
    pub fn registry_name(self) -> String {
        format!("tradeserve.{}", self.as_str())
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A set of roles (one bit each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoleSet(u8);

impl RoleSet {
    pub const EMPTY: RoleSet = RoleSet(0);

    pub fn insert(&mut self, role: Role) {
        self.0 |= 1 << role.index();
    }

    pub fn contains(self, role: Role) -> bool {
        self.0 & (1 << role.index()) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A ticker symbol: 1–12 characters, `^[A-Z][A-Z0-9.\-]*$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Symbol(String);

impl<'de> Deserialize<'de> for Symbol {
    /// Read back (events), validated like a request's symbol.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Symbol, D::Error> {
        let s = String::deserialize(d)?;
        Symbol::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a string is not a [`Symbol`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("symbol must be 1-12 characters matching ^[A-Z][A-Z0-9.\\-]*$")]
pub struct InvalidSymbol;

impl Symbol {
    pub const MAX_LEN: usize = 12;

    pub fn parse(s: &str) -> Result<Symbol, InvalidSymbol> {
        let bytes = s.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= Self::MAX_LEN
            && bytes[0].is_ascii_uppercase()
            && bytes[1..]
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-');
        if valid {
            Ok(Symbol(s.to_owned()))
        } else {
            Err(InvalidSymbol)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_rules() {
        for ok in ["A", "AAPL", "BRK.B", "BF-B", "ABCDEFGHIJKL", "X1"] {
            assert!(Symbol::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "aapl",
            "1AB",
            ".A",
            "ABCDEFGHIJKLM",
            "AA PL",
            "AÄ",
            "A_B",
        ] {
            assert_eq!(Symbol::parse(bad), Err(InvalidSymbol), "{bad}");
        }
    }

    #[test]
    fn roles_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert_eq!(
                serde_json::to_string(&r).ok(),
                Some(format!("\"{}\"", r.as_str()))
            );
        }
        for s in Specialist::ALL {
            assert_eq!(
                serde_json::to_string(&s).ok(),
                Some(format!("\"{}\"", s.role().as_str()))
            );
        }
    }
}
