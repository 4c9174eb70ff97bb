//! What Weir reads from files at start and again on SIGHUP or when the files change (the
//! credentials, the TLS certificate): the value now in use and the signatures of the files it
//! was read from. A read that fails keeps the value in use; it is not retried until the files
//! change again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// What tells a file changed: its inode, size and modification time, read through symlinks
/// (a file replaced by rename, or a symlink swapped to another file, changes the inode).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileSignature {
    inode: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

/// A value read from `paths`, reloadable.
#[derive(Debug)]
pub struct Watched<T> {
    paths: Vec<PathBuf>,
    state: RwLock<(Arc<T>, Vec<Option<FileSignature>>)>,
}

impl<T> Watched<T> {
    /// Reads the value with `read`; fails as `read` does.
    pub fn load(
        paths: Vec<PathBuf>,
        read: impl FnOnce() -> Result<T, String>,
    ) -> Result<Self, String> {
        let seen = signatures(&paths);
        let value = read()?;
        Ok(Watched {
            paths,
            state: RwLock::new((Arc::new(value), seen)),
        })
    }

    /// The value in use (a cheap handle: a reload swaps in a new one).
    pub fn current(&self) -> Arc<T> {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// Reads the value again with `read`, keeping the one in use if it fails.
    pub fn reload(&self, read: impl FnOnce() -> Result<T, String>) -> Result<Arc<T>, String> {
        self.reload_at(signatures(&self.paths), read)
    }

    /// [`Watched::reload`] when a file changed since the last read (`None` when none did).
    pub fn reload_if_changed(
        &self,
        read: impl FnOnce() -> Result<T, String>,
    ) -> Option<Result<Arc<T>, String>> {
        let now = signatures(&self.paths);
        if now == self.state.read().unwrap_or_else(|e| e.into_inner()).1 {
            return None;
        }
        Some(self.reload_at(now, read))
    }

    fn reload_at(
        &self,
        seen: Vec<Option<FileSignature>>,
        read: impl FnOnce() -> Result<T, String>,
    ) -> Result<Arc<T>, String> {
        let result = read().map(Arc::new);
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if let Ok(value) = &result {
            state.0 = value.clone();
        }
        // A failed read is not retried until the files change again.
        state.1 = seen;
        result
    }
}

/// The text of the file at `path` (`what` names it in errors), `None` if it does not exist;
/// a file over `bytes_max` is refused unread.
pub fn read_text(path: &Path, what: &str, bytes_max: u64) -> Result<Option<String>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{what} {}: {e}", path.display())),
    };
    if meta.len() > bytes_max {
        return Err(format!("{what} {}: over {bytes_max} bytes", path.display()));
    }
    let text = std::fs::read_to_string(path);
    text.map(Some)
        .map_err(|e| format!("{what} {}: {e}", path.display()))
}

fn signatures(paths: &[PathBuf]) -> Vec<Option<FileSignature>> {
    use std::os::unix::fs::MetadataExt;
    paths
        .iter()
        .map(|path| {
            std::fs::metadata(path).ok().map(|meta| FileSignature {
                inode: meta.ino(),
                len: meta.len(),
                modified: meta.modified().ok(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_reloads_a_failure_keeps_the_value_and_a_symlink_swap_counts() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, link) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("link"),
        );
        std::fs::write(&a, "one").unwrap();
        std::os::unix::fs::symlink(&a, &link).unwrap();
        let read = || std::fs::read_to_string(&link).map_err(|e| e.to_string());
        let parse = |text: String| text.parse::<u8>().map_err(|e| e.to_string());
        let watched = Watched::load(vec![link.clone()], read).unwrap();
        assert_eq!(*watched.current(), "one");
        assert!(watched.reload_if_changed(read).is_none());
        // A symlink pointed elsewhere (as certbot and Kubernetes do) is a change.
        std::fs::write(&b, "two").unwrap();
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(&b, &link).unwrap();
        assert_eq!(*watched.reload_if_changed(read).unwrap().unwrap(), "two");
        // A read that fails keeps the value, and is not retried until the files change.
        let read_a = || std::fs::read_to_string(&a).map_err(|e| e.to_string());
        let numbers = Watched::load(vec![a.clone()], || Ok(7u8)).unwrap();
        std::fs::write(&a, "not a number, longer").unwrap();
        assert!(
            numbers
                .reload_if_changed(|| parse(read_a()?))
                .unwrap()
                .is_err()
        );
        assert_eq!(*numbers.current(), 7);
        assert!(numbers.reload_if_changed(|| parse(read_a()?)).is_none());
    }
}
