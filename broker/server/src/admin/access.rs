//! Who may use the admin API. Without a token (no `admin.token_file`) the API must listen on a
//! loopback address (checked at start, see [`check_listen`]) and serves every request: only
//! programs on the machine reach it. With a token, every request but `GET /health` (and
//! `GET /metrics`, unless `admin.metrics_require_token`) needs `Authorization: Bearer
//! <token>`; anything else gets 401 and changes nothing.
//!
//! The token is compared through SHA-256 digests in constant time, so neither its bytes nor
//! its length leak through the answer's timing.

use std::net::SocketAddr;
use std::path::Path;

use hyper::{Method, Request};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The shortest token `admin.token_file` may hold.
pub const TOKEN_CHARS_MIN: usize = 16;

/// Who may call the admin API's endpoints.
#[derive(Clone)]
pub struct AdminAccess {
    /// SHA-256 of the token, if one is set.
    token_digest: Option<[u8; 32]>,
    /// `GET /metrics` needs the token too.
    metrics_require_token: bool,
}

impl std::fmt::Debug for AdminAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAccess")
            .field("token", &self.token_digest.map(|_| "set"))
            .field("metrics_require_token", &self.metrics_require_token)
            .finish()
    }
}

impl AdminAccess {
    /// No token: every request is served (the listener is on loopback).
    pub fn open() -> AdminAccess {
        AdminAccess {
            token_digest: None,
            metrics_require_token: false,
        }
    }

    /// State-changing and plugin requests need `token`; so does `GET /metrics` when
    /// `metrics_require_token`.
    pub fn with_token(token: &str, metrics_require_token: bool) -> AdminAccess {
        AdminAccess {
            token_digest: Some(Sha256::digest(token.as_bytes()).into()),
            metrics_require_token,
        }
    }

    /// Whether a token is set.
    pub fn has_token(&self) -> bool {
        self.token_digest.is_some()
    }

    /// Whether `request` may be served: an open endpoint, or the right bearer token.
    pub fn allows<B>(&self, request: &Request<B>) -> bool {
        let Some(expected) = &self.token_digest else {
            return true;
        };
        let open = match (request.method(), request.uri().path()) {
            (&Method::GET, "/health") => true,
            (&Method::GET, "/metrics") => !self.metrics_require_token,
            _ => false,
        };
        if open {
            return true;
        }
        let Some(given) = (request.headers().get(hyper::header::AUTHORIZATION))
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
        else {
            return false;
        };
        let given: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
        bool::from(given.ct_eq(expected))
    }
}

/// Who may use the admin API as configured: fixed (no token), or the token of a file, which
/// SIGHUP and a change of the file reload.
#[derive(Debug)]
pub enum AccessPolicy {
    /// No `admin.token_file`.
    Fixed(std::sync::Arc<AdminAccess>),
    /// `admin.token_file`.
    Token(TokenFile),
}

impl AccessPolicy {
    /// Who may call what now.
    pub fn current(&self) -> std::sync::Arc<AdminAccess> {
        match self {
            AccessPolicy::Fixed(access) => access.clone(),
            AccessPolicy::Token(file) => file.access(),
        }
    }

    /// Reads the token file again (`changed_only`: if it changed); `None` when there is
    /// none, or it did not change.
    pub fn reload(&self, changed_only: bool) -> Option<Result<(), String>> {
        match self {
            AccessPolicy::Fixed(_) => None,
            AccessPolicy::Token(file) => file.reload(changed_only),
        }
    }
}

/// The token of `admin.token_file`, reloaded on SIGHUP and when the file changes (a file whose
/// token is refused keeps the token in force).
#[derive(Debug)]
pub struct TokenFile {
    path: std::path::PathBuf,
    metrics_require_token: bool,
    access: crate::file_watch::Watched<AdminAccess>,
}

impl TokenFile {
    /// Reads the token; fails as [`read_token`] does.
    pub fn load(path: std::path::PathBuf, metrics_require_token: bool) -> anyhow::Result<Self> {
        let read = || read_access(&path, metrics_require_token);
        let access = crate::file_watch::Watched::load(vec![path.clone()], read)
            .map_err(anyhow::Error::msg)?;
        Ok(TokenFile {
            path,
            metrics_require_token,
            access,
        })
    }

    /// Who may call what now.
    pub fn access(&self) -> std::sync::Arc<AdminAccess> {
        self.access.current()
    }

    /// Reads the file again (`changed_only`: only if it changed; `None` then when it did not).
    pub fn reload(&self, changed_only: bool) -> Option<Result<(), String>> {
        let read = || read_access(&self.path, self.metrics_require_token);
        let result = match changed_only {
            true => self.access.reload_if_changed(read)?,
            false => self.access.reload(read),
        };
        Some(result.map(drop))
    }
}

