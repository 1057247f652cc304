//! `esprit demo` run as a user runs it: the built binary, its transcript, its exit status, and
//! that it leaves nothing behind; `--keep-running` serves real calls until SIGTERM.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bookstore::pb::GetShelfRequest;
use bookstore::pb::bookstore_client::BookstoreClient;
use tonic::Request;

/// Generous for a loaded 2-core machine; the demo takes about a second once built.
const PATIENCE: Duration = Duration::from_secs(60);

/// ESP's answers for a method that needs an API key (docs/esp-compatibility.md).
const KEY_MISSING: &str = "Method doesn't allow unregistered callers (callers without established \
                           identity). Please use API Key or other form of API consumer identity to \
                           call this API.";
const KEY_INVALID: &str = "API key not valid. Please pass a valid API key.";

fn demo(workdir: &Path) -> Command {
    let mut command = testkit::cli::command(env!("CARGO_BIN_EXE_esprit"));
    command.arg("demo").arg("--workdir").arg(workdir);
    command
}

fn assert_empty_dir(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "the demo left {left:?} behind");
}

#[test]
fn demo_shows_the_tutorials_outcomes_and_leaves_nothing_behind() {
    let parent = tempfile::tempdir().unwrap();
    // A --workdir that does not exist yet: the demo creates it and removes only its own files.
    let workdir = parent.path().join("work");
    let started = Instant::now();
    let out = demo(&workdir).output().unwrap();
    let elapsed = started.elapsed();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        out.status.success(),
        "esprit demo failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(elapsed < PATIENCE, "the demo took {elapsed:?}");

    // The commands a user would type, in the tutorial's order.
    let commands = [
        "$ esprit iam accounts create bookstore-client --project consumer-project",
        "bookstore-client@consumer-project.iam.gserviceaccount.com",
        "$ esprit iam keys create bookstore-client@consumer-project.iam.gserviceaccount.com --out ",
        // The proxy's own account, allowed to check API keys for the service.
        "$ esprit iam accounts create esprit-proxy --project producer-project",
        "$ esprit iam roles grant --member serviceAccount:esprit-proxy@producer-project.iam.gserviceaccount.com \
         --role roles/servicemanagement.serviceController \
         --resource services/bookstore.endpoints.producer-project.cloud.goog\n",
        "$ esprit iam serve --listen 127.0.0.1:",
        " --check-auth required\n",
        "$ bookstore-server --host 127.0.0.1 --port ",
        "  - id: google_service_account",
        "    issuer: bookstore-client@consumer-project.iam.gserviceaccount.com",
        "/robot/v1/metadata/x509/bookstore-client%40consumer-project.iam.gserviceaccount.com",
        // The tutorial's usage rules: ListShelves alone may be called without an API key.
        "usage:\n  rules:\n  # ListShelves methods can be called without an API Key.\n  \
         - selector: endpoints.examples.bookstore.Bookstore.ListShelves\n    \
         allow_unregistered_calls: true\n",
        "$ esprit proxy --service-config ",
        " --service-control-url http://127.0.0.1:",
        " --service-account-key ",
        "$ JWT_TOKEN=$(esprit token --key-file ",
        "$ esprit iam accounts create other-client --project other-project",
        "$ API_KEY=$(esprit iam api-keys create --project consumer-project)\n\
         created API key ",
        "$ bookstore-client --port ",
        " --auth_token $JWT_TOKEN get-shelf 1  # without an API key\n",
        " --auth_token $JWT_TOKEN --api_key AIzaSyInvalidInvalidInvalidInvalidInva get-shelf 1",
        " --auth_token $JWT_TOKEN --api_key $API_KEY get-shelf 1\n",
        // The stringent path: the token service, its ID tokens, the Token Creator role.
        "$ ID_TOKEN=$(esprit token --key-file ",
        " --id-token --target-audience bookstore.endpoints.producer-project.cloud.goog)",
        "$ WRONG_AUDIENCE=$(esprit token --key-file ",
        "$ OTHER_ID_TOKEN=$(esprit token --key-file ",
        " --impersonate bookstore-client@consumer-project.iam.gserviceaccount.com",
        "$ esprit iam roles grant --member serviceAccount:other-client@other-project.iam.gserviceaccount.com \
         --role roles/iam.serviceAccountTokenCreator \
         --resource projects/-/serviceAccounts/bookstore-client@consumer-project.iam.gserviceaccount.com\n",
        "$ IMPERSONATED=$(esprit token --key-file ",
        // The same API over HTTP/JSON, as curl calls it.
        "$ curl -s -H \"Authorization: Bearer $JWT_TOKEN\" http://127.0.0.1:",
        "/v1/shelves  # without a token\n",
        "/v1/shelves/1?key=$API_KEY\"\n",
    ];
    let mut from = 0;
    for want in commands {
        let at = stdout[from..]
            .find(want)
            .unwrap_or_else(|| panic!("{want:?} missing or out of order in:\n{stdout}"));
        from += at;
    }

    // The outcomes: the shelves with the token; the three rejections with code and message;
    // GetShelf refused without an API key and with an invalid one, answered with the valid one.
    for want in [
        "shelf 1: Fiction\nshelf 2: Fantasy\n  -> as expected: the shelves",
        "# without a token\nerror: UNAUTHENTICATED: Jwt is missing\n  -> as expected",
        "# other-client@other-project.iam.gserviceaccount.com\n\
         error: UNAUTHENTICATED: Jwt issuer is not configured\n  -> as expected",
        "posing as bookstore-client@consumer-project.iam.gserviceaccount.com\n\
         error: UNAUTHENTICATED: Jwks doesn't have key to match kid or alg from Jwt\n  -> as expected",
        &format!(
            "get-shelf 1  # without an API key\nerror: UNAUTHENTICATED: {KEY_MISSING}\n  \
             -> as expected: UNAUTHENTICATED \"{KEY_MISSING}\"\n"
        ),
        &format!(
            "get-shelf 1  # a key nobody issued\nerror: INVALID_ARGUMENT: {KEY_INVALID}\n  \
             -> as expected: INVALID_ARGUMENT \"{KEY_INVALID}\"\n"
        ),
        "--api_key $API_KEY get-shelf 1\nshelf 1: Fiction\n  -> as expected: shelf 1\n",
        "--auth_token $ID_TOKEN  # the consumer's ID token\nshelf 1: Fiction\nshelf 2: Fantasy\n  \
         -> as expected: the shelves\n",
        "--auth_token $WRONG_AUDIENCE  # an ID token for another service\n\
         error: PERMISSION_DENIED: Audiences in Jwt are not allowed\n  -> as expected",
        "--auth_token $OTHER_ID_TOKEN  # other-client@other-project.iam.gserviceaccount.com: \
         a valid ID token, but not an accepted caller\n\
         error: PERMISSION_DENIED: Caller in Jwt is not allowed\n  -> as expected",
        "--include-email  # without the role\n\
         esprit: generateIdToken refused: PERMISSION_DENIED (403): \
         Permission 'iam.serviceAccounts.getOpenIdToken' denied on resource (or it may not exist).\n  \
         -> as expected: refused without the Token Creator role\n",
        "--auth_token $IMPERSONATED  # other-client@other-project.iam.gserviceaccount.com acting as \
         the consumer\nshelf 1: Fiction\nshelf 2: Fantasy\n  -> as expected: the shelves\n",
        // REST: the shelves as JSON (int64 ids are strings), ESP's 401 JSON, shelf 1.
        "/v1/shelves\n{\"shelves\":[{\"id\":\"1\",\"theme\":\"Fiction\"},{\"id\":\"2\",\"theme\":\"Fantasy\"}]}\n  \
         -> as expected: HTTP 200\n",
        "# without a token\n{\"code\":401,\"message\":\"Jwt is missing\"}\n  -> as expected: HTTP 401\n",
        "?key=$API_KEY\"\n{\"id\":\"1\",\"theme\":\"Fiction\"}\n  -> as expected: HTTP 200\n",
    ] {
        assert!(stdout.contains(want), "{want:?} missing in:\n{stdout}");
    }
    assert_eq!(stdout.matches("  -> as expected").count(), 15, "{stdout}");
    assert!(!stdout.contains("UNEXPECTED"), "{stdout}");

    // The token is shown (it is the point of the demo); private keys never are.
    let token = stdout
        .lines()
        .skip_while(|l| *l != "$ echo $JWT_TOKEN")
        .nth(1)
        .unwrap();
    assert_eq!(token.split('.').count(), 3, "{token:?}");
    for text in [&stdout, &stderr] {
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        assert!(!text.contains("private_key"), "{text}");
    }

    assert_empty_dir(&workdir);
}

