//! Why the receiver could not start or run.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the receiver could not start or run.
///
/// ```
/// use clearvox::stream::server::{ServeError, Server, ServerConfig, TlsFiles};
/// let dir = tempfile::tempdir().expect("a temporary folder");
/// let error = Server::bind(ServerConfig {
///     listen: "127.0.0.1:0".parse().expect("a socket address"),
///     out: dir.path().join("received"),
///     tls: Some(TlsFiles { cert: dir.path().join("missing.pem"), key: dir.path().join("missing.key") }),
///     token: None,
///     limits: Default::default(),
///     respond_with: None,
/// })
/// .unwrap_err();
/// assert!(matches!(error, ServeError::TlsFile { what: "certificate", .. }), "{error}");
/// assert!(error.to_string().starts_with("TLS certificate "));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        reason: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The output folder cannot be created or is not a folder.
    #[error("output folder {}: {reason}", path.display())]
    OutDir {
        /// The folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A TLS certificate or key file cannot be read or holds nothing usable.
    #[error("TLS {what} {}: {reason}", path.display())]
    TlsFile {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No token, on an address other than loopback: anyone who can reach it could write
    /// streams.
    #[error(
        "cannot listen on {addr} without a token: clients beyond this machine must authenticate"
    )]
    NoToken {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The token cannot be sent in a header.
    #[error("the receiver's token: {0}")]
    Token(String),
    /// A limit that would serve nothing.
    #[error("server limits: {0}")]
    Limits(String),
    /// The certificate and key do not make a TLS configuration.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The answer's recording (`--respond-with`) cannot be used.
    #[error("answer {}: {reason}", path.display())]
    Answer {
        /// The WAV file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The runtime of [`Server::run_until`](super::Server::run_until) could not be started.
    #[error("cannot start the network runtime: {reason}")]
    Runtime {
        /// What the OS said.
        reason: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
