//! `echo-server --listen ADDR`: serves `esprit.echo.v1.Echo` and prints the bound address as the
//! first line of stdout (so `--listen 127.0.0.1:0` can be used by scripts). Stops gracefully on
//! SIGINT or SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(version, about = "The esprit echo gRPC server")]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Replies carry the payload only: no request metadata in them, no `echo-` headers or
    /// trailers. For benchmarks, so a call costs the backend the same whatever headers a proxy
    /// adds.
    #[arg(long)]
    plain: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("error: listening on {}: {err}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(err) => {
            eprintln!("error: reading the bound address: {err}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = shutdown_signal();
    let mut stdout = std::io::stdout();
    if writeln!(stdout, "{addr}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        // Whoever started us stopped listening; serving is still useful.
    }
    let reflect = if args.plain {
        echo::Reflect::Nothing
    } else {
        echo::Reflect::Metadata
    };
    match echo::serve_with(listener, shutdown, reflect).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}: {:?}", std::error::Error::source(&err));
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM; the SIGTERM handler is installed when this is
/// called, so a stop right after start-up is graceful.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        let term = async {
            match term {
                Ok(mut sig) => {
                    sig.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
    }
}
