//! The embedded control store ([`ControlStore`]): one JSON file, compare-and-swap on the
//! state's revision within this process. Many replicas share `tradeserve_redis::control_store`
//! instead.

use std::path::PathBuf;

use tradeserve_core::control::ControlState;
use tradeserve_core::ports::BoxFuture;
pub use tradeserve_core::ports::{ControlStore, StoreError};

/// The embedded store: one JSON file, replaced atomically (write, fsync, rename).
pub struct FileStore {
    path: PathBuf,
    /// Serializes this process's read-compare-write; other processes must not share the file.
    lock: tokio::sync::Mutex<()>,
}

impl FileStore {
    pub fn new(path: impl Into<PathBuf>) -> FileStore {
        FileStore {
            path: path.into(),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    fn read(path: &std::path::Path) -> Result<ControlState, StoreError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ControlState::default()),
            Err(e) => Err(StoreError::Unavailable(format!("{}: {e}", path.display()))),
        }
    }

    fn write(path: &std::path::Path, state: &ControlState) -> Result<(), StoreError> {
        use std::io::Write;
        let err = |e: std::io::Error| StoreError::Unavailable(format!("{}: {e}", path.display()));
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        let bytes =
            serde_json::to_vec_pretty(state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)?;
        Ok(())
    }
}

impl ControlStore for FileStore {
    fn load(&self) -> BoxFuture<'_, Result<ControlState, StoreError>> {
        Box::pin(async move {
            let path = self.path.clone();
            tokio::task::spawn_blocking(move || FileStore::read(&path))
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?
        })
    }

    fn compare_and_swap<'a>(
        &'a self,
        expected: u64,
        next: &'a ControlState,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            // Held across the blocking write on purpose: it orders this process's writers.
            let _guard = self.lock.lock().await;
            let path = self.path.clone();
            let next = next.clone();
            tokio::task::spawn_blocking(move || {
                let current = FileStore::read(&path)?;
                if current.revision != expected {
                    return Ok(false);
                }
                FileStore::write(&path, &next)?;
                Ok(true)
            })
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
        })
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_store_compare_and_swap() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("sub/control.json"));
        let s = store.load().await.unwrap();
        assert_eq!(s.revision, 0);
        let next = ControlState {
            revision: 1,
            ..Default::default()
        };
        assert!(store.compare_and_swap(0, &next).await.unwrap());
        assert!(
            !store.compare_and_swap(0, &next).await.unwrap(),
            "stale revision"
        );
        assert_eq!(store.load().await.unwrap().revision, 1);
        std::fs::write(dir.path().join("sub/control.json"), b"{nope").unwrap();
        assert!(matches!(store.load().await, Err(StoreError::Corrupt(_))));
    }
}
