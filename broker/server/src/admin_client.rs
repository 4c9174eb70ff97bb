//! The admin API's client: one HTTP/1.1 request with a body, its answer read whole, over
//! plain HTTP or HTTPS (`admin.tls`). The CLI (`weir plugin ...`) and the integration tests'
//! harness both use it, so the two never disagree on how the admin API is spoken to.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

mod pinned;

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
    /// HTTPS, trusted as this says; `None`: plain HTTP.
    pub tls: Option<&'a AdminTls>,
}

/// How an admin API that speaks HTTPS is trusted.
#[derive(Debug, Clone)]
pub struct AdminTls {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl AdminTls {
    /// Trusts the CA certificates of the PEM file `ca_file`; the server's certificate must name
    /// `host` (a DNS name or an IP address).
    pub fn with_ca_file(ca_file: &Path, host: &str) -> anyhow::Result<AdminTls> {
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca_file)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("--cacert {}", ca_file.display()))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        anyhow::ensure!(
            added > 0,
            "--cacert {}: no CA certificate in it",
            ca_file.display()
        );
        let config = pinned::builder()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| anyhow!("{host} is no server name: {e}"))?;
        Ok(AdminTls {
            config: Arc::new(config),
            name,
        })
    }

    /// Trusts exactly the certificate the PEM file `cert_file` starts with (the broker's own,
    /// as its `tls.cert_file` names it), whatever name it carries.
    pub fn pinned(cert_file: &Path) -> anyhow::Result<AdminTls> {
        let cert = CertificateDer::pem_file_iter(cert_file)
            .and_then(|mut certs| certs.next().transpose())
            .with_context(|| format!("tls.cert_file {}", cert_file.display()))?
            .with_context(|| format!("tls.cert_file {}: no certificate", cert_file.display()))?;
        Ok(AdminTls {
            config: Arc::new(pinned::config(cert)?),
            // Not checked: the certificate itself is.
            name: ServerName::try_from("weir-admin").map_err(|e| anyhow!("{e}"))?,
        })
    }
}

/// Sends `request` to the admin API at `addr` and returns the status code and the body of the
/// answer. `timeout` bounds the connect and each read and write, so a stuck admin API fails
/// the request rather than hanging it.
pub fn request(
    addr: SocketAddr,
    request: &AdminRequest<'_>,
    timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    let stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| anyhow!("cannot reach the admin API at {addr}: {e}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    match request.tls {
        None => exchange(stream, addr, request),
        Some(tls) => {
            let conn = rustls::ClientConnection::new(tls.config.clone(), tls.name.clone())?;
            exchange(rustls::StreamOwned::new(conn, stream), addr, request)
        }
    }
}

/// Writes `request` to `stream` (connected to `addr`) and reads its answer to the end.
fn exchange(
    mut stream: impl Read + Write,
    addr: SocketAddr,
    request: &AdminRequest<'_>,
) -> anyhow::Result<(u16, String)> {
    let AdminRequest {
        method,
        path,
        body,
        token,
        ..
    } = *request;
    let authorization =
        token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{authorization}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // Over TLS the first write completes the handshake: a certificate not trusted fails here,
    // before the request (and its token) leaves.
    (stream.write_all(head.as_bytes()))
        .and_then(|()| stream.write_all(body))
        .and_then(|()| stream.flush())
        .with_context(|| format!("sending the request to the admin API at {addr}"))?;
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => {}
        // A server that closes without TLS's close_notify after a whole answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("reading the answer of the admin API at {addr}"));
        }
    }
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
            tls: None,
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
            tls: None,
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
