//! Test certificates, made with rcgen and written as PEM files, and a rustls client for the
//! TLS tests: a CA; a server certificate for `localhost` and 127.0.0.1 signed by it; client
//! certificates signed by it (one expired, one without a common name, one whose common name
//! is not UTF-8) or by another CA. Every key is ECDSA P-256 (rcgen's default), every
//! private key PKCS#8.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber, SigningKey,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

/// A certificate and its private key: PEM files on disk, and the same in memory.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate's PEM file.
    pub cert: PathBuf,
    /// The private key's PEM file (PKCS#8).
    pub key: PathBuf,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM.
    pub key_pem: String,
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// The private key, PKCS#8 DER.
    pub key_der: Vec<u8>,
}

impl CertFiles {
    /// The certificate file's path as text (for an environment variable or an argument).
    pub fn cert_path(&self) -> String {
        self.cert.display().to_string()
    }

    /// The key file's path as text.
    pub fn key_path(&self) -> String {
        self.key.display().to_string()
    }
}

/// The test PKI: a CA, another CA no broker trusts, and the server certificate, all written
/// into one directory.
#[derive(Debug)]
pub struct Pki {
    dir: PathBuf,
    ca: Issuer<'static, KeyPair>,
    foreign: Issuer<'static, KeyPair>,
    /// The CA's certificate, PEM (`ca.pem`).
    pub ca_file: PathBuf,
    /// The CA's certificate, DER.
    pub ca_der: Vec<u8>,
    /// The server certificate (`server.pem`, `server.key`): `localhost` and 127.0.0.1.
    pub server: CertFiles,
}

/// Serial numbers: each certificate its own.
static SERIAL: AtomicU64 = AtomicU64::new(1);

fn serial() -> SerialNumber {
    SerialNumber::from(SERIAL.fetch_add(1, Ordering::Relaxed))
}

/// A distinguished name with only `cn` as its common name, or none.
fn name(cn: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Weir tests");
    if let Some(cn) = cn {
        dn.push(DnType::CommonName, cn);
    }
    dn
}

/// A self-signed CA named `cn`: its issuer and its certificate's DER and PEM.
fn new_ca(cn: &str) -> anyhow::Result<(Issuer<'static, KeyPair>, Vec<u8>, String)> {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(Some(cn));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(serial());
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((Issuer::new(params, key), cert.der().to_vec(), cert.pem()))
}

impl Pki {
    /// Makes the CAs and the server certificate and writes `ca.pem`, `server.pem` and
    /// `server.key` into `dir`.
    pub fn new(dir: &Path) -> anyhow::Result<Pki> {
        let (ca, ca_der, ca_pem) = new_ca("Weir Test CA")?;
        let (foreign, _, _) = new_ca("Some Other CA")?;
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca_pem)?;
        let mut pki = Pki {
            dir: dir.to_owned(),
            ca,
            foreign,
            ca_file,
            ca_der,
            server: placeholder(),
        };
        pki.server = pki.server_cert("server")?;
        Ok(pki)
    }

    /// The CA file's path as text.
    pub fn ca_path(&self) -> String {
        self.ca_file.display().to_string()
    }

    /// Another server certificate for `localhost` and 127.0.0.1 (a new key, a new serial
    /// number), written as `<file>.pem` and `<file>.key`.
    pub fn server_cert(&self, file: &str) -> anyhow::Result<CertFiles> {
        let mut params = CertificateParams::new(["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params.distinguished_name = name(Some("localhost"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params, &self.ca, file)
    }

    /// A client certificate with common name `cn`, signed by the CA (`client-<cn>.pem`).
    pub fn client(&self, cn: &str) -> anyhow::Result<CertFiles> {
        self.issue(client_params(Some(cn)), &self.ca, &format!("client-{cn}"))
    }

    /// A client certificate with common name `cn` signed by a CA the broker does not trust.
    pub fn foreign_client(&self, cn: &str) -> anyhow::Result<CertFiles> {
        let file = format!("foreign-{cn}");
        self.issue(client_params(Some(cn)), &self.foreign, &file)
    }

    /// A client certificate with common name `cn`, signed by the CA, that expired long ago
    /// (valid in the year 2000 only).
    pub fn expired_client(&self, cn: &str) -> anyhow::Result<CertFiles> {
        let mut params = client_params(Some(cn));
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        self.issue(params, &self.ca, &format!("expired-{cn}"))
    }

    /// A client certificate signed by the CA whose subject has no common name.
    pub fn client_without_cn(&self) -> anyhow::Result<CertFiles> {
        self.issue(client_params(None), &self.ca, "client-without-cn")
    }

    /// A client certificate signed by the CA whose common name is a UTF8String holding the
    /// bytes C3 28, which are not UTF-8 (a lead byte, then no continuation byte).
    ///
    /// rcgen encodes only valid strings, so the certificate is made with a two-byte
    /// placeholder common name, the placeholder is replaced in the to-be-signed part, and
    /// that part is signed again by the CA: the signature covers the final bytes.
    pub fn non_utf8_client(&self) -> anyhow::Result<CertFiles> {
        let params = client_params(Some("@@"));
        let key = KeyPair::generate()?;
        let der = params.signed_by(&key, &self.ca)?.der().to_vec();
        // CN attribute: OID 2.5.4.3, then UTF8String (0x0C) of length 2.
        let placeholder = [0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x02, b'@', b'@'];
        let (outer, _) = der_header(&der)?;
        let body = &der[outer..];
        let (tbs_header, tbs_len) = der_header(body)?;
        let mut tbs = body[..tbs_header + tbs_len].to_vec();
        let rest = &body[tbs_header + tbs_len..];
        let (alg_header, alg_len) = der_header(rest)?;
        let algorithm = &rest[..alg_header + alg_len];
        let at = (tbs.windows(placeholder.len()))
            .position(|w| w == placeholder)
            .context("the placeholder common name in the certificate")?;
        tbs[at + 7..at + 9].copy_from_slice(&[0xc3, 0x28]);
        let signature = self.ca.key().sign(&tbs)?;
        let mut bits = vec![0u8]; // no unused bits
        bits.extend_from_slice(&signature);
        let mut content = tbs;
        content.extend_from_slice(algorithm);
        content.extend_from_slice(&der_tlv(0x03, &bits));
        let der = der_tlv(0x30, &content);
        self.write("client-non-utf8", der, &key)
    }

    /// Signs `params` (a fresh key and serial number) by `issuer` and writes the PEM files.
    fn issue(
        &self,
        mut params: CertificateParams,
        issuer: &Issuer<'static, KeyPair>,
        file: &str,
    ) -> anyhow::Result<CertFiles> {
        params.serial_number = Some(serial());
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, issuer)?;
        self.write(file, cert.der().to_vec(), &key)
    }

    fn write(&self, file: &str, der: Vec<u8>, key: &KeyPair) -> anyhow::Result<CertFiles> {
        let files = CertFiles {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}.key")),
            cert_pem: pem("CERTIFICATE", &der),
            key_pem: key.serialize_pem(),
            der,
            key_der: key.serialize_der(),
        };
        std::fs::write(&files.cert, &files.cert_pem)?;
        std::fs::write(&files.key, &files.key_pem)?;
        Ok(files)
    }
}

