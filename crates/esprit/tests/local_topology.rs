//! `deploy/local/local.sh up` as a user runs it (PostgreSQL, two key servers, two Bookstore
//! backends, three proxies with authenticated checks), under load through all three proxies while
//! one key server is SIGKILLed (`local.sh status` says so), one proxy is drained with SIGTERM and
//! PostgreSQL is restarted and stopped (the key server's `/readyz` follows it); then an API key
//! revoked through the CLI is refused by every remaining proxy within the API-key cache duration.
//! `local.sh down` stops everything, however the test ends.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bookstore::pb::GetShelfRequest;
use bookstore::pb::bookstore_client::BookstoreClient;
use tonic::transport::Channel;

const SERVICE: &str = "bookstore.endpoints.my-project.cloud.goog";
/// `--api-key-cache-duration` of the proxies here: short, so that the key servers are asked all
/// along the test (and a revoked key is refused soon).
const KEY_CACHE: Duration = Duration::from_secs(2);
/// The proxies' `--service-control-check-timeout` (its default).
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Concurrent callers per proxy.
const CALLERS_PER_PROXY: usize = 3;
/// The answer of a proxy that could not reach any key server (README, API keys).
const KEY_SERVICE_UNAVAILABLE: &str =
    "API key could not be checked: the key service is unavailable.";

/// The ports up.sh numbers from its base (README, Deploying, "On one machine").
const PORT_OFFSETS: [u16; 13] = [1, 2, 3, 11, 12, 21, 22, 101, 102, 103, 121, 122, 432];

