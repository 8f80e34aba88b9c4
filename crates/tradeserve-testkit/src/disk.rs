//! A small tmpfs mounted for one test: a real filesystem that fills up (ENOSPC).

use std::path::Path;
use std::process::Command;

/// A small tmpfs mounted for one test (a real filesystem that fills up: `write` fails with
/// ENOSPC), unmounted when dropped. Needs root, as `scripts/test.sh` and CI run.
pub struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    /// Mount a tmpfs of `size` (e.g. `"256k"`).
    pub fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().expect("temp dir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount")
            .success();
        assert!(
            ok,
            "mounting a tmpfs needs root (scripts/test.sh runs as root)"
        );
        SmallDisk(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Give it room: remount with `size`.
    pub fn grow(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.0.path())
            .status()
            .expect("run mount")
            .success();
        assert!(ok, "remount failed");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}
