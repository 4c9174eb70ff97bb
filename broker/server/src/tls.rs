//! TLS for the protocol listeners (`mqtt.tls_listen`, `mqtt.websocket_tls_listen`,
//! `kafka.tls_listen`): the certificate, key and client CA files (`tls.*`) read into one
//! rustls server configuration (TLS 1.2 and 1.3, the ring provider), reloaded on SIGHUP and
//! when the files change. A new configuration serves the handshakes after it; connections
//! already open keep theirs. The bytes themselves are encrypted inside the shard's connection
//! (`shard/tls_layer.rs`): rustls is sans-IO, as the protocols are.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::file_watch::Watched;

mod identity;

pub use identity::common_name;

/// The `tls.*` keys.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM certificates of the CAs client certificates are verified against.
    pub client_ca_file: Option<PathBuf>,
    /// A client without a valid certificate fails the handshake.
    pub require_client_cert: bool,
}

/// The server configurations new TLS connections take, reloadable.
#[derive(Debug)]
pub struct TlsContext {
    files: TlsFiles,
    config: Watched<Configs>,
}

/// One certificate, two uses.
#[derive(Debug)]
struct Configs {
    /// The protocol listeners: client certificates as `tls.*` says.
    listeners: Arc<rustls::ServerConfig>,
    /// The admin API (`admin.tls`): no client certificate asked for, HTTP/1.1 by ALPN.
    admin: Arc<rustls::ServerConfig>,
}

impl TlsContext {
    /// Reads the files; fails with what is wrong with them.
    pub fn load(files: TlsFiles) -> anyhow::Result<TlsContext> {
        let paths = [&files.cert_file, &files.key_file].into_iter().cloned();
        let paths = paths.chain(files.client_ca_file.clone()).collect();
        let config = Watched::load(paths, || configs(&files)).map_err(anyhow::Error::msg)?;
        Ok(TlsContext { files, config })
    }

    /// The configuration a new connection's handshake uses.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.config.current().listeners.clone()
    }

    /// The configuration of a new admin API connection (`admin.tls`).
    pub fn admin_config(&self) -> Arc<rustls::ServerConfig> {
        self.config.current().admin.clone()
    }

    /// Reads the files again; on failure the configuration in use stays.
    pub fn reload(&self) -> Result<(), String> {
        self.config.reload(|| configs(&self.files)).map(drop)
    }

    /// [`TlsContext::reload`] when a file changed (`None` when none did).
    pub fn reload_if_changed(&self) -> Option<Result<(), String>> {
        let result = self.config.reload_if_changed(|| configs(&self.files))?;
        Some(result.map(drop))
    }
}

/// Builds both server configurations from one reading of the files.
fn configs(files: &TlsFiles) -> Result<Configs, String> {
    let (certs, key) = certificate_and_key(files)?;
    let listeners = server_config(files, (certs.clone(), key.clone_key()), true)?;
    let mut admin = server_config(files, (certs, key), false)?;
    admin.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Configs {
        listeners: Arc::new(listeners),
        admin: Arc::new(admin),
    })
}

/// The certificate chain and private key the files hold.
fn certificate_and_key(
    files: &TlsFiles,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let shown = |path: &PathBuf| path.display().to_string();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert_file)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("tls.cert_file {}: {e}", shown(&files.cert_file)))?;
    if certs.is_empty() {
        return Err(format!(
            "tls.cert_file {}: no PEM certificate in it",
            shown(&files.cert_file)
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|e| format!("tls.key_file {}: {e}", shown(&files.key_file)))?;
    Ok((certs, key))
}

/// A server configuration presenting `certs` with `key`; `client_certs`: as the `tls.*` keys
/// say, else none asked for.
fn server_config(
    files: &TlsFiles,
    (certs, key): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    client_certs: bool,
) -> Result<rustls::ServerConfig, String> {
    // rustls 0.23.48 deprecates ring's provider for lacking post-quantum key exchange
    // (X25519MLKEM768, which only aws-lc-rs offers); ring is what builds on a Raspberry Pi
    // with nothing but a C compiler, so Weir keeps it (X25519, P-256, P-384): docs/security.md.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let shown = |path: &PathBuf| path.display().to_string();
    let verifier = match files.client_ca_file.as_ref().filter(|_| client_certs) {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let cas = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("tls.client_ca_file {}: {e}", shown(path)))?;
            let (added, _) = roots.add_parsable_certificates(cas);
            if added == 0 {
                return Err(format!(
                    "tls.client_ca_file {}: no usable CA certificate in it",
                    shown(path)
                ));
            }
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let builder = if files.require_client_cert {
                builder
            } else {
                builder.allow_unauthenticated()
            };
            builder
                .build()
                .map_err(|e| format!("tls.client_ca_file {}: {e}", shown(path)))?
        }
        None if files.require_client_cert && client_certs => {
            return Err("tls.require_client_cert needs tls.client_ca_file".to_owned());
        }
        None => WebPkiClientVerifier::no_client_auth(),
    };
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "tls.cert_file {} with tls.key_file {}: {e}",
                shown(&files.cert_file),
                shown(&files.key_file)
            )
        })?;
    Ok(config)
}
