//! The embedded model source: `models/<role>/<version>/` folders shipped in the repository.
//!
//! Which version of each role serves is a [`VersionSelection`]; the bundled defaults are
//! version 1 everywhere (the champion), with version 2 as the challenger for experiments.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tradeserve_core::model_set::{LoadedModel, ModelSet};
use tradeserve_core::types::Role;

use crate::model_dir::{ModelLoadError, load_model_dir};

/// Version per role; a missing role means the default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionSelection {
    #[serde(default = "champion", deserialize_with = "version")]
    pub regime_detector: String,
    #[serde(default = "champion", deserialize_with = "version")]
    pub meta_controller: String,
    #[serde(default = "champion", deserialize_with = "version")]
    pub bull_specialist: String,
    #[serde(default = "champion", deserialize_with = "version")]
    pub bear_specialist: String,
    #[serde(default = "champion", deserialize_with = "version")]
    pub sideways_specialist: String,
}

fn champion() -> String {
    "1".to_owned()
}

/// A version is a string (`"2"`), but `2` in TOML or an environment variable means the same.
fn version<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Version {
        Text(String),
        Number(u64),
    }
    Ok(match Version::deserialize(d)? {
        Version::Text(t) => t,
        Version::Number(n) => n.to_string(),
    })
}

impl Default for VersionSelection {
    fn default() -> Self {
        VersionSelection {
            regime_detector: champion(),
            meta_controller: champion(),
            bull_specialist: champion(),
            bear_specialist: champion(),
            sideways_specialist: champion(),
        }
    }
}

impl VersionSelection {
    /// The same version for every role.
    pub fn all(version: &str) -> VersionSelection {
        let v = version.to_owned();
        VersionSelection {
            regime_detector: v.clone(),
            meta_controller: v.clone(),
            bull_specialist: v.clone(),
            bear_specialist: v.clone(),
            sideways_specialist: v,
        }
    }

    pub fn get(&self, role: Role) -> &str {
        match role {
            Role::RegimeDetector => &self.regime_detector,
            Role::MetaController => &self.meta_controller,
            Role::BullSpecialist => &self.bull_specialist,
            Role::BearSpecialist => &self.bear_specialist,
            Role::SidewaysSpecialist => &self.sideways_specialist,
        }
    }
}

/// A directory of bundled models.
#[derive(Debug, Clone)]
pub struct BundledModels {
    root: PathBuf,
}

impl BundledModels {
    pub fn new(root: impl Into<PathBuf>) -> BundledModels {
        BundledModels { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Versions present for a role, in numeric order.
    pub fn versions(&self, role: Role) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.root.join(role.as_str()))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("MLmodel").is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        out.sort_by_key(|v| (v.parse::<u64>().unwrap_or(u64::MAX), v.clone()));
        out
    }

    /// Load one role's version.
    pub fn load(&self, role: Role, version: &str) -> Result<LoadedModel, ModelLoadError> {
        let dir = self.root.join(role.as_str()).join(version);
        if !dir.join("MLmodel").is_file() {
            return Err(ModelLoadError::MissingVersion {
                role,
                version: version.to_owned(),
                path: self.root.clone(),
            });
        }
        let absolute = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
        let model = load_model_dir(&dir, role, format!("file://{}", absolute.display()))?;
        if model.info.version != version {
            tracing::warn!(role = %role, folder = version, recorded = %model.info.version, "model folder name and recorded version differ");
        }
        Ok(model)
    }

    /// Load a whole model set.
    pub fn load_set(&self, selection: &VersionSelection) -> Result<ModelSet, ModelLoadError> {
        let mut loaded: BTreeMap<Role, LoadedModel> = BTreeMap::new();
        for role in Role::ALL {
            loaded.insert(role, self.load(role, selection.get(role))?);
        }
        ModelSet::from_roles(loaded).map_err(|role| ModelLoadError::MissingVersion {
            role,
            version: selection.get(role).to_owned(),
            path: self.root.clone(),
        })
    }
}
