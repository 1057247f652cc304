//! deploy/k8s: the manifests validate against the Kubernetes schema of a current release
//! (tests/python/validate_manifests.py, with the kubernetes-validate package), and what they
//! ask of esprit exists: every flag and environment variable of an esprit container is accepted
//! by the binary's `--help`, and the Bookstore's service config passes `esprit config check`.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use testkit::cli;

const ESPRIT: &str = env!("CARGO_BIN_EXE_esprit");

/// The newest release whose schemas the pinned kubernetes-validate ships.
const KUBERNETES_VERSION: &str = "1.37.0";

/// Applied by hand, never by `kubectl apply -k` (it holds placeholders).
const OUTSIDE_KUSTOMIZATION: &str = "secrets.yaml";

/// Flags (or, with `*`, whole subcommands) that the manifests may use before the binary has
/// them: `(subcommand, flag)` pairs, empty while the binary accepts everything the manifests
/// use. An entry lets a manifest name a flag that work in progress adds; as soon as the binary
/// accepts it the test fails until the entry is removed, so no entry outlives its reason.
const PENDING: &[(&str, &str)] = &[];

fn k8s_dir() -> PathBuf {
    testkit::repo_root().join("deploy/k8s")
}

fn validate(dir: &Path) -> Output {
    testkit::run_python(
        "validate_manifests.py",
        &[
            dir.to_str().unwrap(),
            KUBERNETES_VERSION,
            "--outside-kustomization",
            OUTSIDE_KUSTOMIZATION,
        ],
    )
}

fn described() -> Value {
    let out = validate(&k8s_dir());
    testkit::assert_success("validate_manifests.py deploy/k8s", &out);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn manifests_validate_against_the_kubernetes_schema_of_a_current_release() {
    let described = described();
    let resources: Vec<String> = described["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["kind"].as_str().unwrap(),
                r["name"].as_str().unwrap()
            )
        })
        .collect();
    for expected in [
        "Namespace/esprit",
        "ConfigMap/bookstore-service-config",
        "Deployment/esp-grpc-bookstore",
        "Service/esp-grpc-bookstore",
        "PodDisruptionBudget/esp-grpc-bookstore",
        "Deployment/esprit-iam",
        "Service/esprit-iam",
        "PodDisruptionBudget/esprit-iam",
        "StatefulSet/esprit-postgres",
        "Service/esprit-postgres",
        "Secret/esprit-iam-kek",
        "Secret/esprit-iam-tls",
        "Secret/esprit-iam-store",
        "Secret/esprit-proxy-key",
    ] {
        assert!(
            resources.iter().any(|r| r == expected),
            "{expected} missing from {resources:?}"
        );
    }
}

/// The validation is not a formality: a copy of deploy/k8s with an unknown field, a wrong type,
/// a file left out of the kustomization, missing probes (esprit's, the Bookstore's) and a path to a key the Secret does
/// not have is refused, naming each.
#[test]
fn a_broken_manifest_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(k8s_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let edit = |file: &str, from: &str, to: &str| {
        let path = dir.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} has no {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    };
    // Intact, the copy validates: what follows is refused for the edits alone.
    testkit::assert_success("validate_manifests.py on the copy", &validate(dir.path()));

    edit("bookstore.yaml", "readinessProbe:", "readinesProbe:");
    edit("iam.yaml", "replicas: 2", "replicas: two");
    edit("kustomization.yaml", "- postgres.yaml\n", "");
    edit("iam.yaml", "/etc/esprit/kek/kek", "/etc/esprit/kek/key");
    edit(
        "bookstore.yaml",
        "        livenessProbe:\n          exec:",
        "        startupProbe:\n          exec:",
    );
    let out = validate(dir.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "bookstore.yaml: Deployment/esp-grpc-bookstore: spec/template/spec/containers/0: \
         Additional properties are not allowed ('readinesProbe' was unexpected)",
        "iam.yaml: Deployment/esprit-iam: spec/replicas: 'two' is not of type 'integer'",
        "kustomization.yaml: does not list postgres.yaml",
        "container esprit: no readinessProbe",
        "container bookstore: no livenessProbe",
        "--kek-file=/etc/esprit/kek/key: secret esprit-iam-kek has no key key",
    ] {
        assert!(stderr.contains(expected), "{expected:?} not in:\n{stderr}");
    }
}

