//! The admin API's client: one HTTP/1.1 request with a body, its answer read whole. The CLI
//! (`weir plugin ...`) and the integration tests' harness both use it, so the two never
//! disagree on how the admin API is spoken to.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, anyhow};

/// One request to the admin API.
#[derive(Debug, Clone, Copy)]
pub struct AdminRequest<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// The path.
    pub path: &'a str,
    /// The body (empty for none).
    pub body: &'a [u8],
    /// The admin token, sent as `Authorization: Bearer <token>`.
    pub token: Option<&'a str>,
}

/// Sends `request` to the admin API at `addr` and returns the status code and the body of the
/// answer. `timeout` bounds the connect and each read and write, so a stuck admin API fails
/// the request rather than hanging it.
pub fn request(
    addr: SocketAddr,
    request: &AdminRequest<'_>,
    timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    let AdminRequest {
        method,
        path,
        body,
        token,
    } = *request;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| anyhow!("cannot reach the admin API at {addr}: {e}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let authorization =
        token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{authorization}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("reading the answer of the admin API at {addr}"))?;
    let response = String::from_utf8_lossy(&response);
    let status: u16 = (response.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no HTTP answer from {addr}"))?;
    let text = (response.split_once("\r\n\r\n"))
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, text))
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::Duration;

    #[test]
    fn an_admin_api_that_never_answers_fails_the_request_at_its_timeout() {
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let timeout = Duration::from_millis(200);
        let get = super::AdminRequest {
            method: "GET",
            path: "/plugins",
            body: b"",
            token: None,
        };
        let error = super::request(addr, &get, timeout).unwrap_err();
        assert!(
            format!("{error:#}").contains("reading the answer of the admin API"),
            "{error:#}"
        );
        drop(silent);
    }

    #[test]
    fn an_unreachable_admin_api_says_where_it_was_looked_for() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let get = super::AdminRequest {
            method: "GET",
            path: "/health",
            body: b"",
            token: None,
        };
        let error = super::request(addr, &get, Duration::from_secs(5))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!("cannot reach the admin API at {addr}")),
            "{error}"
        );
    }
}