fn read_access(path: &Path, metrics_require_token: bool) -> Result<AdminAccess, String> {
    let token = read_token(path).map_err(|e| format!("{e:#}"))?;
    Ok(AdminAccess::with_token(&token, metrics_require_token))
}

/// Reads the admin token from `path`: its first line, surrounding whitespace removed. Refuses
/// a missing, empty or short (under [`TOKEN_CHARS_MIN`] characters) token; warns when other
/// users may read the file.
pub fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("admin.token_file {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.chars().count() < TOKEN_CHARS_MIN {
        anyhow::bail!(
            "admin.token_file {}: the token on its first line has {} characters; it needs at least {TOKEN_CHARS_MIN} (for example `openssl rand -hex 32`)",
            path.display(),
            token.chars().count()
        );
    }
    if token.contains(|c: char| c.is_whitespace() || c.is_control()) {
        anyhow::bail!(
            "admin.token_file {}: the token holds whitespace or control characters",
            path.display()
        );
    }
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "admin.token_file {} may be read by other users (mode {:o}); `chmod 600` it",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    Ok(token)
}

/// Refuses an admin listener off loopback without a token: anyone who reached it could deploy
/// plugins and change what is stored.
pub fn check_listen(addr: SocketAddr, access: &AdminAccess) -> anyhow::Result<()> {
    if access.has_token() || addr.ip().is_loopback() {
        return Ok(());
    }
    anyhow::bail!(
        "admin.listen is {addr}, not a loopback address, and admin.token_file is not set: anyone who reaches it could deploy plugins. Set admin.token_file, or listen on 127.0.0.1"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str, auth: Option<&str>) -> Request<()> {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(auth) = auth {
            builder = builder.header(hyper::header::AUTHORIZATION, auth);
        }
        builder.body(()).unwrap()
    }

    const TOKEN: &str = "0123456789abcdef0123";

    #[test]
    fn without_a_token_everything_is_served() {
        let access = AdminAccess::open();
        assert!(access.allows(&request("PUT", "/plugins/bindings/b", None)));
    }

    #[test]
    fn with_a_token_only_health_and_metrics_are_open() {
        let access = AdminAccess::with_token(TOKEN, false);
        assert!(access.allows(&request("GET", "/health", None)));
        assert!(access.allows(&request("GET", "/metrics", None)));
        for (method, path) in [
            ("GET", "/plugins"),
            ("PUT", "/plugins/modules/m"),
            ("DELETE", "/plugins/bindings/b"),
            ("POST", "/health"),
            ("GET", "/nothing"),
        ] {
            assert!(
                !access.allows(&request(method, path, None)),
                "{method} {path}"
            );
            let wrong = format!("Bearer {TOKEN}x");
            assert!(!access.allows(&request(method, path, Some(&wrong))));
            assert!(
                !access.allows(&request(method, path, Some(TOKEN))),
                "no scheme"
            );
            let right = format!("Bearer {TOKEN}");
            assert!(access.allows(&request(method, path, Some(&right))));
        }
        let metrics_locked = AdminAccess::with_token(TOKEN, true);
        assert!(!metrics_locked.allows(&request("GET", "/metrics", None)));
        assert!(metrics_locked.allows(&request("GET", "/health", None)));
    }

    #[test]
    fn the_token_file_needs_a_long_token_on_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, format!("  {TOKEN}  \nignored\n")).unwrap();
        assert_eq!(read_token(&path).unwrap(), TOKEN);
        std::fs::write(&path, "short\n").unwrap();
        let error = read_token(&path).unwrap_err().to_string();
        assert!(error.contains("needs at least 16"), "{error}");
        std::fs::write(&path, "").unwrap();
        assert!(read_token(&path).is_err());
        std::fs::write(&path, "0123456789 abcdef0123\n").unwrap();
        assert!(read_token(&path).is_err());
        let missing = dir.path().join("missing");
        assert!(
            read_token(&missing)
                .unwrap_err()
                .to_string()
                .contains("admin.token_file")
        );
    }

    #[test]
    fn only_loopback_may_listen_without_a_token() {
        let open = AdminAccess::open();
        assert!(check_listen("127.0.0.1:8080".parse().unwrap(), &open).is_ok());
        assert!(check_listen("[::1]:8080".parse().unwrap(), &open).is_ok());
        let error = check_listen("0.0.0.0:8080".parse().unwrap(), &open).unwrap_err();
        assert!(error.to_string().contains("admin.token_file is not set"));
        let locked = AdminAccess::with_token(TOKEN, false);
        assert!(check_listen("0.0.0.0:8080".parse().unwrap(), &locked).is_ok());
    }
}
