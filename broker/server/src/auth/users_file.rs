//! The credential files: Weir's users file, which `weir user` writes, and a Mosquitto password
//! file (`mosquitto_passwd`'s), read as well.
//!
//! The users file has one user per line:
//! `name:$7$iterations$salt$hash:scram-sha-256=iterations,salt,stored_key,server_key:scram-sha-512=...`
//! (base64 fields; the `$7$` part is Mosquitto 2's PBKDF2-SHA512 format, so the file holds no
//! password, only salted hashes and SCRAM's keys). A Mosquitto file's lines are `name:hash`.
//! Blank lines and lines starting with `#` are skipped; any other line that does not parse
//! makes the whole file refused, with its line number (at start Weir stops; on a reload the
//! users loaded before stay).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use weir_core::auth::scram::{ScramCredential, ScramMechanism};

use super::hash::{PasswordHash, parse_scram_field, scram_field};

/// Longest user name, bytes (MQTT's user name field allows 65,535).
pub const USER_NAME_BYTES_MAX: usize = 256;
/// Largest credential file read, bytes: a hostile or mistaken file is refused, not read whole.
const FILE_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// One user's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub password: PasswordHash,
    /// SCRAM keys, per mechanism (none for users of a Mosquitto file).
    pub scram: Vec<ScramCredential>,
}

/// Users by name.
pub type Users = BTreeMap<String, User>;

/// Whether `name` can be a user: 1 to [`USER_NAME_BYTES_MAX`] bytes, no `:`, whitespace or
/// control character.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > USER_NAME_BYTES_MAX {
        return Err(format!("a user name has 1 to {USER_NAME_BYTES_MAX} bytes"));
    }
    if name.contains(|c: char| c == ':' || c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "user name {name:?} holds ':', whitespace or a control character"
        ));
    }
    Ok(())
}

/// Reads a credential file: Weir's users file (`mosquitto` false) or a Mosquitto password file.
/// A missing file is `None`.
pub fn read(path: &Path, mosquitto: bool) -> Result<Option<Users>, String> {
    let what = if mosquitto {
        "auth.mosquitto_password_file"
    } else {
        "auth.users_file"
    };
    let Some(text) = crate::file_watch::read_text(path, what, FILE_BYTES_MAX)? else {
        return Ok(None);
    };
    parse(&text, mosquitto)
        .map(Some)
        .map_err(|e| format!("{what} {}:{e}", path.display()))
}

/// Parses a credential file's text; an error starts with the line number.
pub fn parse(text: &str, mosquitto: bool) -> Result<Users, String> {
    let mut users = Users::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, user) = parse_line(line, mosquitto).map_err(|e| format!("{}: {e}", n + 1))?;
        if users.insert(name.clone(), user).is_some() {
            return Err(format!("{}: user {name:?} is listed twice", n + 1));
        }
    }
    Ok(users)
}

fn parse_line(line: &str, mosquitto: bool) -> Result<(String, User), String> {
    let (name, rest) = line.split_once(':').ok_or("expected name:hash")?;
    check_name(name)?;
    if mosquitto {
        let password = PasswordHash::parse(rest)?;
        return Ok((
            name.to_owned(),
            User {
                password,
                scram: Vec::new(),
            },
        ));
    }
    let mut fields = rest.split(':');
    let password = PasswordHash::parse(fields.next().unwrap_or(""))?;
    let mut scram = Vec::new();
    for field in fields {
        let (tag, value) = field.split_once('=').ok_or("expected scram-sha-…=keys")?;
        let mechanism = match tag {
            "scram-sha-256" => ScramMechanism::Sha256,
            "scram-sha-512" => ScramMechanism::Sha512,
            _ => return Err(format!("unknown field {tag:?}")),
        };
        scram.push(parse_scram_field(mechanism, value)?);
    }
    Ok((name.to_owned(), User { password, scram }))
}

/// The users file's text for `users`.
pub fn render(users: &Users) -> String {
    let mut text = String::from(
        "# Weir users: written by `weir user add|remove`; holds salted hashes and SCRAM keys, no password.\n",
    );
    for (name, user) in users {
        text.push_str(name);
        text.push(':');
        text.push_str(&user.password.to_string());
        for keys in &user.scram {
            text.push_str(&format!(
                ":{}={}",
                keys.mechanism.name().to_lowercase(),
                scram_field(keys)
            ));
        }
        text.push('\n');
    }
    text
}

/// Writes `users` to `path` atomically (a temporary file beside it, synced, renamed over it),
/// readable by its owner only.
pub fn write(path: &Path, users: &Users) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("users");
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(|e| anyhow::anyhow!("{}: {e}", temporary.display()))?;
    let written = file
        .write_all(render(users).as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        anyhow::bail!("{}: {e}", path.display());
    }
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::hash::new_scram_credential;

    const SEVEN: &str = "$7$101$MDEyMzQ1Njc4OWFi$EO/lLlkeUgIiBaS8G8UK0ZMP1u508TA7Tl+AdJ1cEsmlbGyEPAERErpfq84j1kepISs0UzmcdL4ucgZ2uodxfQ==";

    #[test]
    fn a_users_file_round_trips() {
        let mut users = Users::new();
        let password = PasswordHash::new(b"pw", 1000).unwrap();
        let scram = vec![
            new_scram_credential(ScramMechanism::Sha256, b"pw").unwrap(),
            new_scram_credential(ScramMechanism::Sha512, b"pw").unwrap(),
        ];
        users.insert("alice".into(), User { password, scram });
        let text = render(&users);
        assert_eq!(parse(&text, false).unwrap(), users);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        write(&path, &users).unwrap();
        assert_eq!(read(&path, false).unwrap().unwrap(), users);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read(&dir.path().join("none"), false).unwrap(), None);
    }

    /// A file over the size limit is refused before it is read (a sparse file: no disk used).
    #[test]
    fn an_oversized_file_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(FILE_BYTES_MAX + 1).unwrap();
        let error = read(&path, true).unwrap_err();
        assert!(
            error.contains(&format!("over {FILE_BYTES_MAX} bytes")),
            "{error}"
        );
    }

    /// Blank lines and comments are skipped; an empty name, a line without a hash, a broken
    /// hash or a user listed twice refuse the file with the line's number.
    #[test]
    fn bad_lines_refuse_the_file_with_their_number() {
        let good = format!("\n# comment\nbob:{SEVEN}\n\n");
        assert_eq!(parse(&good, true).unwrap().len(), 1);
        for (text, line) in [
            (format!("bob:{SEVEN}\n:{SEVEN}\n"), "2:"),
            ("bob\n".to_owned(), "1:"),
            ("bob:\n".to_owned(), "1:"),
            (
                format!("bob:{SEVEN}\nbob:{SEVEN}\n"),
                "2: user \"bob\" is listed twice",
            ),
            (format!("bo b:{SEVEN}\n"), "1:"),
            (
                format!("bob:{SEVEN}:scram-sha-1=1,AA==,AA==,AA==\n"),
                "1: unknown field",
            ),
        ] {
            let error = parse(&text, false).unwrap_err();
            assert!(error.starts_with(line), "{text:?}: {error}");
        }
    }
}
