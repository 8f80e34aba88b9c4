//! Drift of live inputs from a model's training data: the reference distributions a model
//! version ships (`reference.json`, written by `training/reference.py` — per input feature,
//! the training deciles as bin edges and the share of training rows in each bin), the bin of a
//! live value, and the population stability index of live counts against a reference.
//!
//! PSI = Σ (aᵢ − eᵢ) · ln(aᵢ / eᵢ) over the bins, with live shares aᵢ and reference shares eᵢ,
//! each floored at [`PSI_FLOOR`] so an empty bin counts as rare rather than infinite. The usual
//! reading: < 0.1 stable, 0.1–0.25 a moderate shift, > 0.25 a major one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The share an empty bin is counted as (of live or reference data).
pub const PSI_FLOOR: f64 = 1e-4;

/// One feature's training distribution: strictly increasing bin edges and the share of rows
/// in each of the `edges.len() + 1` bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Distribution {
    pub edges: Vec<f64>,
    pub fractions: Vec<f64>,
}

impl Distribution {
    /// The bin of `x`: how many edges are at or below it (NaN: the last bin).
    pub fn bin(&self, x: f64) -> usize {
        if x.is_nan() {
            return self.edges.len();
        }
        self.edges.partition_point(|e| *e <= x)
    }

    fn validate(&self) -> Result<(), BadReference> {
        let bad = |m: String| Err(BadReference(m));
        if self.edges.iter().any(|e| !e.is_finite()) || self.edges.windows(2).any(|w| w[0] >= w[1])
        {
            return bad("edges must be finite and strictly increasing".into());
        }
        if self.fractions.len() != self.edges.len() + 1 {
            return bad(format!(
                "{} edges need {} fractions, not {}",
                self.edges.len(),
                self.edges.len() + 1,
                self.fractions.len()
            ));
        }
        let sum: f64 = self.fractions.iter().sum();
        if self.fractions.iter().any(|f| !(f.is_finite() && *f >= 0.0)) || (sum - 1.0).abs() > 1e-6
        {
            return bad(format!("fractions must be >= 0 and sum to 1 (sum {sum})"));
        }
        Ok(())
    }
}

/// A model version's training reference (`reference.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// The model file it was written for.
    pub model_sha256: String,
    /// What it was computed over.
    #[serde(default)]
    pub data: String,
    #[serde(default)]
    pub rows: u64,
    pub features: BTreeMap<String, Distribution>,
}

impl Reference {
    /// Check it belongs to the model (`sha256`), covers exactly its `columns`, and is well
    /// formed.
    pub fn validate(&self, sha256: &str, columns: &[&str]) -> Result<(), BadReference> {
        if self.model_sha256 != sha256 {
            return Err(BadReference(format!(
                "written for model sha256 {}, not this model's {sha256}",
                self.model_sha256
            )));
        }
        let named: Vec<&str> = self.features.keys().map(String::as_str).collect();
        let mut wanted: Vec<&str> = columns.to_vec();
        wanted.sort_unstable();
        if named != wanted {
            return Err(BadReference(format!(
                "covers features {named:?}; the model's inputs are {columns:?}"
            )));
        }
        for (name, d) in &self.features {
            d.validate()
                .map_err(|e| BadReference(format!("{name}: {}", e.0)))?;
        }
        Ok(())
    }
}

/// Why a reference does not fit its model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct BadReference(pub String);

/// The PSI of live `counts` (one per bin) against `expected` shares; `None` without data.
pub fn psi(expected: &[f64], counts: &[u64]) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 || expected.len() != counts.len() {
        return None;
    }
    let psi = expected
        .iter()
        .zip(counts)
        .map(|(e, c)| {
            let e = e.max(PSI_FLOOR);
            let a = (*c as f64 / total as f64).max(PSI_FLOOR);
            (a - e) * (a / e).ln()
        })
        .sum();
    Some(psi)
}