/// A base port whose 13 ports are all free now, below Linux's ephemeral range (32768–) so that
/// no `127.0.0.1:0` listener of a concurrent test takes one of them meanwhile.
fn free_base_port() -> u16 {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
    for attempt in 0..200u64 {
        let base = 10_000 + ((seed.wrapping_mul(7919) + attempt * 613) % 22_000) as u16;
        let free = PORT_OFFSETS
            .iter()
            .all(|off| TcpListener::bind(("127.0.0.1", base + off)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no free range of ports for the local topology");
}

/// `deploy/local/local.sh ARGS` for the topology in `dir`.
fn local_sh(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("bash");
    command
        .arg(testkit::repo_root().join("deploy/local/local.sh"))
        .args(args)
        .env("ESPRIT_LOCAL_DIR", dir);
    command
}

/// The topology's directory; `local.sh down` runs when this is dropped, pass or fail.
struct Topology {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Drop for Topology {
    fn drop(&mut self) {
        let _ = local_sh(&self.dir, &["down"]).status();
    }
}

impl Topology {
    /// `local.sh status`: its exit code and what it printed.
    fn status(&self) -> (Option<i32>, String) {
        let out = local_sh(&self.dir, &["status"]).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// The pid of `name` (`iam-1`, `proxy-3`, …) from up.sh's `pids` file.
    fn pid(&self, name: &str) -> u32 {
        self.read("pids")
            .lines()
            .find_map(|line| {
                let (n, pid) = line.split_once(' ')?;
                (n == name).then(|| pid.parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no {name} in pids"))
    }

    /// The store URL up.sh wrote into `env` (`export ESPRIT_IAM_STORE=URL`).
    fn store(&self) -> String {
        let env = self.read("env");
        env.strip_prefix("export ESPRIT_IAM_STORE=")
            .unwrap_or_else(|| panic!("unexpected env file: {env}"))
            .to_owned()
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(self.dir.join("logs"))
            .into_iter()
            .flatten()
        {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            all += &format!("== {}\n", path.display());
            for line in tail.into_iter().rev() {
                all += line;
                all.push('\n');
            }
        }
        all
    }
}

/// Whether process `pid` still runs (a zombie, exited but not reaped, does not).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
            state != Some(Some('Z'))
        }
        Err(_) => false,
    }
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}

/// One call's outcome.
#[derive(Debug, Clone)]
struct Outcome {
    proxy: usize,
    started: Duration,
    ended: Duration,
    /// `None`: OK; else the code and message.
    error: Option<(tonic::Code, String)>,
}

/// Whether a failure is one the proxy never took on: the connection was refused (its listener is
/// closed), the stream was refused before any processing (HTTP/2 REFUSED_STREAM after its
/// GOAWAY), or the client never sent it (hyper's "operation was canceled": a request still
/// queued on a connection that closed), so a client may send the call to another proxy. A call
/// cut short once taken on is not one of these.
fn not_answered(status: &tonic::Status) -> bool {
    match status.code() {
        tonic::Code::Unavailable => {
            status.message().contains("connect error")
                || status.message().contains("refused stream")
        }
        tonic::Code::Cancelled => status.message() == "operation was canceled",
        _ => false,
    }
}

async fn get_shelf(channel: Channel, token: &str, api_key: &str) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(GetShelfRequest { shelf: 1 });
    request.set_timeout(Duration::from_secs(10));
    let metadata = request.metadata_mut();
    metadata.insert("authorization", format!("Bearer {token}").parse().unwrap());
    metadata.insert("x-api-key", api_key.parse().unwrap());
    let reply = BookstoreClient::new(channel).get_shelf(request).await?;
    assert_eq!(reply.get_ref().id, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_topology_survives_a_killed_key_server_a_drained_proxy_and_a_postgres_restart() {
    let test_started = Instant::now();
    let esprit = Path::new(env!("CARGO_BIN_EXE_esprit"));
    let bin_dir = esprit.parent().unwrap();
    assert!(
        bin_dir.join("bookstore-server").exists() && bin_dir.join("bookstore-client").exists(),
        "bookstore-server is not built in {}: cargo build -p esprit-bookstore (cargo nextest run \
         --workspace builds it)",
        bin_dir.display()
    );

    // The directory's parent must be enterable by the `postgres` user when the test runs as root.
    let parent = tempfile::tempdir().unwrap();
    std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let topology = Topology {
        dir: parent.path().join("local"),
        _parent: parent,
    };
    let base = free_base_port();
    let up = local_sh(&topology.dir, &["up"])
        .env("ESPRIT_LOCAL_BASE_PORT", base.to_string())
        .env("ESPRIT_BIN_DIR", bin_dir)
        .env(
            "ESPRIT_LOCAL_PROXY_FLAGS",
            format!(
                "--api-key-cache-duration {}s --drain-timeout 5s",
                KEY_CACHE.as_secs()
            ),
        )
        .env_remove("ESPRIT_IAM_STORE")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "local.sh up failed ({}):\n{}\n{}",
        up.status,
        String::from_utf8_lossy(&up.stderr),
        topology.logs()
    );
    let up_took = test_started.elapsed();
    let (code, status) = topology.status();
    assert_eq!(code, Some(0), "{status}");
    for name in [
        "postgres",
        "iam-1",
        "iam-2",
        "bookstore-1",
        "bookstore-2",
        "proxy-1",
        "proxy-2",
        "proxy-3",
    ] {
        assert!(
            status
                .lines()
                .any(|l| l.starts_with(&format!("{name} ")) && l.contains("running")),
            "{name}: {status}"
        );
    }
    assert_eq!(status.matches("running, ready").count(), 7, "{status}");

    let api_key = topology.read("api-key");
    let token = testkit::cli::ok(testkit::cli::command(esprit).args([
        "token",
        "--key-file",
        topology.dir.join("client-key.json").to_str().unwrap(),
        "--audiences",
        SERVICE,
    ]));
    let proxies: Vec<Channel> = (1..=3)
        .map(|i| {
            Channel::from_shared(format!("http://127.0.0.1:{}", base + i))
                .unwrap()
                .connect_lazy()
        })
        .collect();

    // --- the load: CALLERS_PER_PROXY callers per proxy, each call retried on the next proxy when
    // its proxy never answered it (as a client's balancer does with a draining proxy).
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let gone: Arc<Vec<AtomicBool>> = Arc::new((0..3).map(|_| AtomicBool::new(false)).collect());
    let outcomes = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let unserved = Arc::new(AtomicUsize::new(0));
    let mut callers = Vec::new();
    for caller in 0..3 * CALLERS_PER_PROXY {
        let (stop, gone, outcomes, unserved) = (
            stop.clone(),
            gone.clone(),
            outcomes.clone(),
            unserved.clone(),
        );
        let (proxies, token, api_key) = (proxies.clone(), token.clone(), api_key.clone());
        callers.push(tokio::spawn(async move {
            let home = caller % 3;
            while !stop.load(Ordering::Relaxed) {
                let mut served = false;
                for hop in 0..3 {
                    let proxy = (home + hop) % 3;
                    if gone[proxy].load(Ordering::Relaxed) {
                        continue;
                    }
                    let started = t0.elapsed();
                    let result = get_shelf(proxies[proxy].clone(), &token, &api_key).await;
                    let ended = t0.elapsed();
                    let error = result
                        .as_ref()
                        .err()
                        .map(|s| (s.code(), s.message().to_owned()));
                    let retry = result.as_ref().is_err_and(not_answered);
                    outcomes.lock().unwrap().push(Outcome {
                        proxy,
                        started,
                        ended,
                        error,
                    });
                    if retry {
                        gone[proxy].store(true, Ordering::Relaxed);
                        continue;
                    }
                    served = result.is_ok();
                    break;
                }
                if !served {
                    unserved.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    let phase = Duration::from_millis(2500);
    tokio::time::sleep(phase).await;

    // (a) a key server dies without a word (it also serves the config's jwks_uri).
    let iam_killed = t0.elapsed();
    signal(topology.pid("iam-1"), "-KILL");
    tokio::time::sleep(phase).await;
    let (code, status) = topology.status();
    assert_eq!(code, Some(3), "{status}");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("iam-1 ") && l.ends_with("stopped")),
        "{status}"
    );

    // (b) a proxy is drained.
    let proxy3 = topology.pid("proxy-3");
    let drained = t0.elapsed();
    signal(proxy3, "-TERM");
    tokio::time::sleep(phase).await;
    assert!(
        !running(proxy3),
        "proxy-3 still runs {phase:?} after SIGTERM"
    );

    // (c) PostgreSQL restarts under the remaining key server.
    let restart_started = t0.elapsed();
    let restart = Command::new(topology.dir.join("pg_ctl"))
        .args(["restart", "--mode=fast", "--wait"])
        .output()
        .unwrap();
    let restart_ended = t0.elapsed();
    assert!(
        restart.status.success(),
        "pg_ctl restart: {}",
        String::from_utf8_lossy(&restart.stderr)
    );
    tokio::time::sleep(phase).await;

    // (d) PostgreSQL down for longer than the key cache: cached keys work, then checks fail
    // closed, fast; once it is back the key server reconnects.
    let pg_ctl = |action: &str| {
        let out = Command::new(topology.dir.join("pg_ctl"))
            .args([action, "--mode=fast", "--wait"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let outage_started = t0.elapsed();
    pg_ctl("stop");
    let stopped_at = Instant::now();
    // The remaining key server's /readyz follows its store: not ready while it is down.
    let iam2_admin: std::net::SocketAddr = format!("127.0.0.1:{}", base + 122).parse().unwrap();
    let not_ready =
        testkit::wait_for_status(iam2_admin, "/readyz", 503, Duration::from_secs(20)).await;
    assert!(not_ready.contains("IAM store"), "{not_ready}");
    let down_for = KEY_CACHE + Duration::from_secs(1);
    tokio::time::sleep(down_for.saturating_sub(stopped_at.elapsed())).await;
    pg_ctl("start");
    let outage_ended = t0.elapsed();
    testkit::wait_for_status(iam2_admin, "/readyz", 200, Duration::from_secs(30)).await;
    tokio::time::sleep(phase + KEY_CACHE).await;
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await.unwrap();
    }
    let load_ended = t0.elapsed();
    let outcomes = outcomes.lock().unwrap().clone();

    // --- what the load saw.
    let mut per_proxy = BTreeMap::<usize, (usize, usize)>::new();
    for o in &outcomes {
        let entry = per_proxy.entry(o.proxy + 1).or_default();
        if o.error.is_none() {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }
    let failures: Vec<&Outcome> = outcomes.iter().filter(|o| o.error.is_some()).collect();
    let in_flight_at_drain = outcomes
        .iter()
        .filter(|o| o.proxy == 2 && o.error.is_none() && o.started < drained && o.ended > drained)
        .count();
    // Failures by proxy, code and message: how many, first and last start.
    let mut kinds = BTreeMap::<(usize, String), (usize, Duration, Duration)>::new();
    for o in &failures {
        let (code, message) = o.error.as_ref().unwrap();
        let kind = kinds
            .entry((o.proxy + 1, format!("{code:?}: {message}")))
            .or_insert((0, o.started, o.started));
        kind.0 += 1;
        kind.1 = kind.1.min(o.started);
        kind.2 = kind.2.max(o.started);
    }
    eprintln!(
        "up.sh {up_took:?}; load {load_ended:?}: (ok, failed) per proxy {per_proxy:?}; iam-1 \
         killed at {iam_killed:?}, proxy-3 SIGTERM at {drained:?} ({in_flight_at_drain} calls in \
         flight finished OK), PostgreSQL restart {restart_started:?}..{restart_ended:?}, down \
         {outage_started:?}..{outage_ended:?}; failures (count, first, last): {kinds:#?}"
    );
    for o in &failures {
        let (code, message) = o.error.as_ref().unwrap();
        let status = tonic::Status::new(*code, message.clone());
        let drained_proxy = o.proxy == 2 && o.started >= drained && not_answered(&status);
        let during_restart = *code == tonic::Code::Unavailable
            && message == KEY_SERVICE_UNAVAILABLE
            && o.ended - o.started < CHECK_TIMEOUT
            && (o.started >= restart_started && o.started <= restart_ended + CHECK_TIMEOUT
                || o.started >= outage_started && o.started <= outage_ended + CHECK_TIMEOUT);
        assert!(
            drained_proxy || during_restart,
            "a call failed outside the documented bounds: {o:?}\n{}",
            topology.logs()
        );
    }
    assert_eq!(
        unserved.load(Ordering::Relaxed),
        failures
            .iter()
            .filter(|o| o.error.as_ref().unwrap().1 == KEY_SERVICE_UNAVAILABLE)
            .count(),
        "every call refused by the drained proxy was served by another one"
    );
    for proxy in 1..=3 {
        let (ok, _) = per_proxy.get(&proxy).copied().unwrap_or_default();
        assert!(ok > 0, "no call succeeded through proxy-{proxy}");
    }
    // After the restart, everything works again on the two remaining proxies.
    let late_ok = |proxy: usize| {
        outcomes
            .iter()
            .any(|o| o.proxy == proxy && o.error.is_none() && o.started > outage_ended + KEY_CACHE)
    };
    assert!(
        late_ok(0) && late_ok(1),
        "no success once PostgreSQL is back"
    );
    // While it was down: answered from the cache first, then refused (fail closed) once the
    // cached answer expired.
    let outage = |o: &&Outcome| {
        o.proxy < 2
            && o.started > outage_started + Duration::from_millis(300)
            && o.ended < outage_ended
    };
    let cached_ok = outcomes
        .iter()
        .filter(outage)
        .filter(|o| o.error.is_none())
        .count();
    let refused = outcomes
        .iter()
        .filter(outage)
        .filter(|o| o.error.is_some())
        .count();
    eprintln!("PostgreSQL down: {cached_ok} calls answered from the key cache, {refused} refused");
    assert!(
        refused > 0,
        "no check reached the key servers while PostgreSQL was down"
    );

    // The proxies did ask the killed key server and failed over (their metrics, README's
    // `esprit_api_key_server_attempts_total`).
    let mut attempts = BTreeMap::<(String, String), f64>::new();
    for proxy in 1..=2u16 {
        let page = reqwest::get(format!("http://127.0.0.1:{}/metrics", base + 100 + proxy))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for (labels, value) in page.lines().filter_map(|line| {
            let rest = line.strip_prefix("esprit_api_key_server_attempts_total{")?;
            let (labels, value) = rest.split_once("} ")?;
            Some((labels.to_owned(), value.trim().parse::<f64>().ok()?))
        }) {
            let label = |name: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                    .map(|v| v.trim_end_matches('"').to_owned())
                    .unwrap_or_default()
            };
            *attempts
                .entry((label("replica"), label("outcome")))
                .or_default() += value;
        }
    }
    eprintln!("key-server attempts of proxy-1 and proxy-2: {attempts:?}");
    let killed_replica = format!("127.0.0.1:{}", base + 21);
    let failed_over: f64 = attempts
        .iter()
        .filter(|((replica, outcome), _)| *replica == killed_replica && outcome != "answered")
        .map(|(_, n)| n)
        .sum();
    assert!(
        failed_over > 0.0,
        "no check was ever sent to the killed key server: {attempts:?}"
    );

    // --- a key revoked through the CLI is refused by every remaining proxy within the cache time.
    let store = topology.store();
    let listed = testkit::cli::ok(
        testkit::cli::command(esprit)
            .args(["iam", "--store", &store, "api-keys", "list", "--json"]),
    );
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let key_id = listed
        .as_array()
        .and_then(|keys| keys.first())
        .and_then(|key| key["id"].as_str())
        .unwrap_or_else(|| panic!("no key in {listed}"))
        .to_owned();
    testkit::cli::ok(
        testkit::cli::command(esprit)
            .args(["iam", "--store", &store, "api-keys", "revoke", &key_id]),
    );
    let revoked = Instant::now();
    for (proxy, channel) in proxies.iter().enumerate().take(2) {
        let refused_after = loop {
            let sent = revoked.elapsed();
            match get_shelf(channel.clone(), &token, &api_key).await {
                Ok(()) => {
                    assert!(
                        sent < KEY_CACHE + CHECK_TIMEOUT,
                        "proxy-{} still accepts the key {sent:?} after its revocation",
                        proxy + 1
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(status) => {
                    assert_eq!(
                        (status.code(), status.message()),
                        (
                            tonic::Code::InvalidArgument,
                            "API key not valid. Please pass a valid API key."
                        ),
                        "proxy-{}",
                        proxy + 1
                    );
                    break sent;
                }
            }
        };
        eprintln!(
            "proxy-{} refuses the revoked key {refused_after:?} after",
            proxy + 1
        );
    }
    eprintln!("test took {:?}", test_started.elapsed());
    drop(topology);
}
