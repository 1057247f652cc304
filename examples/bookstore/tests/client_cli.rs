//! The `bookstore-client` binary against servers running in this process.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::sync::{Arc, Mutex};

use bookstore::pb::bookstore_server::BookstoreServer;
use bookstore::{BookstoreService, DbLocation, Store};
use testkit::start_bookstore;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

const CLIENT: &str = env!("CARGO_BIN_EXE_bookstore-client");

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn run_client(port: u16, args: &[&str]) -> Run {
    let out = tokio::process::Command::new(CLIENT)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(args)
        .output()
        .await
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

#[tokio::test]
async fn text_output_for_every_command() {
    let server = start_bookstore().await;
    let port = server.addr().port();
    let cases: &[(&[&str], &str)] = &[
        (&[], "shelf 1: Fiction\nshelf 2: Fantasy\n"),
        (&["list-shelves"], "shelf 1: Fiction\nshelf 2: Fantasy\n"),
        (&["create-shelf", "Music"], "shelf 3: Music\n"),
        (&["get-shelf", "3"], "shelf 3: Music\n"),
        (&["list-books", "3"], "no books\n"),
        (
            &[
                "create-book",
                "3",
                "--author",
                "Miles Davis",
                "--title",
                "Kind of Blue",
            ],
            "book 1: Kind of Blue by Miles Davis\n",
        ),
        (
            &["get-book", "3", "1"],
            "book 1: Kind of Blue by Miles Davis\n",
        ),
        (
            &["list-books", "3"],
            "book 1: Kind of Blue by Miles Davis\n",
        ),
        (&["delete-book", "3", "1"], "deleted book 1 from shelf 3\n"),
        (&["delete-shelf", "3"], "deleted shelf 3\n"),
        (
            &["list-books", "2"],
            "book 1: A Game of Thrones by George R.R. Martin\n",
        ),
    ];
    for (args, want) in cases {
        let run = run_client(port, args).await;
        assert_eq!(run.code, Some(0), "{args:?}: {}", run.stderr);
        assert_eq!(run.stdout, *want, "{args:?}");
        assert_eq!(run.stderr, "", "{args:?}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn json_output_is_proto3_json() {
    let server = start_bookstore().await;
    let port = server.addr().port();
    let cases: &[(&[&str], serde_json::Value)] = &[
        (
            &["--json", "list-shelves"],
            serde_json::json!({"shelves": [{"id": "1", "theme": "Fiction"}, {"id": "2", "theme": "Fantasy"}]}),
        ),
        (
            &["get-book", "1", "1", "--json"],
            serde_json::json!({"id": "1", "author": "Neal Stephenson", "title": "README"}),
        ),
        (
            &["--json", "create-shelf", "Poetry"],
            serde_json::json!({"id": "3", "theme": "Poetry"}),
        ),
        (
            &["--json", "list-books", "3"],
            serde_json::json!({"books": []}),
        ),
        (&["--json", "delete-shelf", "3"], serde_json::json!({})),
    ];
    for (args, want) in cases {
        let run = run_client(port, args).await;
        assert_eq!(run.code, Some(0), "{args:?}: {}", run.stderr);
        let got: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(&got, want, "{args:?}");
    }
    // Fields come out in proto order.
    let run = run_client(port, &["--json", "get-shelf", "1"]).await;
    assert_eq!(run.stdout, "{\"id\":\"1\",\"theme\":\"Fiction\"}\n");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn errors_print_code_and_message_and_exit_1() {
    let server = start_bookstore().await;
    let port = server.addr().port();
    for (args, want) in [
        (
            &["get-shelf", "42"][..],
            "error: NOT_FOUND: Unable to find shelf 42\n",
        ),
        (
            &["--json", "delete-book", "1", "9"][..],
            "error: NOT_FOUND: Unable to find book 9 on shelf 1\n",
        ),
    ] {
        let run = run_client(port, args).await;
        assert_eq!(run.code, Some(1), "{args:?}");
        assert_eq!(run.stderr, want, "{args:?}");
        assert_eq!(run.stdout, "", "{args:?}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let dead = testkit::dead_addr();
    let run = run_client(dead.addr().port(), &["--timeout", "5"]).await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.starts_with("error: UNAVAILABLE: "),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn bad_command_line_exits_2() {
    let run = run_client(1, &["get-book", "not-a-number", "1"]).await;
    assert_eq!(run.code, Some(2));
}

/// A Bookstore behind an interceptor that records each call's metadata and, like a proxy with
/// an authentication rule, rejects calls without `authorization`.
async fn start_recording_bookstore() -> (u16, Arc<Mutex<Vec<MetadataMap>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = Arc::clone(&seen);
    let store = Arc::new(Store::open(&DbLocation::Memory).unwrap());
    let service = BookstoreServer::with_interceptor(
        BookstoreService::new(store),
        move |request: Request<()>| {
            recorder.lock().unwrap().push(request.metadata().clone());
            if request.metadata().get("authorization").is_none() {
                return Err(Status::unauthenticated("Jwt is missing"));
            }
            Ok(request)
        },
    );
    let router = tonic::transport::Server::builder().add_service(service);
    (testkit::serve_router(router).await.port(), seen)
}

#[tokio::test]
async fn sends_api_key_bearer_token_and_deadline() {
    let (port, seen) = start_recording_bookstore().await;

    // The tutorial's underscore spellings, after the subcommand.
    let run = run_client(
        port,
        &[
            "get-shelf",
            "1",
            "--api_key",
            "key-123",
            "--auth_token",
            "aaa.bbb.ccc",
            "--timeout",
            "7",
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, "shelf 1: Fiction\n");
    {
        let seen = seen.lock().unwrap();
        let md = seen.last().unwrap();
        assert_eq!(md.get("x-api-key").unwrap(), "key-123");
        assert_eq!(md.get("authorization").unwrap(), "Bearer aaa.bbb.ccc");
        let timeout = md.get("grpc-timeout").unwrap().to_str().unwrap().to_owned();
        // tonic encodes 7 s in its own unit choice; any encoding of 7 seconds is fine.
        let (digits, unit) = timeout.split_at(timeout.len() - 1);
        let value: u64 = digits.parse().unwrap();
        let nanos = match unit {
            "H" => value * 3_600_000_000_000,
            "M" => value * 60_000_000_000,
            "S" => value * 1_000_000_000,
            "m" => value * 1_000_000,
            "u" => value * 1_000,
            "n" => value,
            other => panic!("unit {other}"),
        };
        assert_eq!(nanos, 7_000_000_000, "{timeout}");
    }

    // The kebab-case spellings, before the subcommand.
    let run = run_client(
        port,
        &["--api-key", "k2", "--auth-token", "t2", "list-shelves"],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    {
        let seen = seen.lock().unwrap();
        let md = seen.last().unwrap();
        assert_eq!(md.get("x-api-key").unwrap(), "k2");
        assert_eq!(md.get("authorization").unwrap(), "Bearer t2");
    }

    // Without a token: nothing invented, and the rejection is printed as the proxy words it.
    let run = run_client(port, &["list-shelves"]).await;
    assert_eq!(run.code, Some(1));
    assert_eq!(run.stderr, "error: UNAUTHENTICATED: Jwt is missing\n");
    let seen = seen.lock().unwrap();
    let md = seen.last().unwrap();
    assert!(md.get("x-api-key").is_none());
    assert!(md.get("authorization").is_none());
}

/// `bookstore-client health`, the pod's probe (deploy/k8s): `SERVING` exits 0; a server that
/// says otherwise, an unknown service and no server exit 1 with the reason.
#[tokio::test]
async fn health_command_is_a_probe() {
    let server = start_bookstore().await;
    let port = server.addr().port();
    let run = run_client(port, &["health"]).await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(0), "SERVING\n"),
        "{}",
        run.stderr
    );
    let run = run_client(port, &["health", "--json"]).await;
    assert_eq!(run.stdout, "{\"status\":\"SERVING\"}\n");
    let run = run_client(port, &["health", "--service", bookstore::SERVICE_NAME]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let run = run_client(port, &["health", "--service", "no.such.Service"]).await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.starts_with("error: NOT_FOUND: "),
        "{}",
        run.stderr
    );
    server.stop().await.unwrap();

    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let addr =
        testkit::serve_router(tonic::transport::Server::builder().add_service(service)).await;
    let run = run_client(addr.port(), &["health"]).await;
    assert_eq!(run.code, Some(1));
    assert_eq!(run.stderr, "error: UNAVAILABLE: NOT_SERVING\n");
    assert_eq!(run.stdout, "");

    let dead = testkit::dead_addr();
    let run = run_client(dead.addr().port(), &["health", "--timeout", "5"]).await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.starts_with("error: UNAVAILABLE: "),
        "{}",
        run.stderr
    );
}
