//! `bookstore-client`: calls the Bookstore API, directly or through a proxy such as esprit.
//!
//! Takes the tutorial client's flags (`--host`, `--port` 8000, `--timeout` 10 s, `--api_key`,
//! `--auth_token`; the kebab-case spellings work too) and sends the key as `x-api-key` and the
//! token as `authorization: Bearer …`. Prints one line per resource (`shelf 1: Fiction`), or
//! proto3 JSON with `--json`. Exit codes: 0 success; 1 the call failed (the gRPC code name and
//! message are printed to stderr, e.g. `error: UNAUTHENTICATED: Jwt is missing`) or the
//! options could not be used; 2 bad command line.

mod output;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use bookstore::pb::bookstore_client::BookstoreClient;
use bookstore::pb::{
    Book, CreateBookRequest, CreateShelfRequest, DeleteBookRequest, DeleteShelfRequest,
    GetBookRequest, GetShelfRequest, ListBooksRequest, Shelf,
};
use clap::{Parser, Subcommand};
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

use crate::output::Outcome;

#[derive(Debug, Parser)]
#[command(version, about = "Calls the Bookstore gRPC API")]
struct Args {
    /// Server (or proxy) host.
    #[arg(long, global = true, default_value = "127.0.0.1")]
    host: String,
    /// Server (or proxy) port.
    #[arg(long, global = true, default_value_t = 8000)]
    port: u16,
    /// API key, sent as `x-api-key`.
    #[arg(long, global = true, alias = "api_key")]
    api_key: Option<String>,
    /// JWT, sent as `authorization: Bearer <token>`.
    #[arg(long, global = true, alias = "auth_token")]
    auth_token: Option<String>,
    /// Deadline of the call in seconds (sent as `grpc-timeout`).
    #[arg(long, global = true, default_value_t = 10.0)]
    timeout: f64,
    /// Print proto3 JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Use TLS (the system's roots unless `--ca` is given).
    #[arg(long, global = true)]
    tls: bool,
    /// PEM file of the CA to trust for TLS (implies `--tls`).
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Subcommand)]
enum Command {
    /// List all shelves (the default).
    ListShelves,
    /// Create a shelf.
    CreateShelf { theme: String },
    /// Show a shelf.
    GetShelf { shelf: i64 },
    /// Delete a shelf and its books.
    DeleteShelf { shelf: i64 },
    /// List the books on a shelf.
    ListBooks { shelf: i64 },
    /// Create a book on a shelf.
    CreateBook {
        shelf: i64,
        #[arg(long)]
        author: String,
        #[arg(long)]
        title: String,
    },
    /// Show a book.
    GetBook { shelf: i64, book: i64 },
    /// Delete a book.
    DeleteBook { shelf: i64, book: i64 },
    /// Ask `grpc.health.v1.Health/Check` (a liveness or readiness probe, as grpc_health_probe):
    /// prints `SERVING` and exits 0, or exits 1 with the status or the error.
    Health {
        /// The service to ask about; empty: the server as a whole.
        #[arg(long, default_value = "")]
        service: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(outcome) => match output::render(&outcome, args.json) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::FAILURE
            }
        },
        Err(Failure::Call(status)) => {
            eprintln!("error: {}", describe(&status));
            ExitCode::FAILURE
        }
        Err(Failure::Setup(err)) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    /// The options could not be turned into a channel or metadata.
    Setup(anyhow::Error),
    /// The call returned a non-OK status.
    Call(Status),
}

impl From<Status> for Failure {
    fn from(status: Status) -> Self {
        Self::Call(status)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        Self::Setup(err)
    }
}

/// `CODE_NAME: message`, as grpcurl and the Python client print statuses.
fn describe(status: &Status) -> String {
    // tonic reports its own client-side deadline as CANCELLED "Timeout expired"; other gRPC
    // clients call that DEADLINE_EXCEEDED.
    if status.code() == Code::Cancelled && status.message() == "Timeout expired" {
        return "DEADLINE_EXCEEDED: Deadline Exceeded".to_owned();
    }
    format!(
        "{}: {}",
        bookstore::code_name(status.code()),
        status.message()
    )
}

