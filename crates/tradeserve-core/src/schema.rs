//! The feature schema: names and order of every model input.
//!
//! Training (`training/features.py`) and serving share these names; a model whose `MLmodel`
//! metadata lists other input columns is refused at load time.

/// Inputs of the regime detector and the three specialists, in tensor order.
pub const FEATURES: [&str; 12] = [
    "ret_1",
    "ret_5",
    "ret_15",
    "ret_60",
    "vol_15",
    "vol_60",
    "vol_ratio",
    "rsi_14",
    "sma_gap_20",
    "sma_gap_60",
    "range_15",
    "volume_z_60",
];

/// Recent hit rates of the three strategy archetypes (bull, bear, sideways).
pub const HIT_RATES: [&str; 3] = ["hit_bull", "hit_bear", "hit_sideways"];

/// Inputs of the meta-controller, in tensor order.
pub const META_INPUTS: [&str; 9] = [
    "p_bull",
    "p_bear",
    "p_sideways",
    "entropy",
    "hit_bull",
    "hit_bear",
    "hit_sideways",
    "vol_15",
    "ret_15",
];

/// Index of `vol_15` in [`FEATURES`].
pub const VOL_15: usize = 4;
/// Index of `ret_15` in [`FEATURES`].
pub const RET_15: usize = 2;

/// Width of the regime detector's and specialists' input.
pub const FEATURE_WIDTH: usize = FEATURES.len();
/// Width of the meta-controller's input.
pub const META_WIDTH: usize = META_INPUTS.len();
