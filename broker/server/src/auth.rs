//! Client credentials: the users file (`auth.users_file`, written by `weir user`) and a
//! Mosquitto password file (`auth.mosquitto_password_file`), loaded into memory and checked
//! for every MQTT CONNECT and Kafka SASL exchange through core's [`Authenticator`]. Both files are read again on
//! SIGHUP and when they change ([`Credentials::reload_if_changed`]); a file that no longer
//! parses keeps the users loaded before, and the log says why.
//!
//! Who gets in: a known user with the right password; a client without credentials when
//! `auth.allow_anonymous` is on. With no user configured at all (neither file exists or
//! holds a user), credentials are not checked: every client is anonymous, as with Mosquitto
//! without a password file.

use std::path::{Path, PathBuf};

use weir_core::auth::scram::{ScramCredential, ScramMechanism};
use weir_core::auth::{Authenticator, Verdict};

use crate::file_watch::Watched;

pub mod acl_file;
pub mod hash;
pub mod users_file;

use users_file::Users;

/// The credentials every connection checks against, reloadable.
#[derive(Debug)]
pub struct Credentials {
    users_file: PathBuf,
    mosquitto_file: Option<PathBuf>,
    allow_anonymous: bool,
    users: Watched<Users>,
}

impl Credentials {
    /// Loads both files; fails if one exists and does not parse.
    pub fn load(
        users_file: PathBuf,
        mosquitto_file: Option<PathBuf>,
        allow_anonymous: bool,
    ) -> anyhow::Result<Credentials> {
        let paths = std::iter::once(users_file.clone()).chain(mosquitto_file.clone());
        let users = Watched::load(paths.collect(), || {
            read_users(&users_file, mosquitto_file.as_ref())
        })
        .map_err(|e| anyhow::anyhow!(e))?;
        Ok(Credentials {
            users_file,
            mosquitto_file,
            allow_anonymous,
            users,
        })
    }

    /// Users loaded now.
    pub fn users(&self) -> usize {
        self.users.current().len()
    }

    /// Reads both files again, keeping what was loaded if one does not parse. Returns the
    /// number of users, or why the files were not taken.
    pub fn reload(&self) -> Result<usize, String> {
        (self.users.reload(|| self.read())).map(|users| users.len())
    }

    /// Reloads when either file changed since it was read (`None` when neither did).
    pub fn reload_if_changed(&self) -> Option<Result<usize, String>> {
        let result = self.users.reload_if_changed(|| self.read())?;
        Some(result.map(|users| users.len()))
    }

    fn read(&self) -> Result<Users, String> {
        read_users(&self.users_file, self.mosquitto_file.as_ref())
    }
}

/// Reads the users file and the Mosquitto password file; a user in both is the users file's.
fn read_users(users_file: &Path, mosquitto_file: Option<&PathBuf>) -> Result<Users, String> {
    let mut users = Users::new();
    let paths =
        std::iter::once((users_file, false)).chain(mosquitto_file.map(|p| (p.as_path(), true)));
    for (path, mosquitto) in paths {
        for (name, user) in users_file::read(path, mosquitto)?.unwrap_or_default() {
            if users.contains_key(&name) {
                tracing::warn!(user = %name, file = %path.display(), "user also in the users file, which wins");
                continue;
            }
            users.insert(name, user);
        }
    }
    Ok(users)
}

impl Authenticator for Credentials {
    fn scram_credential(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        let users = self.users.current();
        let user = users.get(user)?;
        user.scram
            .iter()
            .find(|c| c.mechanism == mechanism)
            .cloned()
    }

    fn nonce(&self) -> String {
        // 24 random bytes as hexadecimal: printable, without `,`, as SCRAM wants.
        let mut bytes = [0u8; 24];
        if let Err(e) = getrandom::fill(&mut bytes) {
            // An empty nonce is refused by the exchange: no SCRAM without randomness.
            tracing::error!("no randomness for a SCRAM nonce: {e}");
            return String::new();
        }
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn authenticate(&self, username: Option<&str>, password: Option<&[u8]>) -> Verdict {
        let Some(name) = username else {
            return if self.allow_anonymous {
                Verdict::Anonymous
            } else {
                Verdict::NotAuthorized
            };
        };
        let users = self.users.current();
        if users.is_empty() && self.allow_anonymous {
            return Verdict::Anonymous;
        }
        match (users.get(name), password) {
            (Some(user), Some(password)) if user.password.verify(password) => {
                Verdict::User(name.to_owned())
            }
            _ => Verdict::BadCredentials,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::hash::PasswordHash;
    use super::users_file::User;
    use super::*;

    fn one_user(dir: &std::path::Path, name: &str, password: &[u8]) -> PathBuf {
        let path = dir.join("users");
        let mut users = Users::new();
        let hash = PasswordHash::new(password, 1000).unwrap();
        users.insert(
            name.into(),
            User {
                password: hash,
                scram: Vec::new(),
            },
        );
        users_file::write(&path, &users).unwrap();
        path
    }

    #[test]
    fn who_gets_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = one_user(dir.path(), "alice", b"secret");
        for allow_anonymous in [true, false] {
            let c = Credentials::load(path.clone(), None, allow_anonymous).unwrap();
            let anonymous = if allow_anonymous {
                Verdict::Anonymous
            } else {
                Verdict::NotAuthorized
            };
            assert_eq!(c.authenticate(None, None), anonymous);
            assert_eq!(
                c.authenticate(Some("alice"), Some(b"secret")),
                Verdict::User("alice".into())
            );
            assert_eq!(
                c.authenticate(Some("alice"), Some(b"Secret")),
                Verdict::BadCredentials
            );
            assert_eq!(c.authenticate(Some("alice"), None), Verdict::BadCredentials);
            assert_eq!(
                c.authenticate(Some("bob"), Some(b"secret")),
                Verdict::BadCredentials
            );
        }
        // No user configured: credentials are not checked; without anonymous access, no one.
        let none = dir.path().join("missing");
        let open = Credentials::load(none.clone(), None, true).unwrap();
        assert_eq!(
            open.authenticate(Some("anyone"), Some(b"x")),
            Verdict::Anonymous
        );
        let closed = Credentials::load(none, None, false).unwrap();
        assert_eq!(
            closed.authenticate(Some("anyone"), Some(b"x")),
            Verdict::BadCredentials
        );
        assert_eq!(closed.authenticate(None, None), Verdict::NotAuthorized);
    }

    /// A changed file is read again; one that no longer parses keeps the users loaded before.
    #[test]
    fn a_changed_file_reloads_and_a_broken_one_keeps_the_old_users() {
        let dir = tempfile::tempdir().unwrap();
        let path = one_user(dir.path(), "alice", b"one");
        let c = Credentials::load(path.clone(), None, false).unwrap();
        assert_eq!(c.reload_if_changed(), None);
        one_user(dir.path(), "alice", b"two");
        assert_eq!(c.reload_if_changed(), Some(Ok(1)));
        assert_eq!(
            c.authenticate(Some("alice"), Some(b"two")),
            Verdict::User("alice".into())
        );
        std::fs::write(&path, "alice\n").unwrap();
        assert!(matches!(c.reload_if_changed(), Some(Err(e)) if e.contains("users")));
        assert_eq!(
            c.authenticate(Some("alice"), Some(b"two")),
            Verdict::User("alice".into())
        );
        assert_eq!(
            c.reload_if_changed(),
            None,
            "not retried until it changes again"
        );
    }
}
