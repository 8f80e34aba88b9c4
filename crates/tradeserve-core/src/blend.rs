//! Ensemble arithmetic: normalization, normalized entropy, blending the specialists'
//! action probabilities by the meta-controller's weights, and choosing the action.
//!
//! All arithmetic is in f64 on the models' f32 outputs, so the published probabilities sum to
//! 1 within f64 rounding.

use crate::types::Action;

/// Three probabilities in a fixed order (regimes, strategies or actions).
pub type Probs = [f64; 3];

/// Widen a model's output and renormalize it so it sums to 1.
///
/// Non-finite or negative entries are a model defect; they are reported, never blended.
pub fn normalize(raw: [f32; 3]) -> Option<Probs> {
    let p = raw.map(f64::from);
    if p.iter().any(|x| !x.is_finite() || *x < 0.0) {
        return None;
    }
    let sum: f64 = p.iter().sum();
    if sum <= 0.0 {
        return None;
    }
    Some(p.map(|x| x / sum))
}

/// Shannon entropy divided by ln 3: 0 for a certain distribution, 1 for a uniform one.
pub fn normalized_entropy(p: &Probs) -> f64 {
    let h: f64 = p.iter().filter(|x| **x > 0.0).map(|x| -x * x.ln()).sum();
    (h / 3f64.ln()).clamp(0.0, 1.0)
}

/// Σ_s weight_s × P_s(action), renormalized.
pub fn blend(weights: &Probs, specialists: &[Probs; 3]) -> Probs {
    let mut out = [0.0; 3];
    for (w, p) in weights.iter().zip(specialists) {
        for (o, x) in out.iter_mut().zip(p) {
            *o += w * x;
        }
    }
    let sum: f64 = out.iter().sum();
    if sum > 0.0 {
        out.map(|x| x / sum)
    } else {
        [0.0, 0.0, 1.0]
    }
}

/// The most probable action and its probability. Ties resolve towards the more
/// conservative action: HOLD before BUY before SELL.
pub fn choose(p: &Probs) -> (Action, f64) {
    let order = [
        (Action::Hold, p[2]),
        (Action::Buy, p[0]),
        (Action::Sell, p[1]),
    ];
    let mut best = order[0];
    for candidate in &order[1..] {
        if candidate.1 > best.1 {
            best = *candidate;
        }
    }
    best
}

/// Index of the largest weight (first on ties).
pub fn argmax(p: &Probs) -> usize {
    let mut best = 0;
    for i in 1..3 {
        if p[i] > p[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn entropy_bounds() {
        assert!(close(normalized_entropy(&[1.0, 0.0, 0.0]), 0.0));
        assert!(close(normalized_entropy(&[1.0 / 3.0; 3]), 1.0));
        // H(0.5, 0.5, 0) = ln 2, normalized by ln 3.
        assert!(close(
            normalized_entropy(&[0.5, 0.5, 0.0]),
            2f64.ln() / 3f64.ln()
        ));
        let e = normalized_entropy(&[0.65, 0.15, 0.20]);
        assert!((e - 0.8069).abs() < 1e-4, "{e}");
    }

    #[test]
    fn normalize_rejects_garbage_and_renormalizes() {
        assert_eq!(normalize([f32::NAN, 0.5, 0.5]), None);
        assert_eq!(normalize([-0.1, 0.6, 0.5]), None);
        assert_eq!(normalize([0.0, 0.0, 0.0]), None);
        let p = normalize([0.2, 0.2, 0.6000001]).unwrap();
        assert!(close(p.iter().sum(), 1.0));
    }

    #[test]
    fn blend_is_the_weighted_mixture() {
        let specialists = [[0.7, 0.1, 0.2], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]];
        let p = blend(&[0.6, 0.1, 0.3], &specialists);
        assert!(close(p[0], 0.6 * 0.7 + 0.1 * 0.1 + 0.3 * 0.2));
        assert!(close(p[1], 0.6 * 0.1 + 0.1 * 0.8 + 0.3 * 0.2));
        assert!(close(p[2], 0.6 * 0.2 + 0.1 * 0.1 + 0.3 * 0.6));
        assert!(close(p.iter().sum(), 1.0));
        // A one-hot weight returns that specialist unchanged.
        assert_eq!(blend(&[0.0, 1.0, 0.0], &specialists), specialists[1]);
    }

    #[test]
    fn choose_picks_max_and_breaks_ties_conservatively() {
        assert_eq!(choose(&[0.5, 0.3, 0.2]), (Action::Buy, 0.5));
        assert_eq!(choose(&[0.2, 0.5, 0.3]), (Action::Sell, 0.5));
        assert_eq!(choose(&[0.4, 0.4, 0.2]), (Action::Buy, 0.4));
        assert_eq!(choose(&[0.4, 0.2, 0.4]), (Action::Hold, 0.4));
        assert_eq!(choose(&[1.0 / 3.0; 3]).0, Action::Hold);
        assert_eq!(argmax(&[0.2, 0.5, 0.5]), 1);
    }
}
