//! Where a model version's files are: from its `source` to a path under the artifact proxy.
//!
//! Sources seen from MLflow 3: `runs:/<run>/<sub>` (resolved through the run's artifact URI),
//! `models:/m-<id>` (an MLflow 3 logged model: its artifact location), and
//! `mlflow-artifacts:/<path>` directly. Anything else (s3://, file://) is not downloadable
//! through the proxy and is refused with a clear error.

use crate::mlflow::client::{MlflowClient, MlflowError, ModelVersion};

/// The proxy path of an `mlflow-artifacts:` URI (`mlflow-artifacts:/1/abc/artifacts/model` →
/// `1/abc/artifacts/model`; a `//host:port` authority is dropped).
pub fn proxy_path(uri: &str) -> Result<String, MlflowError> {
    let rest = uri
        .strip_prefix("mlflow-artifacts:")
        .ok_or_else(|| MlflowError::UnsupportedLocation(uri.to_owned()))?;
    let rest = match rest.strip_prefix("//") {
        Some(with_authority) => with_authority.split_once('/').map_or("", |(_, p)| p),
        None => rest,
    };
    let path = rest.trim_matches('/');
    if path.split('/').any(|seg| seg == "..") {
        return Err(MlflowError::UnsupportedLocation(uri.to_owned()));
    }
    Ok(path.to_owned())
}

fn join(root: &str, sub: &str) -> String {
    let sub = sub.trim_matches('/');
    if sub.is_empty() {
        root.to_owned()
    } else {
        format!("{root}/{sub}")
    }
}

/// Resolve a version's source to a proxy path of its model folder.
pub async fn resolve_source(
    client: &MlflowClient,
    version: &ModelVersion,
) -> Result<String, MlflowError> {
    let source = version.source.as_str();
    if source.starts_with("mlflow-artifacts:") {
        return proxy_path(source);
    }
    if let Some(rest) = source.strip_prefix("runs:/") {
        let (run, sub) = rest.split_once('/').unwrap_or((rest, ""));
        let root = client.run_artifact_uri(run).await?;
        return Ok(join(&proxy_path(&root)?, sub));
    }
    if let Some(rest) = source.strip_prefix("models:/")
        && rest.starts_with("m-")
    {
        let id = rest.trim_matches('/');
        let root = client.logged_model_artifact_uri(id).await?;
        return proxy_path(&root);
    }
    Err(MlflowError::UnsupportedLocation(source.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_paths() {
        assert_eq!(
            proxy_path("mlflow-artifacts:/1/abc/artifacts/model").unwrap(),
            "1/abc/artifacts/model"
        );
        assert_eq!(
            proxy_path("mlflow-artifacts://host:5000/1/abc/artifacts/").unwrap(),
            "1/abc/artifacts"
        );
        assert!(matches!(
            proxy_path("s3://bucket/x"),
            Err(MlflowError::UnsupportedLocation(_))
        ));
        assert!(matches!(
            proxy_path("mlflow-artifacts:/1/../../etc"),
            Err(MlflowError::UnsupportedLocation(_))
        ));
        assert_eq!(join("a/b", "/model/"), "a/b/model");
        assert_eq!(join("a/b", ""), "a/b");
    }
}
