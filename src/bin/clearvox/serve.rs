//! `clearvox serve`: the reference receiver on the command line.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use clearvox::stream::server::{Server, ServerConfig, TlsFiles};

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
    })?
    .on_connection_end(|report| eprintln!("{report}"));
    eprintln!("listening on {}", server.url());
    server.run_until(interrupted)?;
    Ok(ExitCode::SUCCESS)
}
