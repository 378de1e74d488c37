//! TLS to `https://` upstreams (rustls, behind the `tls` feature).
//!
//! Owns: the one client configuration — bundled Mozilla roots
//! (webpki-roots) plus the certificates in `$SSL_CERT_FILE` when set, ALPN
//! `http/1.1` — and the handshake. Does not own: the TCP connection or its
//! timeout (`upstream`).

use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();

/// The client configuration, built on first use and shared afterwards.
/// An unreadable or empty `$SSL_CERT_FILE` is an error (said once, before
/// serving, by [`crate::server::preflight`]).
pub fn client_config() -> Result<Arc<ClientConfig>, String> {
    CONFIG.get_or_init(build).clone()
}

fn build() -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = std::env::var_os("SSL_CERT_FILE") {
        let shown = path.to_string_lossy().into_owned();
        let certs = CertificateDer::pem_file_iter(&path)
            .map_err(|e| format!("SSL_CERT_FILE {shown}: {e}"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("SSL_CERT_FILE {shown}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("SSL_CERT_FILE {shown}: no certificates found"));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("SSL_CERT_FILE {shown}: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Runs the TLS handshake for `host` (SNI and certificate name) on `tcp`.
/// The error text says why (unknown issuer, name mismatch...) for the log.
pub async fn handshake(tcp: TcpStream, host: &str) -> Result<TlsStream<TcpStream>, String> {
    let config = client_config()?;
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| format!("invalid TLS server name: {e}"))?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())
}
