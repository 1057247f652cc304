//! The workspace's binaries as a user runs them. `env!("CARGO_BIN_EXE_…")` exists only in the
//! tests of the crate that builds the binary, so every function here takes the binary's path.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// `bin`, with none of the environment that would change what the esprit CLI does
/// (`ESPRIT_IAM_STORE`, `ESPRIT_IAM_BASE_URL`, `ESPRIT_IAM_KEK`, `ESPRIT_TOKEN_URI`, `RUST_LOG`).
pub fn command(bin: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(bin);
    command
        .env_remove("ESPRIT_IAM_STORE")
        .env_remove("ESPRIT_IAM_BASE_URL")
        .env_remove("ESPRIT_IAM_KEK")
        .env_remove("ESPRIT_TOKEN_URI")
        .env_remove("RUST_LOG");
    command
}

/// `esprit proxy --listen 127.0.0.1:0 --backend grpc://BACKEND`, with the
/// service config `config` and the descriptor set `descriptors` written to files in `dir`.
pub fn proxy_command(
    bin: impl AsRef<OsStr>,
    dir: &Path,
    config: &str,
    descriptors: &[u8],
    backend: SocketAddr,
) -> Command {
    let config_file = dir.join("api_config.yaml");
    let descriptor_file = dir.join("descriptors.pb");
    std::fs::write(&config_file, config).unwrap();
    std::fs::write(&descriptor_file, descriptors).unwrap();
    let mut command = self::command(bin);
    command
        .args(["proxy", "--listen", "127.0.0.1:0"])
        .arg("--service-config")
        .arg(&config_file)
        .arg("--descriptor")
        .arg(&descriptor_file)
        .arg("--backend")
        .arg(format!("grpc://{backend}"));
    command
}

/// `esprit iam serve --listen 127.0.0.1:0 --store STORE EXTRA…`, running; its address is the
/// URL it prints first (`http://HOST:PORT`).
pub fn iam_serve(bin: impl AsRef<OsStr>, store: impl AsRef<OsStr>, extra: &[&str]) -> Listening {
    let mut command = self::command(bin);
    command
        .args(["iam", "serve", "--listen", "127.0.0.1:0", "--store"])
        .arg(store)
        .args(extra);
    Listening::first_line(command)
}

/// Runs `command` to its end and fails the test unless it exited 0; returns stdout, trimmed.
pub fn ok(command: &mut Command) -> String {
    let out = output(command);
    assert!(
        out.status.success(),
        "{command:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Fails the test unless `out` (of `what`) exited with `code` and printed nothing on stdout;
/// returns stderr.
pub fn assert_fails(what: &str, out: &Output, code: i32) -> String {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8(out.stderr.clone()).expect("utf-8 stderr"),
    );
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: stdout {stdout} stderr {stderr}"
    );
    assert!(out.stdout.is_empty(), "{what} printed {stdout}");
    stderr
}

/// Runs `command` to its end and captures its output.
pub fn output(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|err| panic!("running {command:?}: {err}"))
}

/// A long-running process that said where it listens; killed when dropped, however the test
/// ends.
pub struct Listening {
    pub child: Child,
    /// The address it announced (`HOST:PORT`, or its first stdout line as printed).
    pub addr: String,
    /// With [`Listening::json_log`]: the JSON log lines before "listening".
    pub startup: Vec<Value>,
    /// With [`Listening::json_log`]: the "listening" line itself (its `admin` field is the
    /// admin listener's address); `Null` otherwise.
    pub listening: Value,
    stdout: Option<ChildStdout>,
    stderr: Option<BufReader<ChildStderr>>,
}