/// The probability of `hits` or fewer in `judged` orders if each hit with probability
/// `expected` (a one-sided binomial test: small when the live hit rate is below the expected
/// one by more than chance explains). `None` without orders or with `expected` outside (0, 1).
pub fn lower_hit_rate_p_value(hits: u64, judged: u64, expected: f64) -> Option<f64> {
    use statrs::distribution::{Binomial, DiscreteCDF};
    if judged == 0 || !(expected > 0.0 && expected < 1.0) {
        return None;
    }
    let b = Binomial::new(expected, judged).ok()?;
    Some(b.cdf(hits.min(judged)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn deciles() -> Distribution {
        Distribution {
            edges: (1..10).map(|i| f64::from(i) / 10.0).collect(),
            fractions: vec![0.1; 10],
        }
    }

    #[test]
    fn a_value_on_an_edge_falls_in_the_bin_above_it() {
        let d = deciles();
        assert_eq!(d.bin(-5.0), 0);
        assert_eq!(d.bin(0.1), 1);
        assert_eq!(d.bin(0.15), 1);
        assert_eq!(d.bin(0.9), 9);
        assert_eq!(d.bin(f64::NAN), 9);
    }

    #[test]
    fn psi_is_zero_for_the_reference_and_grows_with_the_shift() {
        let d = deciles();
        assert_eq!(psi(&d.fractions, &[10; 10]), Some(0.0));
        assert_eq!(psi(&d.fractions, &[0; 10]), None);
        // Half the mass moved from the lower five bins to the upper five: a major shift.
        let shifted = [5, 5, 5, 5, 5, 15, 15, 15, 15, 15];
        let p = psi(&d.fractions, &shifted).unwrap();
        let by_hand = 5.0 * (0.05 - 0.1) * (0.5f64).ln() + 5.0 * (0.15 - 0.1) * (1.5f64).ln();
        assert!((p - by_hand).abs() < 1e-12, "{p} vs {by_hand}");
        // Everything in one bin: the empty bins count at the floor, not as infinity.
        let one = psi(&d.fractions, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 100]).unwrap();
        assert!(one.is_finite() && one > 2.0, "{one}");
    }

    #[test]
    fn the_binomial_test_is_small_only_for_a_hit_rate_well_below_the_expected_one() {
        // 10 orders, expected 0.5: P(X <= 2) = (1 + 10 + 45) / 1024.
        let p = lower_hit_rate_p_value(2, 10, 0.5).unwrap();
        assert!((p - 56.0 / 1024.0).abs() < 1e-12, "{p}");
        // 2,000 orders at 47% against an expected 53%: far below.
        assert!(lower_hit_rate_p_value(940, 2000, 0.53).unwrap() < 1e-6);
        // At or above the expected rate: nothing to see.
        assert!(lower_hit_rate_p_value(1060, 2000, 0.53).unwrap() > 0.5);
        assert_eq!(lower_hit_rate_p_value(0, 0, 0.5), None);
        assert_eq!(lower_hit_rate_p_value(1, 2, 1.0), None);
    }

    #[test]
    fn a_reference_must_fit_its_model() {
        let columns = ["a", "b"];
        let r = Reference {
            model_sha256: "abc".into(),
            data: String::new(),
            rows: 10,
            features: [("a".to_owned(), deciles()), ("b".to_owned(), deciles())].into(),
        };
        assert!(r.validate("abc", &columns).is_ok());
        assert!(
            r.validate("abd", &columns)
                .unwrap_err()
                .0
                .contains("sha256")
        );
        assert!(r.validate("abc", &["a"]).unwrap_err().0.contains("inputs"));
        let mut bad = r.clone();
        bad.features.get_mut("a").unwrap().fractions[0] = 0.5;
        assert!(
            bad.validate("abc", &columns)
                .unwrap_err()
                .0
                .contains("sum to 1")
        );
        let mut bad = r;
        bad.features.get_mut("b").unwrap().edges[3] = 0.0;
        assert!(
            bad.validate("abc", &columns)
                .unwrap_err()
                .0
                .contains("increasing")
        );
    }
}
