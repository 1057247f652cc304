//! The demo's transcript: step titles, the equivalent shell commands, and what they print.

use std::io::Write as _;
use std::net::SocketAddr;

use super::setup::Files;
use super::{Background, CONSUMER, LIST_SHELVES, SERVICE_NAME};

/// A step's title.
pub(super) fn step(title: &str) {
    println!("\n# {title}");
}

pub(super) fn command(line: &str) {
    println!("$ {line}");
}

pub(super) fn output(text: &str) {
    for line in text.lines() {
        println!("{line}");
    }
    let _ = std::io::stdout().flush();
}

pub(super) fn print_try_by_hand(
    files: &Files,
    consumer: &str,
    (token, api_key): (&str, &str),
    iam_server: &Background<iam::Result<()>>,
    bookstore_addr: SocketAddr,
    proxy_port: u16,
) {
    let iam_addr = iam_server.addr;
    println!(
        "\n# The stack stays up until Ctrl-C (or SIGTERM). Try it by hand (binaries: cargo build --release -p esprit -p esprit-bookstore):"
    );
    println!("#   key server  http://{iam_addr}");
    println!("#   Bookstore   127.0.0.1:{}", bookstore_addr.port());
    println!("#   proxy       127.0.0.1:{proxy_port}");
    println!("#   key file    {}", files.consumer_key.display());
    for line in [
        format!("export ESPRIT_IAM_STORE={}", files.store.display()),
        format!("JWT_TOKEN={token}"),
        format!("bookstore-client --port {proxy_port} --auth_token $JWT_TOKEN list-shelves"),
        format!("bookstore-client --port {proxy_port} list-shelves"),
        format!("API_KEY={api_key}"),
        format!(
            "bookstore-client --port {proxy_port} --auth_token $JWT_TOKEN --api_key $API_KEY get-shelf 1"
        ),
        format!("bookstore-client --port {proxy_port} --auth_token $JWT_TOKEN get-shelf 1"),
        format!(
            "curl -s -H \"Authorization: Bearer $JWT_TOKEN\" \"http://127.0.0.1:{proxy_port}/v1/shelves/1?key=$API_KEY\""
        ),
        format!("esprit iam api-keys list --project {}", CONSUMER.1),
        format!(
            "esprit token --key-file {} --audiences {SERVICE_NAME}",
            files.consumer_key.display()
        ),
        format!(
            "esprit token --key-file {} --id-token --target-audience {SERVICE_NAME}",
            files.consumer_key.display()
        ),
        format!(
            "esprit token inspect $JWT_TOKEN --service-config {} --descriptor {} --method {LIST_SHELVES}",
            files.config.display(),
            files.descriptor.display()
        ),
        format!("esprit iam keys list {consumer}"),
        format!("curl -s http://{iam_addr}/robot/v1/metadata/x509/{consumer}"),
    ] {
        command(&line);
    }
    let _ = std::io::stdout().flush();
}