impl Listening {
    /// Starts `command` (which logs JSON to stderr) and reads stderr up to the "listening" line,
    /// whose `listen` field is the address. The rest of stderr is left unread: see
    /// [`Listening::take_stderr`], [`Listening::json_lines`].
    pub fn json_log(mut command: Command) -> Listening {
        let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut startup = Vec::new();
        let mut line = String::new();
        let listening = loop {
            line.clear();
            if stderr.read_line(&mut line).unwrap() == 0 {
                let _ = child.kill();
                panic!("{command:?} exited before listening; it logged {startup:?}");
            }
            let value: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            if value["message"] == "listening" {
                break value;
            }
            startup.push(value);
        };
        Listening {
            child,
            addr: listening["listen"].as_str().unwrap().to_owned(),
            startup,
            listening,
            stdout: None,
            stderr: Some(stderr),
        }
    }

    /// Starts `command` and takes its first stdout line (`esprit iam serve` prints its URL) as
    /// the address. The rest of stdout and all of stderr are left unread.
    pub fn first_line(mut command: Command) -> Listening {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut addr = String::new();
        if stdout.read_line(&mut addr).unwrap() == 0 {
            let _ = child.kill();
            panic!("{command:?} exited before printing where it listens");
        }
        let stderr = child.stderr.take().map(BufReader::new);
        Listening {
            child,
            addr: addr.trim().to_owned(),
            startup: Vec::new(),
            listening: Value::Null,
            stdout: Some(stdout.into_inner()),
            stderr,
        }
    }

    /// Sends SIGTERM, reads the rest of stderr (empty if taken or discarded already), waits for
    /// the exit and returns its status and that stderr.
    pub fn sigterm_and_wait(mut self) -> (ExitStatus, String) {
        sigterm(self.child.id());
        let mut logs = String::new();
        if let Some(mut stderr) = self.stderr.take() {
            stderr.read_to_string(&mut logs).unwrap();
        }
        (self.child.wait().unwrap(), logs)
    }

    /// The unread rest of stderr, to read (or deliberately not read) as the test needs.
    pub fn take_stderr(&mut self) -> BufReader<ChildStderr> {
        self.stderr.take().expect("stderr was taken already")
    }

    /// Reads the rest of stderr on a thread, one JSON value per line.
    pub fn json_lines(&mut self) -> mpsc::Receiver<Value> {
        json_lines(self.take_stderr())
    }

    /// Reads and drops the rest of the output on threads, so the process never blocks on a full
    /// pipe.
    pub fn discard_output(&mut self) {
        fn discard(mut from: impl Read + Send + 'static) {
            std::thread::spawn(move || std::io::copy(&mut from, &mut std::io::sink()));
        }
        if let Some(stdout) = self.stdout.take() {
            discard(stdout);
        }
        if let Some(stderr) = self.stderr.take() {
            discard(stderr);
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `stderr` on a thread from here on, one JSON value per line (a line that is not JSON
/// fails the test).
pub fn json_lines(stderr: BufReader<ChildStderr>) -> mpsc::Receiver<Value> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines() {
            let Ok(line) = line else { break };
            let value: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            if tx.send(value).is_err() {
                break;
            }
        }
    });
    rx
}

/// Every line still to come from `lines` (a [`json_lines`] receiver) once its process has
/// exited: the reader thread may not have passed on the last ones yet when `wait` returns.
/// Reads until the thread ends at the end of the stream, for at most `within`.
pub fn remaining_lines(lines: &mpsc::Receiver<Value>, within: Duration) -> Vec<Value> {
    let deadline = std::time::Instant::now() + within;
    let mut rest = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(value) => rest.push(value),
            Err(_) => break,
        }
    }
    rest
}

/// Sends SIGTERM to `child` and waits (up to a generous 10 s) for it to exit.
pub async fn sigterm_and_wait(child: &mut tokio::process::Child) -> std::process::ExitStatus {
    sigterm(child.id().expect("the process has exited already"));
    tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("no exit within 10 s of SIGTERM")
        .unwrap()
}

/// Sends SIGHUP to the process `pid` (`esprit proxy` reloads its configuration).
pub fn sighup(pid: u32) {
    let sent = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Sends SIGTERM to the process `pid`.
pub fn sigterm(pid: u32) {
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
}