async fn run(args: &Args) -> Result<Outcome, Failure> {
    let timeout = Duration::try_from_secs_f64(args.timeout)
        .ok()
        .filter(|t| !t.is_zero())
        .context("--timeout must be a positive number of seconds")?;
    let tls = args.tls || args.ca.is_some();
    let scheme = if tls { "https" } else { "http" };
    let host = if args.host.contains(':') {
        format!("[{}]", args.host) // an IPv6 literal
    } else {
        args.host.clone()
    };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{host}:{}", args.port))
        .context("building the server URL")?
        .connect_timeout(timeout);
    if tls {
        let mut config = ClientTlsConfig::new().with_native_roots();
        if let Some(ca) = &args.ca {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            config = config.ca_certificate(Certificate::from_pem(pem));
        }
        endpoint = endpoint.tls_config(config).context("configuring TLS")?;
    }
    let channel = endpoint.connect_lazy();

    let api_key = args
        .api_key
        .as_deref()
        .map(MetadataValue::try_from)
        .transpose()
        .context("--api-key is not a valid header value")?;
    let authorization = args
        .auth_token
        .as_deref()
        .map(|token| MetadataValue::try_from(format!("Bearer {token}")))
        .transpose()
        .context("--auth-token is not a valid header value")?;
    let mut client =
        BookstoreClient::with_interceptor(channel.clone(), move |mut request: Request<()>| {
            request.set_timeout(timeout);
            if let Some(key) = &api_key {
                request.metadata_mut().insert("x-api-key", key.clone());
            }
            if let Some(auth) = &authorization {
                request.metadata_mut().insert("authorization", auth.clone());
            }
            Ok(request)
        });

    let command = args.command.clone().unwrap_or(Command::ListShelves);
    let outcome = match command {
        Command::ListShelves => Outcome::Shelves(client.list_shelves(()).await?.into_inner()),
        Command::CreateShelf { theme } => Outcome::Shelf(
            client
                .create_shelf(CreateShelfRequest {
                    shelf: Some(Shelf { id: 0, theme }),
                })
                .await?
                .into_inner(),
        ),
        Command::GetShelf { shelf } => Outcome::Shelf(
            client
                .get_shelf(GetShelfRequest { shelf })
                .await?
                .into_inner(),
        ),
        Command::DeleteShelf { shelf } => {
            client.delete_shelf(DeleteShelfRequest { shelf }).await?;
            Outcome::ShelfDeleted { shelf }
        }
        Command::ListBooks { shelf } => Outcome::Books(
            client
                .list_books(ListBooksRequest { shelf })
                .await?
                .into_inner(),
        ),
        Command::CreateBook {
            shelf,
            author,
            title,
        } => Outcome::Book(
            client
                .create_book(CreateBookRequest {
                    shelf,
                    book: Some(Book {
                        id: 0,
                        author,
                        title,
                    }),
                })
                .await?
                .into_inner(),
        ),
        Command::GetBook { shelf, book } => Outcome::Book(
            client
                .get_book(GetBookRequest { shelf, book })
                .await?
                .into_inner(),
        ),
        Command::DeleteBook { shelf, book } => {
            client
                .delete_book(DeleteBookRequest { shelf, book })
                .await?;
            Outcome::BookDeleted { shelf, book }
        }
        Command::Health { service } => return health(channel, timeout, service).await,
    };
    Ok(outcome)
}

/// `grpc.health.v1.Health/Check` for `service`: `SERVING`, else a failure naming the status.
async fn health(
    channel: tonic::transport::Channel,
    timeout: Duration,
    service: String,
) -> Result<Outcome, Failure> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let mut request = Request::new(HealthCheckRequest { service });
    request.set_timeout(timeout);
    let status = HealthClient::new(channel)
        .check(request)
        .await?
        .into_inner()
        .status();
    match status {
        ServingStatus::Serving => Ok(Outcome::Health(status.as_str_name().to_owned())),
        other => Err(Failure::Call(Status::unavailable(other.as_str_name()))),
    }
}
