//! The model sets `tradeserve backtest` compares, as a person names them on the command line,
//! and their loading. `--set NAME=SPEC` (NAME defaults to SPEC), where SPEC is:
//!
//! - `champion`: what the configuration serves (bundled: `models.versions`; MLflow: each role's
//!   alias);
//! - a version, e.g. `2`: every role at that version (a bundled folder; a registry version
//!   with `models.source = "mlflow"`);
//! - `@ALIAS`: every role at that registry alias;
//! - `ROLE:WHICH,…`: the champion with those roles replaced, WHICH being a version, `@ALIAS`
//!   or a `models:/NAME@ALIAS` / `models:/NAME/VERSION` URI.
//!
//! Every model is verified at load (its digest and golden vectors) exactly as `serve` loads it,
//! and runs in process: a remote backend serves the same bytes, checked against the same
//! golden vectors.

use std::collections::BTreeMap;
use std::time::Duration;

use tradeserve_core::model_set::{LoadedModel, ModelSet};
use tradeserve_core::types::Role;
use tradeserve_models::BundledModels;
use tradeserve_models::mlflow::uri::{ModelUri, Selector, fetch};
use tradeserve_models::mlflow::{MlflowClient, ModelCache};
use tradeserve_models::model_dir::load_model_dir;

use crate::config::{Config, ModelSourceKind, resolve_path};

/// Where one role's model of a set comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleSource {
    /// `models.dir/<role>/<version>/`.
    Bundled(String),
    Registry(ModelUri),
}

/// A named set: each role's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSpec {
    pub name: String,
    pub roles: BTreeMap<Role, RoleSource>,
}

/// A `--set` the configuration cannot make sense of.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("--set {0:?}: {1}")]
    Invalid(String, String),
}

fn invalid(arg: &str, why: impl Into<String>) -> SpecError {
    SpecError::Invalid(arg.to_owned(), why.into())
}

/// The registry name of `role` in `config` (`models.mlflow.roles`, else `tradeserve.<role>`).
fn registry_name(config: &Config, role: Role) -> String {
    config
        .models
        .mlflow
        .role_specs()
        .into_iter()
        .find(|s| s.role == role)
        .map_or_else(|| role.registry_name(), |s| s.name)
}

/// The champion's source of `role`.
fn champion(config: &Config, role: Role) -> RoleSource {
    match config.models.source {
        ModelSourceKind::Bundled => {
            RoleSource::Bundled(config.models.versions.get(role).to_owned())
        }
        ModelSourceKind::Mlflow => {
            let spec = config
                .models
                .mlflow
                .role_specs()
                .into_iter()
                .find(|s| s.role == role);
            let (name, alias) = spec.map_or_else(
                || (role.registry_name(), config.models.mlflow.alias.clone()),
                |s| (s.name, s.alias),
            );
            RoleSource::Registry(ModelUri {
                name,
                selector: Selector::Alias(alias),
            })
        }
    }
}

/// One role's WHICH: a version, `@ALIAS` or a `models:/` URI.
fn which(config: &Config, role: Role, text: &str, arg: &str) -> Result<RoleSource, SpecError> {
    if text.starts_with("models:/") {
        return ModelUri::parse(text)
            .map(RoleSource::Registry)
            .ok_or_else(|| {
                invalid(
                    arg,
                    format!("{text:?}: expected models:/NAME@ALIAS or models:/NAME/VERSION"),
                )
            });
    }
    if let Some(alias) = text.strip_prefix('@') {
        if alias.is_empty() || alias.contains('/') {
            return Err(invalid(arg, format!("{text:?} is not an alias")));
        }
        return Ok(RoleSource::Registry(ModelUri {
            name: registry_name(config, role),
            selector: Selector::Alias(alias.to_owned()),
        }));
    }
    let valid = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !valid {
        return Err(invalid(
            arg,
            format!("{text:?} is not a version (e.g. 2), an alias (@challenger) or a models:/ URI"),
        ));
    }
    Ok(match config.models.source {
        ModelSourceKind::Bundled => RoleSource::Bundled(text.to_owned()),
        ModelSourceKind::Mlflow => RoleSource::Registry(ModelUri {
            name: registry_name(config, role),
            selector: Selector::Version(text.to_owned()),
        }),
    })
}

/// Parse one `--set` argument against `config`.
pub fn parse(config: &Config, arg: &str) -> Result<SetSpec, SpecError> {
    let (name, spec) = match arg.split_once('=') {
        Some((name, spec)) => (name.trim(), spec.trim()),
        None => (arg.trim(), arg.trim()),
    };
    if name.is_empty() || spec.is_empty() {
        return Err(invalid(arg, "expected NAME=SPEC or SPEC"));
    }
    let mut roles: BTreeMap<Role, RoleSource> = Role::ALL
        .iter()
        .map(|r| (*r, champion(config, *r)))
        .collect();
    if spec == "champion" {
    } else if spec.contains(':') && !spec.starts_with("models:/") {
        for part in spec.split(',') {
            let (role, text) = part
                .split_once(':')
                .ok_or_else(|| invalid(arg, format!("{part:?}: expected ROLE:VERSION")))?;
            let role = Role::parse(role.trim()).ok_or_else(|| {
                invalid(arg, format!("{role:?} is not a role (regime_detector, meta_controller, bull_specialist, bear_specialist, sideways_specialist)"))
            })?;
            roles.insert(role, which(config, role, text.trim(), arg)?);
        }
    } else if spec.starts_with("models:/") {
        return Err(invalid(
            arg,
            "a models:/ URI names one role's model: write ROLE:models:/…",
        ));
    } else {
        for role in Role::ALL {
            roles.insert(role, which(config, role, spec, arg)?);
        }
    }
    Ok(SetSpec {
        name: name.to_owned(),
        roles,
    })
}

