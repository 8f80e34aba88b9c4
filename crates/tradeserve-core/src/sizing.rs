//! The sizing policy that turns a decision into `recommended_quantity`.
//!
//! ```text
//! HOLD, or confidence < min_confidence           → 0
//! edge      = (confidence − min_confidence) / (1 − min_confidence)        ∈ [0, 1]
//! vol_scale = min(1, target_volatility / vol_15)  (1 when vol_15 is 0)     volatility targeting
//! notional  = max_order_notional × edge × vol_scale
//! quantity  = floor(notional / price / lot_size) × lot_size
//! ```
//! A confident call in a calm market gets up to `max_order_notional`; the same confidence in a
//! market twice as volatile as the target gets half of it.

use crate::error::InvalidSetting;
use serde::{Deserialize, Serialize};
use std::num::NonZeroU64;

use crate::types::Action;

/// Parameters of the sizing policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SizingPolicy {
    /// Below this confidence the recommendation is 0 shares.
    pub min_confidence: f64,
    /// Notional (USD) of a fully confident order at target volatility.
    pub max_order_notional: f64,
    /// Per-bar volatility (std of one-minute log returns) at which size is not reduced.
    pub target_volatility: f64,
    /// Quantities are whole multiples of this many shares.
    pub lot_size: NonZeroU64,
}

impl Default for SizingPolicy {
    fn default() -> Self {
        SizingPolicy {
            min_confidence: 0.40,
            max_order_notional: 100_000.0,
            target_volatility: 0.0010,
            lot_size: crate::bounded::at_least_one(10),
        }
    }
}

impl SizingPolicy {
    /// Check the parameters; the message names the bad one.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if !(0.0..1.0).contains(&self.min_confidence) {
            return Err("sizing.min_confidence must be in [0, 1)".into());
        }
        if !(self.max_order_notional.is_finite() && self.max_order_notional >= 0.0) {
            return Err("sizing.max_order_notional must be a finite number >= 0".into());
        }
        if !(self.target_volatility.is_finite() && self.target_volatility > 0.0) {
            return Err("sizing.target_volatility must be > 0".into());
        }
        Ok(())
    }

    /// Shares to trade for this action, confidence, last price and recent volatility.
    pub fn quantity(&self, action: Action, confidence: f64, price: f64, vol_15: f64) -> u64 {
        if action == Action::Hold
            || confidence < self.min_confidence
            || price.is_nan()
            || price <= 0.0
        {
            return 0;
        }
        let edge =
            ((confidence - self.min_confidence) / (1.0 - self.min_confidence)).clamp(0.0, 1.0);
        let vol_scale = if vol_15 > 0.0 {
            (self.target_volatility / vol_15).min(1.0)
        } else {
            1.0
        };
        let notional = self.max_order_notional * edge * vol_scale;
        let lots = (notional / price / self.lot_size.get() as f64).floor();
        if lots.is_finite() && lots > 0.0 {
            lots as u64 * self.lot_size.get()
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_and_low_confidence_size_zero() {
        let p = SizingPolicy::default();
        assert_eq!(p.quantity(Action::Hold, 0.99, 100.0, 0.0005), 0);
        assert_eq!(p.quantity(Action::Buy, 0.39, 100.0, 0.0005), 0);
        assert_eq!(p.quantity(Action::Buy, 0.40, 100.0, 0.0005), 0);
        assert_eq!(p.quantity(Action::Buy, 0.9, 0.0, 0.0005), 0);
    }

    #[test]
    fn full_confidence_calm_market_uses_the_whole_budget() {
        let p = SizingPolicy::default();
        // 100k / 100 = 1000 shares, a multiple of 10.
        assert_eq!(p.quantity(Action::Buy, 1.0, 100.0, 0.0005), 1000);
        assert_eq!(p.quantity(Action::Sell, 1.0, 100.0, 0.0010), 1000);
    }

    #[test]
    fn edge_and_volatility_scale_linearly_and_round_down_to_lots() {
        let p = SizingPolicy::default();
        // edge = (0.7 - 0.4) / 0.6 = 0.5 → 50k; vol 2× target → 25k; /137 = 182.48 → 180.
        assert_eq!(p.quantity(Action::Buy, 0.7, 137.0, 0.0020), 180);
        // Every result is a multiple of the lot size.
        for c in [0.41, 0.55, 0.63, 0.77, 0.93] {
            for price in [23.0, 131.5, 720.25] {
                let q = p.quantity(Action::Buy, c, price, 0.0013);
                assert_eq!(q % p.lot_size.get(), 0);
                assert!(q as f64 * price <= p.max_order_notional + 1e-9);
            }
        }
    }

    #[test]
    fn validation_names_the_bad_parameter() {
        let bad = SizingPolicy {
            target_volatility: 0.0,
            ..SizingPolicy::default()
        };
        assert!(bad.validate().unwrap_err().0.contains("target_volatility"));
        let bad = SizingPolicy {
            min_confidence: 1.0,
            ..SizingPolicy::default()
        };
        assert!(bad.validate().unwrap_err().0.contains("min_confidence"));
        assert!(SizingPolicy::default().validate().is_ok());
    }
}
