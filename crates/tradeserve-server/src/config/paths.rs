//! Where the service finds the data files a config names (models, bars): as given, else
//! relative to the source checkout the binary was built from, and what to say when neither
//! exists.

use std::path::{Path, PathBuf};

use super::ConfigError;

/// Where a relative data path is looked for: the working directory, then the source
/// checkout this binary was built from (so `tradeserve serve` works from any directory).
fn candidates(path: &Path) -> Vec<PathBuf> {
    if path.is_absolute() {
        return vec![path.to_path_buf()];
    }
    let cwd = std::env::current_dir().unwrap_or_default().join(path);
    // CARGO_MANIFEST_DIR is <checkout>/crates/tradeserve-server.
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap_or(Path::new("."));
    vec![cwd, checkout.join(path)]
}

/// Resolve a data path: as given when it exists (relative to the working directory),
/// otherwise relative to the source checkout this binary was built from.
pub fn resolve_path(path: &Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        return path.to_path_buf();
    }
    candidates(path)
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| path.to_path_buf())
}

/// A data path the service reads (`key` names it), or where it looked and how to set it.
pub fn require_path(key: &str, path: &Path, what: &str) -> Result<PathBuf, ConfigError> {
    let resolved = resolve_path(path);
    if resolved.exists() {
        return Ok(resolved);
    }
    let looked: Vec<String> = candidates(path)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let env = format!("TRADESERVE_{}", key.to_uppercase().replacen('.', "__", 1));
    Err(ConfigError::Invalid(format!(
        "{key} = {:?} not found (looked in {}); set {key} in the config file or {env} to {what}",
        path.display().to_string(),
        looked.join(" and ")
    ).into()))
}
