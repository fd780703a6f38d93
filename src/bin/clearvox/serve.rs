//! `clearvox serve`: the reference receiver on the command line.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use clearvox::stream::server::{load_answer, Server, ServerConfig, ServerLimits, TlsFiles};
use clearvox::stream::Token;

use crate::ServeArgs;

/// `clearvox serve`.
pub fn run(args: &ServeArgs) -> Result<ExitCode> {
    let tls = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        (None, None) => None,
        _ => bail!("--cert and --key go together"),
    };
    if tls.is_none() && !args.listen.ip().is_loopback() && !args.insecure {
        bail!(
            "--listen {}: plain ws:// carries audio in clear text, so it is only for loopback \
             addresses; give --cert and --key for wss://, or --insecure",
            args.listen
        );
    }
    let token = match &args.token_env {
        Some(var) => Some(Token::from_env(var).with_context(|| {
            format!("--token-env {var}: the environment variable {var} is not set or empty")
        })?),
        None => None,
    };
    if token.is_none() && !args.listen.ip().is_loopback() {
        bail!(
            "--listen {}: clients beyond this machine must authenticate; give --token-env VAR \
             (the variable holding the token)",
            args.listen
        );
    }
    let limits = ServerLimits {
        max_connections: args.max_connections,
        max_message_bytes: args.max_message_bytes,
        idle: seconds("--idle-timeout", args.idle_timeout)?,
        handshake: seconds("--handshake-timeout", args.handshake_timeout)?,
    };
    // Loaded (and resampled) once, before anything listens: a bad file is an error now.
    let respond_with = match &args.respond_with {
        Some(path) => Some(Arc::new(load_answer(path)?)),
        None => None,
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
            .context("cannot install the Ctrl-C handler")?;
    }
    let server = Server::bind(ServerConfig {
        listen: args.listen,
        out: args.out.clone(),
        tls,
        token,
        limits,
        respond_with,
    })?
    .on_connection_end(|report| eprintln!("{report}"));
    eprintln!("listening on {}", server.url());
    server.run_until(interrupted)?;
    Ok(ExitCode::SUCCESS)
}

/// `value` seconds of the option `name`, if a duration (0.1 s to a day).
fn seconds(name: &str, value: f64) -> Result<Duration> {
    if !(0.1..=86_400.0).contains(&value) {
        bail!("{name} {value}: must be 0.1 to 86400 seconds");
    }
    Ok(Duration::from_secs_f64(value))
}