/// Reads stdout lines until the one starting with `prefix`; returns every line read.
fn read_until(lines: &mut impl Iterator<Item = String>, prefix: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let done = line.starts_with(prefix);
        seen.push(line);
        if done {
            return seen;
        }
    }
    panic!("{prefix:?} never came; output:\n{}", seen.join("\n"));
}

/// Kills the child if the test fails before it exits, so no demo outlives the test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_running_serves_calls_until_sigterm_then_cleans_up() {
    let workdir = tempfile::tempdir().unwrap();
    let mut child = KillOnDrop(
        demo(workdir.path())
            .arg("--keep-running")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines_tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let mut lines = std::iter::from_fn(|| lines_rx.recv_timeout(PATIENCE).ok());
    // The transcript (whose REST step has curl lines of its own), then the instructions up to
    // their last line.
    let mut shown = read_until(&mut lines, "# The stack stays up until Ctrl-C");
    shown.extend(read_until(&mut lines, "$ curl -s http://"));
    let shown = shown.join("\n");
    // What the demo prints for trying it by hand, after the transcript.
    let (_, shown) = shown
        .split_once("# The stack stays up until Ctrl-C")
        .unwrap_or_else(|| panic!("no instructions in:\n{shown}"));
    let proxy_port: u16 = shown
        .lines()
        .find_map(|l| l.strip_prefix("#   proxy       127.0.0.1:"))
        .unwrap()
        .parse()
        .unwrap();
    let token = shown
        .lines()
        .find_map(|l| l.strip_prefix("$ JWT_TOKEN="))
        .unwrap()
        .to_owned();
    assert!(shown.contains(&format!(
        "$ bookstore-client --port {proxy_port} --auth_token $JWT_TOKEN list-shelves"
    )));
    assert!(shown.contains("$ esprit token inspect $JWT_TOKEN --service-config "));
    let api_key = shown
        .lines()
        .find_map(|l| l.strip_prefix("$ API_KEY="))
        .unwrap()
        .to_owned();
    assert!(shown.contains(&format!(
        "$ bookstore-client --port {proxy_port} --auth_token $JWT_TOKEN --api_key $API_KEY get-shelf 1"
    )));
    // The key file the printed commands use is there while the stack runs.
    let key_file = shown
        .lines()
        .find_map(|l| l.strip_prefix("#   key file    "))
        .unwrap();
    assert!(Path::new(key_file).is_file(), "{key_file}");

    // The stack answers calls made from outside the process, with and without the token.
    let mut client = BookstoreClient::connect(format!("http://127.0.0.1:{proxy_port}"))
        .await
        .unwrap();
    let mut request = Request::new(());
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let shelves = client.list_shelves(request).await.unwrap().into_inner();
    assert_eq!(shelves.shelves.len(), 2);
    let status = client.list_shelves(Request::new(())).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(status.message(), "Jwt is missing");
    // GetShelf needs the printed API key as well as the token.
    let get_shelf = |api_key: Option<&str>| {
        let mut request = Request::new(GetShelfRequest { shelf: 1 });
        let metadata = request.metadata_mut();
        metadata.insert("authorization", format!("Bearer {token}").parse().unwrap());
        if let Some(key) = api_key {
            metadata.insert("x-api-key", key.parse().unwrap());
        }
        request
    };
    let shelf = client
        .get_shelf(get_shelf(Some(&api_key)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((shelf.id, shelf.theme.as_str()), (1, "Fiction"));
    let status = client.get_shelf(get_shelf(None)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(status.message(), KEY_MISSING);
    drop(client);

    testkit::cli::sigterm(child.0.id());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < PATIENCE, "still running after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let rest: Vec<String> = lines.collect();
    assert!(status.success(), "{status}; output after SIGTERM: {rest:?}");
    assert!(rest.iter().any(|l| l == "Stopping."), "{rest:?}");
    assert_empty_dir(workdir.path());
}
