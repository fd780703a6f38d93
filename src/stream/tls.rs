//! Where a stream may go, and how it is encrypted.
//!
//! Audio leaves the device only over TLS (`wss://`), checked against the webpki roots
//! (plus a private CA when given). Plain `ws://` is allowed to a loopback address (a
//! local test receiver) or, with an explicit `insecure`, anywhere, with a warning.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio_tungstenite::tungstenite::http::Uri;

use super::sanitize::{has_credentials, redact_url};
use super::StreamError;

/// Whether a URL is plain or encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `ws://`
    Plain,
    /// `wss://`
    Tls,
}

/// The checked destination of a stream.
#[derive(Clone, Debug)]
pub(crate) struct Destination {
    pub(crate) scheme: Scheme,
    /// True when `ws://` goes off this machine (only with `insecure`).
    pub(crate) insecure: bool,
}

/// Checks a URL against the transport policy.
pub(crate) fn check_url(url: &str, insecure: bool) -> Result<Destination, StreamError> {
    // Messages show the URL without its query and user information, which may hold
    // credentials.
    let full = url;
    let url = &redact_url(full);
    if has_credentials(full) {
        return Err(StreamError::Url(format!(
            "'{url}': credentials in the URL are not sent; give the token as the bearer \
             token instead (the command line takes it from the environment: \
             CLEARVOX_TOKEN, or the variable --token-env names)"
        )));
    }
    let uri: Uri = full
        .parse()
        .map_err(|e| StreamError::Url(format!("'{url}' is not a URL: {e}")))?;
    let scheme = match uri.scheme_str() {
        Some("wss") => Scheme::Tls,
        Some("ws") => Scheme::Plain,
        Some(other) => {
            return Err(StreamError::Url(format!(
            "'{url}': the scheme must be wss:// (or ws:// to a loopback address), not {other}://"
        )))
        }
        None => {
            return Err(StreamError::Url(format!(
                "'{url}': give the scheme, wss://host/path"
            )))
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| StreamError::Url(format!("'{url}' names no host")))?;
    if scheme == Scheme::Plain && !is_loopback(host) {
        if !insecure {
            return Err(StreamError::Url(format!(
                "refusing unencrypted ws:// to {host}: use wss://, or --insecure to send audio \
                 in the clear"
            )));
        }
        return Ok(Destination {
            scheme,
            insecure: true,
        });
    }
    Ok(Destination {
        scheme,
        insecure: false,
    })
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A rustls client configuration: the webpki roots, plus the certificates of `ca_file`.
pub(crate) fn client_config(
    ca_file: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, StreamError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| StreamError::Tls(format!("cannot read CA file {}: {e}", path.display())))?
            .collect::<Result<_, _>>()
            .map_err(|e| StreamError::Tls(format!("CA file {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(StreamError::Tls(format!(
                "CA file {} holds no PEM certificate",
                path.display()
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| StreamError::Tls(format!("CA file {}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StreamError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transport_policy() {
        assert_eq!(
            check_url("wss://api.example.com/v1", false).unwrap().scheme,
            Scheme::Tls
        );
        assert!(!check_url("ws://127.0.0.1:9000/x", false).unwrap().insecure);
        assert!(!check_url("ws://[::1]:9000/x", false).unwrap().insecure);
        assert!(!check_url("ws://localhost/x", false).unwrap().insecure);
        let e = check_url("ws://10.0.0.5/x", false).unwrap_err().to_string();
        assert!(e.contains("--insecure") && e.contains("10.0.0.5"), "{e}");
        assert!(check_url("ws://10.0.0.5/x", true).unwrap().insecure);
        assert!(check_url("http://example.com", false).is_err());
        assert!(check_url("example.com", false).is_err());
        let e = check_url("http://h/x?api_key=secret", false)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("secret"), "{e}");
        let e = check_url("ws://me:hunter2@127.0.0.1:9/x", false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ws://me:***@127.0.0.1:9/x") && e.contains("CLEARVOX_TOKEN"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn the_default_roots_load() {
        client_config(None).unwrap();
        let dir = std::env::temp_dir().join(format!("clearvox-ca-{}", std::process::id()));
        std::fs::write(&dir, "not a certificate").unwrap();
        let e = client_config(Some(&dir)).unwrap_err().to_string();
        std::fs::remove_file(&dir).ok();
        assert!(e.contains("no PEM certificate"), "{e}");
    }
}
