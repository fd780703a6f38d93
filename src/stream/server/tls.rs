//! The TLS side of a `wss://` receiver: its certificate and key, loaded once at bind time
//! so that a missing or unusable file is an error before anything is served.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::{Error as PemError, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::{ServeError, TlsFiles};
use crate::io::os_reason;

/// The acceptor for `files`, with the ring provider and the safe default protocol
/// versions; no client certificates.
pub(super) fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, ServeError> {
    let file_error = |what: &'static str, path: &Path, e: PemError| ServeError::TlsFile {
        what,
        path: path.to_path_buf(),
        reason: match e {
            PemError::Io(io) => os_reason(&io),
            PemError::NoItemsFound => format!("no {what} in the PEM file"),
            other => other.to_string(),
        },
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error("certificate", &files.cert, e))?;
    if certs.is_empty() {
        return Err(file_error(
            "certificate",
            &files.cert,
            PemError::NoItemsFound,
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| file_error("private key", &files.key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