/// One option of a `--help` page.
struct Opt {
    takes_value: bool,
    possible_values: Option<Vec<String>>,
}

/// `esprit SUBCOMMAND… --help`: its options and whole text, or None when the binary has no such
/// subcommand.
fn help(subcommand: &[&str]) -> Option<(BTreeMap<String, Opt>, String)> {
    let out = cli::output(cli::command(ESPRIT).args(subcommand).arg("--help"));
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).unwrap();
    let mut options = BTreeMap::new();
    let mut current: Option<(String, Opt)> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        if trimmed.starts_with('-') && indent <= 6 {
            options.extend(current.take());
            let mut words = trimmed.split_whitespace();
            let Some(name) = words.find(|w| w.starts_with("--")) else {
                continue;
            };
            let takes_value = words.next().is_some_and(|w| w.starts_with('<'));
            let opt = Opt {
                takes_value,
                possible_values: None,
            };
            current = Some((name.trim_end_matches(',').to_owned(), opt));
        }
        if let (Some((_, opt)), Some(at)) = (current.as_mut(), line.find("[possible values: ")) {
            let rest = &line[at + "[possible values: ".len()..];
            let list = rest.split(']').next().unwrap_or_default();
            opt.possible_values = Some(list.split(", ").map(str::to_owned).collect());
        }
    }
    options.extend(current.take());
    Some((options, text))
}

fn pending(subcommand: &str, flag: &str) -> bool {
    PENDING.contains(&(subcommand, flag))
}

/// What is wrong with `esprit ARGS` (with the environment variables `env`) for this binary.
fn check_command(args: &[String], env: &[String], problems: &mut Vec<String>) {
    let split = args
        .iter()
        .position(|a| a.starts_with('-'))
        .unwrap_or(args.len());
    let (path, flags) = args.split_at(split);
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    let subcommand = path.join(" ");
    let Some((options, text)) = help(&path) else {
        if !pending(&subcommand, "*") {
            problems.push(format!(
                "`esprit {subcommand}` is not a command of the binary"
            ));
        }
        return;
    };
    if pending(&subcommand, "*") {
        problems.push(format!(
            "`esprit {subcommand}` exists now: remove it from PENDING in this test"
        ));
    }
    let mut flags = flags.iter();
    while let Some(arg) = flags.next() {
        let Some(flag) = arg.strip_prefix("--").map(|_| arg.as_str()) else {
            problems.push(format!(
                "`esprit {subcommand}`: unexpected argument {arg:?}"
            ));
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (flag, None),
        };
        let Some(opt) = options.get(name) else {
            if !pending(&subcommand, name) {
                problems.push(format!("`esprit {subcommand}` has no flag {name}"));
            }
            continue;
        };
        if pending(&subcommand, name) {
            problems.push(format!(
                "`esprit {subcommand}` accepts {name} now: remove it from PENDING in this test"
            ));
        }
        let value = match (opt.takes_value, inline) {
            (true, Some(value)) => Some(value),
            (true, None) => flags.next().cloned(),
            (false, None) => continue,
            (false, Some(_)) => {
                problems.push(format!("`esprit {subcommand}`: {name} takes no value"));
                continue;
            }
        };
        match (value, &opt.possible_values) {
            (None, _) => problems.push(format!("`esprit {subcommand}`: {name} needs a value")),
            (Some(value), Some(allowed)) if !allowed.contains(&value) => problems.push(format!(
                "`esprit {subcommand}`: {name}={value} is not one of {allowed:?}"
            )),
            _ => {}
        }
    }
    for var in env.iter().filter(|v| v.starts_with("ESPRIT_")) {
        if !text.contains(var.as_str()) {
            problems.push(format!("`esprit {subcommand}` does not read ${var}"));
        }
    }
}

