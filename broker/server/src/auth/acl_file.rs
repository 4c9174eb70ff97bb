//! The access-control list of `auth.acl_file` (Mosquitto's format, core's `AclRules`), loaded
//! at start and again on SIGHUP and when the file changes; a file that no longer parses keeps
//! the rules loaded before, and the log says why. Every check reads the rules in force, so a
//! change reaches open connections and stored subscriptions at their next message.

use std::path::PathBuf;
use std::sync::Arc;

use weir_core::acl::{AclRules, AclSource};

use crate::file_watch::{Watched, read_text};

/// Largest ACL file read.
const FILE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// The rules of `auth.acl_file`, reloadable.
#[derive(Debug)]
pub struct AclFile {
    path: PathBuf,
    rules: Watched<AclRules>,
}

impl AclFile {
    /// Reads the file; fails if it is missing or does not parse (a line number says where).
    pub fn load(path: PathBuf) -> anyhow::Result<AclFile> {
        let rules =
            Watched::load(vec![path.clone()], || read(&path)).map_err(anyhow::Error::msg)?;
        Ok(AclFile { path, rules })
    }

    /// Reads the file again, keeping the rules in force if it does not parse.
    pub fn reload(&self) -> Result<(), String> {
        self.rules.reload(|| read(&self.path)).map(drop)
    }

    /// [`AclFile::reload`] when the file changed (`None` when it did not).
    pub fn reload_if_changed(&self) -> Option<Result<(), String>> {
        let result = self.rules.reload_if_changed(|| read(&self.path))?;
        Some(result.map(drop))
    }
}

impl AclSource for AclFile {
    fn current(&self) -> Option<Arc<AclRules>> {
        Some(self.rules.current())
    }
}

fn read(path: &std::path::Path) -> Result<AclRules, String> {
    let shown = path.display();
    let text = read_text(path, "auth.acl_file", FILE_BYTES_MAX)?
        .ok_or_else(|| format!("auth.acl_file {shown}: no such file"))?;
    AclRules::parse(&text).map_err(|e| format!("auth.acl_file {shown}: {e}"))
}
