//! The on-disk cache of model folders downloaded from MLflow.
//!
//! Layout: `<root>/<registered name>/<version>/` holds the folder exactly as downloaded, plus
//! `.tradeserve-sha256` (the digest of its ONNX file, written last, so a folder without it is
//! an interrupted download and is fetched again). Downloads go to a temporary folder under
//! `<root>` and are renamed into place, so readers never see half a model. Registry versions
//! are immutable, so name/version is the key; the digest is re-checked at every load.
//! `<root>/resolution.json` records the last alias → version resolution, which is what the
//! service starts from when MLflow is down.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::mlflow::client::{MlflowClient, MlflowError};

const MARKER: &str = ".tradeserve-sha256";
const MAX_FILES: usize = 64;
const MAX_DEPTH: usize = 4;

/// Why a model folder could not be cached.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Mlflow(#[from] MlflowError),
    #[error("cache {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("model folder {0}: {1}")]
    Invalid(String, String),
}

/// A model folder cache rooted at one directory.
#[derive(Debug, Clone)]
pub struct ModelCache {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |cause| CacheError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

fn safe_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\\')
}

impl ModelCache {
    pub fn new(root: impl Into<PathBuf>) -> ModelCache {
        ModelCache { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Folder of one version.
    pub fn dir(&self, name: &str, version: &str) -> PathBuf {
        self.root.join(name).join(version)
    }

    /// The recorded ONNX digest of a complete cached folder.
    pub fn cached_digest(&self, name: &str, version: &str) -> Option<String> {
        std::fs::read_to_string(self.dir(name, version).join(MARKER))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// Make sure `proxy_path` (a model folder in the artifact store) is cached as
    /// name/version; returns the folder. Downloads only when it is not complete already.
    pub async fn fetch(
        &self,
        client: &MlflowClient,
        name: &str,
        version: &str,
        proxy_path: &str,
    ) -> Result<PathBuf, CacheError> {
        if !safe_name(name) || !safe_name(version) {
            return Err(CacheError::Invalid(
                format!("{name} v{version}"),
                "unsafe name or version".into(),
            ));
        }
        let target = self.dir(name, version);
        if self.cached_digest(name, version).is_some() {
            return Ok(target);
        }
        tokio::fs::create_dir_all(&self.root)
            .await
            .map_err(io(&self.root))?;
        let tmp = self
            .root
            .join(format!(".download-{}", uuid::Uuid::now_v7()));
        let result = self
            .download_into(client, proxy_path, &tmp, name, version)
            .await;
        if let Err(e) = result {
            let _ = tokio::fs::remove_dir_all(&tmp).await;
            return Err(e);
        }
        let parent = self.root.join(name);
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(io(&parent))?;
        // A stale, incomplete folder from an interrupted earlier attempt is replaced.
        if tokio::fs::try_exists(&target).await.unwrap_or(false) {
            tokio::fs::remove_dir_all(&target)
                .await
                .map_err(io(&target))?;
        }
        tokio::fs::rename(&tmp, &target)
            .await
            .map_err(io(&target))?;
        Ok(target)
    }

    /// Forget a cached version (it failed verification).
    pub async fn evict(&self, name: &str, version: &str) {
        let _ = tokio::fs::remove_dir_all(self.dir(name, version)).await;
    }

    async fn download_into(
        &self,
        client: &MlflowClient,
        proxy_path: &str,
        tmp: &Path,
        name: &str,
        version: &str,
    ) -> Result<(), CacheError> {
        let what = format!("{name} v{version}");
        let mut pending = vec![(proxy_path.to_owned(), tmp.to_path_buf(), 0usize)];
        let mut files = 0usize;
        while let Some((remote, local, depth)) = pending.pop() {
            tokio::fs::create_dir_all(&local)
                .await
                .map_err(io(&local))?;
            for entry in client.list_artifacts(&remote).await? {
                // Listings name entries relative to the folder (some servers give full paths).
                let leaf = entry.path.rsplit('/').next().unwrap_or_default().to_owned();
                if !safe_name(&leaf) {
                    return Err(CacheError::Invalid(
                        what,
                        format!("unsafe artifact name {:?}", entry.path),
                    ));
                }
                let remote_child = format!("{remote}/{leaf}");
                if entry.is_dir {
                    if depth + 1 > MAX_DEPTH {
                        return Err(CacheError::Invalid(
                            what,
                            "artifact folders nested too deep".into(),
                        ));
                    }
                    pending.push((remote_child, local.join(&leaf), depth + 1));
                } else {
                    files += 1;
                    if files > MAX_FILES {
                        return Err(CacheError::Invalid(
                            what,
                            format!("more than {MAX_FILES} files"),
                        ));
                    }
                    let bytes = client.download(&remote_child).await?;
                    let path = local.join(&leaf);
                    tokio::fs::write(&path, bytes).await.map_err(io(&path))?;
                }
            }
        }
        let onnx = tmp.join("model.onnx");
        let bytes = tokio::fs::read(&onnx).await.map_err(|_| {
            CacheError::Invalid(what.clone(), "no model.onnx in the artifact folder".into())
        })?;
        let digest = hex::encode(Sha256::digest(&bytes));
        let marker = tmp.join(MARKER);
        tokio::fs::write(&marker, &digest)
            .await
            .map_err(io(&marker))?;
        Ok(())
    }

    /// Record the last successful resolution (what to serve if MLflow is down at start).
    pub fn save_resolution<T: Serialize>(&self, resolution: &T) -> Result<(), CacheError> {
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        let path = self.root.join("resolution.json");
        let tmp = self.root.join("resolution.json.tmp");
        let text = serde_json::to_vec_pretty(resolution)
            .map_err(|e| CacheError::Invalid("resolution".into(), e.to_string()))?;
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// The last recorded resolution, if any.
    pub fn load_resolution<T: for<'de> Deserialize<'de>>(&self) -> Option<T> {
        let text = std::fs::read(self.root.join("resolution.json")).ok()?;
        serde_json::from_slice(&text).ok()
    }
}
