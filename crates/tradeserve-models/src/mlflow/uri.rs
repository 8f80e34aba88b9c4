//! A model named by an MLflow URI — `models:/<name>@<alias>` or `models:/<name>/<version>` —
//! resolved against the registry and downloaded into the disk cache, for commands that work
//! on one version's folder (`tradeserve torchserve package`).

use std::path::PathBuf;

use crate::mlflow::cache::CacheError;
use crate::mlflow::location::resolve_source;
use crate::mlflow::{MlflowClient, ModelCache};

/// What a `models:/` URI names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelUri {
    pub name: String,
    pub selector: Selector,
}

/// A version by alias or by number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Alias(String),
    Version(String),
}

impl ModelUri {
    /// `None` when `uri` is not `models:/<name>@<alias>` or `models:/<name>/<version>`.
    pub fn parse(uri: &str) -> Option<ModelUri> {
        let rest = uri.strip_prefix("models:/")?;
        let (name, selector) = match rest.rsplit_once('@') {
            Some((name, alias)) => (name, Selector::Alias(alias.to_owned())),
            None => {
                let (name, version) = rest.rsplit_once('/')?;
                (name, Selector::Version(version.to_owned()))
            }
        };
        let valid = |s: &str| !s.is_empty() && !s.contains('/');
        let selected = match &selector {
            Selector::Alias(a) | Selector::Version(a) => a.as_str(),
        };
        (valid(name) && valid(selected)).then(|| ModelUri {
            name: name.to_owned(),
            selector,
        })
    }
}

/// One version, downloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub name: String,
    /// The registry's version number.
    pub version: String,
    /// The cached model folder.
    pub folder: PathBuf,
}

/// Resolve `uri` and make sure its folder is in `cache`.
pub async fn fetch(
    client: &MlflowClient,
    cache: &ModelCache,
    uri: &ModelUri,
) -> Result<Fetched, CacheError> {
    let version = match &uri.selector {
        Selector::Alias(alias) => client.version_by_alias(&uri.name, alias).await?,
        Selector::Version(v) => client.model_version(&uri.name, v).await?,
    };
    let artifact = resolve_source(client, &version).await?;
    let folder = cache
        .fetch(client, &uri.name, &version.version, &artifact)
        .await?;
    Ok(Fetched {
        name: uri.name.clone(),
        version: version.version,
        folder,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_versions_parse_and_anything_else_does_not() {
        assert_eq!(
            ModelUri::parse("models:/tradeserve.bull_specialist@champion"),
            Some(ModelUri {
                name: "tradeserve.bull_specialist".into(),
                selector: Selector::Alias("champion".into())
            })
        );
        assert_eq!(
            ModelUri::parse("models:/desk.bull/7"),
            Some(ModelUri {
                name: "desk.bull".into(),
                selector: Selector::Version("7".into())
            })
        );
        for bad in [
            "models/x/1",
            "models:/x",
            "models:/@a",
            "models:/x@",
            "models:/a/b/1",
            "x",
        ] {
            assert_eq!(ModelUri::parse(bad), None, "{bad}");
        }
    }
}