/// Why a set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("set {set:?}: {role}: {cause}")]
    Model {
        set: String,
        role: Role,
        cause: String,
    },
    #[error("MLflow at {uri}: {cause}")]
    Registry { uri: String, cause: String },
}

/// Loads sets, fetching registry versions into the service's model cache.
pub struct Loader<'a> {
    config: &'a Config,
    bundled: BundledModels,
    registry: Option<(MlflowClient, ModelCache, tokio::runtime::Runtime)>,
}

impl<'a> Loader<'a> {
    pub fn new(config: &'a Config) -> Loader<'a> {
        Loader {
            config,
            bundled: BundledModels::new(resolve_path(&config.models.dir)),
            registry: None,
        }
    }

    fn registry(
        &mut self,
    ) -> Result<&(MlflowClient, ModelCache, tokio::runtime::Runtime), LoadError> {
        if self.registry.is_none() {
            let m = &self.config.models.mlflow;
            let fail = |cause: String| LoadError::Registry {
                uri: m.tracking_uri.clone(),
                cause,
            };
            let client = MlflowClient::new(&m.tracking_uri, m.token(), Duration::from_secs(30))
                .map_err(|e| fail(e.to_string()))?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| fail(e.to_string()))?;
            let cache = ModelCache::new(resolve_path(&m.cache_dir));
            self.registry = Some((client, cache, runtime));
        }
        self.registry.as_ref().ok_or_else(|| LoadError::Registry {
            uri: self.config.models.mlflow.tracking_uri.clone(),
            cause: "no client".into(),
        })
    }

    fn load_one(
        &mut self,
        role: Role,
        source: &RoleSource,
    ) -> Result<LoadedModel, Box<dyn std::error::Error>> {
        match source {
            RoleSource::Bundled(v) => Ok(self.bundled.load(role, v)?),
            RoleSource::Registry(uri) => {
                let (client, cache, runtime) = self.registry()?;
                let fetched = runtime.block_on(fetch(client, cache, uri))?;
                let source = format!("models:/{}/{}", fetched.name, fetched.version);
                let mut model = load_model_dir(&fetched.folder, role, source)?;
                // The registry's name and version number are the truth, as when serving.
                model.info.name = fetched.name;
                model.info.version = fetched.version;
                Ok(model)
            }
        }
    }

    /// Load and verify every model of `spec`.
    pub fn load(&mut self, spec: &SetSpec) -> Result<ModelSet, LoadError> {
        let mut loaded = BTreeMap::new();
        for (role, source) in &spec.roles {
            let model = self
                .load_one(*role, source)
                .map_err(|cause| LoadError::Model {
                    set: spec.name.clone(),
                    role: *role,
                    cause: cause.to_string(),
                })?;
            loaded.insert(*role, model);
        }
        ModelSet::from_roles(loaded).map_err(|role| LoadError::Model {
            set: spec.name.clone(),
            role,
            cause: "not named".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn bundled(v: &str) -> RoleSource {
        RoleSource::Bundled(v.into())
    }

    #[test]
    fn specs_name_the_champion_a_version_an_alias_or_roles_replaced() {
        let mut config = Config::default();
        config.models.versions.bear_specialist = "2".into();
        let s = parse(&config, "champion").unwrap();
        assert_eq!(s.name, "champion");
        assert_eq!(s.roles[&Role::BearSpecialist], bundled("2"));
        assert_eq!(s.roles[&Role::BullSpecialist], bundled("1"));

        let s = parse(&config, "candidate=2").unwrap();
        assert_eq!(s.name, "candidate");
        assert!(s.roles.values().all(|r| *r == bundled("2")));

        let s = parse(&config, "bull_specialist:2,regime_detector:@challenger").unwrap();
        assert_eq!(s.roles[&Role::BullSpecialist], bundled("2"));
        assert_eq!(s.roles[&Role::BearSpecialist], bundled("2"));
        assert_eq!(s.roles[&Role::MetaController], bundled("1"));
        assert_eq!(
            s.roles[&Role::RegimeDetector],
            RoleSource::Registry(ModelUri {
                name: "tradeserve.regime_detector".into(),
                selector: Selector::Alias("challenger".into())
            })
        );

        let s = parse(&config, "x=sideways_specialist:models:/desk.side/7").unwrap();
        assert_eq!(
            s.roles[&Role::SidewaysSpecialist],
            RoleSource::Registry(ModelUri {
                name: "desk.side".into(),
                selector: Selector::Version("7".into())
            })
        );

        // From the registry, a plain version is a registry version.
        config.models.source = ModelSourceKind::Mlflow;
        let s = parse(&config, "3").unwrap();
        assert_eq!(
            s.roles[&Role::BullSpecialist],
            RoleSource::Registry(ModelUri {
                name: "tradeserve.bull_specialist".into(),
                selector: Selector::Version("3".into())
            })
        );
        assert_eq!(
            parse(&config, "champion").unwrap().roles[&Role::BullSpecialist],
            RoleSource::Registry(ModelUri {
                name: "tradeserve.bull_specialist".into(),
                selector: Selector::Alias("champion".into())
            })
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let config = Config::default();
        for (arg, says) in [
            ("=2", "NAME=SPEC"),
            ("bull:2", "is not a role"),
            ("bull_specialist:", "is not a version"),
            ("a=models:/x@y", "names one role's model"),
            ("regime_detector:models:/x", "expected models:/NAME@ALIAS"),
            ("v 2", "is not a version"),
        ] {
            let e = parse(&config, arg).unwrap_err().to_string();
            assert!(e.contains(says), "{arg}: {e}");
        }
    }
}
