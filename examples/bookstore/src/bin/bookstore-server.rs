//! `bookstore-server`: the Bookstore sample backend.
//!
//! Listens on `--host` (default `0.0.0.0`, all interfaces, like the ESP samples; use
//! `--host 127.0.0.1` to stay local) and `--port` (else `$PORT`, else 8000). Data lives in the
//! SQLite file `--db` (default `bookstore.db` in the current directory; `:memory:` keeps nothing),
//! seeded on first use. Logs go to stderr (`RUST_LOG` filters, default `info`). Stops
//! gracefully on SIGINT or SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context as _;
use bookstore::{DbLocation, Store};
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(version, about = "The Bookstore sample gRPC server")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    host: IpAddr,
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8000)]
    port: u16,
    /// SQLite database file, or `:memory:`.
    #[arg(long, default_value = "bookstore.db")]
    db: DbLocation,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();

    let store = {
        let db = args.db.clone();
        tokio::task::spawn_blocking(move || Store::open(&db))
            .await?
            .with_context(|| format!("opening database {}", args.db))?
    };
    let addr = SocketAddr::new(args.host, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let shutdown = shutdown_signal();
    tracing::info!(addr = %listener.local_addr()?, db = %args.db, "bookstore serving");
    bookstore::serve(listener, Arc::new(store), shutdown)
        .await
        .context("serving")?;
    tracing::info!("bookstore stopped");
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM. The SIGTERM handler is installed here, before the
/// server logs its address: a supervisor (or test) that stops the server as soon as it has
/// announced itself must get a graceful stop, not the default action of the signal.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        let ctrl_c = async {
            if let Err(err) = tokio::signal::ctrl_c().await {
                tracing::error!(error = %err, "cannot listen for SIGINT");
                std::future::pending::<()>().await;
            }
        };
        let term = async {
            match term {
                Ok(mut sig) => {
                    sig.recv().await;
                }
                Err(err) => {
                    tracing::error!(error = %err, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
            () = term => tracing::info!("SIGTERM received, shutting down"),
        }
    }
}