#[test]
fn every_esprit_flag_of_the_manifests_is_accepted_by_the_binary() {
    let described = described();
    let mut problems = Vec::new();
    let mut checked = Vec::new();
    for container in described["containers"].as_array().unwrap() {
        let strings = |key: &str| -> Vec<String> {
            container[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        let command = strings("command");
        if !command.first().is_some_and(|c| c.ends_with("/esprit")) {
            continue;
        }
        let mut args = command[1..].to_vec();
        args.extend(strings("args"));
        check_command(&args, &strings("env"), &mut problems);
        checked.push(format!(
            "{}: {}",
            container["workload"].as_str().unwrap(),
            container["container"].as_str().unwrap()
        ));
    }
    assert_eq!(
        checked,
        [
            "Deployment/esp-grpc-bookstore: esprit",
            "Deployment/esprit-iam: esprit-iam",
            "Deployment/esprit-iam: migrate",
        ]
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The checker above finds what it should: a misspelt flag, a flag given a value it does not
/// take, a value outside the allowed ones, an unknown subcommand, an unread variable.
#[test]
fn the_flag_check_refuses_what_the_binary_would_refuse() {
    let args = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
    let mut problems = Vec::new();
    check_command(
        &args("proxy --listen=0.0.0.0:9000 --backend grpc://127.0.0.1:8000 --log-format=json"),
        &["ESPRIT_IAM_STORE".to_owned()],
        &mut problems,
    );
    assert_eq!(problems, ["`esprit proxy` does not read $ESPRIT_IAM_STORE"]);
    problems.clear();
    check_command(
        &args("proxy --lissen=0.0.0.0:9000 --readyz-skip-keys=yes --log-format=yaml --backend"),
        &[],
        &mut problems,
    );
    assert_eq!(
        problems,
        [
            "`esprit proxy` has no flag --lissen",
            "`esprit proxy`: --readyz-skip-keys takes no value",
            "`esprit proxy`: --log-format=yaml is not one of [\"json\", \"text\"]",
            "`esprit proxy`: --backend needs a value",
        ]
    );
    problems.clear();
    check_command(&args("iam serf --listen=0.0.0.0:8085"), &[], &mut problems);
    assert_eq!(
        problems,
        ["`esprit iam serf` is not a command of the binary"]
    );
}

/// The Bookstore's service config and descriptor in the ConfigMap are what the proxy would load:
/// `esprit config check` accepts them, and the .proto is the example's, byte for byte.
#[test]
fn the_config_map_holds_a_service_config_esprit_accepts() {
    let described = described();
    let data = &described["configmaps"]["bookstore-service-config"];
    let proto = data["bookstore.proto"].as_str().unwrap();
    let example = testkit::repo_root().join("examples/bookstore/proto/bookstore.proto");
    assert_eq!(
        proto,
        std::fs::read_to_string(&example).unwrap(),
        "bookstore.proto in deploy/k8s/bookstore-config.yaml differs from {}",
        example.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("api_config.yaml");
    let descriptor = dir.path().join("bookstore.proto");
    std::fs::write(&config, data["api_config.yaml"].as_str().unwrap()).unwrap();
    std::fs::write(&descriptor, proto).unwrap();
    let checked = cli::ok(
        cli::command(ESPRIT)
            .args(["config", "check", "--service-config"])
            .arg(&config)
            .arg("--descriptor")
            .arg(&descriptor),
    );
    assert!(
        checked.contains("endpoints.examples.bookstore.Bookstore.GetShelf"),
        "{checked}"
    );
}