fn placeholder() -> CertFiles {
    CertFiles {
        cert: PathBuf::new(),
        key: PathBuf::new(),
        cert_pem: String::new(),
        key_pem: String::new(),
        der: Vec::new(),
        key_der: Vec::new(),
    }
}

fn client_params(cn: Option<&str>) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(cn);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

/// `der` as a PEM block labelled `label`.
pub fn pem(label: &str, der: &[u8]) -> String {
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The header length and content length of the DER element at the start of `der`.
fn der_header(der: &[u8]) -> anyhow::Result<(usize, usize)> {
    let first = *der.get(1).context("a DER length")?;
    if first < 0x80 {
        return Ok((2, usize::from(first)));
    }
    let n = usize::from(first & 0x7f);
    let bytes = der.get(2..2 + n).context("a DER long length")?;
    let len = bytes
        .iter()
        .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
    Ok((2 + n, len))
}

/// A DER element: `tag`, the definite length of `content`, `content`.
fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = (len.to_be_bytes().into_iter())
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A TLS connection from the rustls client (blocking; reads time out after [`crate::WAIT`]).
pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A rustls client configuration (ring; TLS 1.2 and 1.3) trusting only `ca_der`, presenting
/// `client`'s certificate if given.
pub fn client_config(
    ca_der: &[u8],
    client: Option<&CertFiles>,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.to_vec()))?;
    // ring, as the broker uses (rustls 0.23.48 deprecates its provider for lacking
    // post-quantum key exchange, which these tests do not need).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(files) => {
            let chain = vec![CertificateDer::from(files.der.clone())];
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(files.key_der.clone()));
            builder.with_client_auth_cert(chain, key)?
        }
    };
    Ok(Arc::new(config))
}

/// Connects to `addr` over TLS with `config` (the server's name: its IP address) and
/// completes the handshake.
pub fn tls_connect(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> anyhow::Result<TlsStream> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(crate::WAIT))?;
    tcp.set_write_timeout(Some(crate::WAIT))?;
    tcp.set_nodelay(true)?;
    let name = ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(config.clone(), name)?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .context("TLS handshake")?;
    }
    Ok(stream)
}

/// The DER of the end-entity certificate the server presented on `stream`.
pub fn peer_cert(stream: &TlsStream) -> Option<Vec<u8>> {
    let certs = stream.conn.peer_certificates()?;
    certs.first().map(|cert| cert.to_vec())
}

/// True once the server has ended `stream` (a close_notify, the TCP connection closed or
/// reset, or a TLS alert) within [`crate::WAIT`]; false if it is still open then.
pub fn tls_closed_by_peer(stream: &mut TlsStream) -> bool {
    let _ = stream.sock.set_read_timeout(Some(crate::WAIT));
    crate::read_to_close(stream)
}

/// Writes `bytes` and flushes them onto the socket.
pub fn tls_send(stream: &mut TlsStream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes)?;
    stream.flush()
}
