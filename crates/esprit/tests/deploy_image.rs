//! deploy/Dockerfile, checked without a container engine (CI and the machines the project is
//! built on have none, and no registry to pull the base images from): what the image relies on
//! is true of the binaries this workspace builds.
//! - The build stage's `cargo build` names packages whose binaries are exactly the ones the
//!   runtime stage copies, and the entrypoint is one of them.
//! - The runtime stage is distroless `cc` as a numeric non-root user: the binaries must link
//!   nothing beyond glibc and libgcc, which that image holds.
//! - Copied alone into an empty directory, with an empty environment and run as that user, they
//!   start and answer (no file of the build tree, no variable of cargo's, no root needed).
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use testkit::cli;

const ESPRIT: &str = env!("CARGO_BIN_EXE_esprit");

/// The shared libraries of `gcr.io/distroless/cc-debian12`: glibc's and libgcc's.
const RUNTIME_LIBRARIES: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libgcc_s.so.1",
    "ld-linux-x86-64.so.2",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
];

/// The user the runtime stage runs as (distroless' `nonroot`).
const IMAGE_USER: u32 = 65532;

struct Dockerfile {
    /// `FROM` lines' images, in order.
    stages: Vec<String>,
    /// The `-p` packages of the build stage's `cargo build`.
    packages: Vec<String>,
    /// What the build stage copies out of `target/release/`.
    copied: BTreeSet<String>,
    user: String,
    entrypoint: String,
}

fn dockerfile() -> Dockerfile {
    let text = std::fs::read_to_string(testkit::repo_root().join("deploy/Dockerfile")).unwrap();
    // Continuation lines joined, comments dropped: one instruction per line.
    let joined = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    let mut file = Dockerfile {
        stages: Vec::new(),
        packages: Vec::new(),
        copied: BTreeSet::new(),
        user: String::new(),
        entrypoint: String::new(),
    };
    for line in joined.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first().copied() {
            Some("FROM") => file.stages.push(words[1].to_owned()),
            Some("USER") => file.user = words[1].to_owned(),
            Some("ENTRYPOINT") => file.entrypoint = words[1..].join(" "),
            Some("RUN") if line.contains("cargo build") => {
                for command in line.split("&&").map(str::trim) {
                    let words: Vec<&str> = command.split_whitespace().collect();
                    if let Some((_, build)) = command.split_once("cargo build") {
                        let words: Vec<&str> = build.split_whitespace().collect();
                        for pair in words.windows(2).filter(|pair| pair[0] == "-p") {
                            file.packages.push(pair[1].to_owned());
                        }
                    } else if command.starts_with("cp ") {
                        file.copied.extend(
                            words
                                .iter()
                                .filter_map(|word| word.strip_prefix("target/release/"))
                                .map(str::to_owned),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    file
}

/// The binary targets of the workspace's packages, from `cargo metadata`.
fn binaries_of(packages: &[String]) -> BTreeSet<String> {
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(testkit::repo_root())
        .output()
        .unwrap();
    testkit::assert_success("cargo metadata", &out);
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut bins = BTreeSet::new();
    for package in metadata["packages"].as_array().unwrap() {
        if !packages
            .iter()
            .any(|p| p == package["name"].as_str().unwrap())
        {
            continue;
        }
        for target in package["targets"].as_array().unwrap() {
            if target["kind"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k == "bin")
            {
                bins.insert(target["name"].as_str().unwrap().to_owned());
            }
        }
    }
    bins
}

/// Where this build's binaries are: beside `esprit` (nextest over the workspace builds the
/// Bookstore's too).
fn built(bin: &str) -> PathBuf {
    let path = Path::new(ESPRIT).parent().unwrap().join(bin);
    assert!(
        path.exists(),
        "{bin} is not built in {}: cargo build -p esprit-bookstore (cargo nextest run --workspace \
         builds it)",
        path.parent().unwrap().display()
    );
    path
}

#[test]
fn the_build_stage_makes_exactly_the_binaries_the_runtime_stage_copies() {
    let file = dockerfile();
    assert_eq!(file.stages.len(), 2, "multi-stage: {:?}", file.stages);
    assert!(file.stages[0].starts_with("rust:"), "{:?}", file.stages);
    assert_eq!(file.stages[1], "gcr.io/distroless/cc-debian12:nonroot");
    let mut packages = file.packages.clone();
    packages.sort();
    assert_eq!(packages, ["esprit", "esprit-bookstore"]);
    assert_eq!(file.copied, binaries_of(&file.packages));
    assert_eq!(file.user, format!("{IMAGE_USER}:{IMAGE_USER}"));
    assert_eq!(file.entrypoint, r#"["/usr/local/bin/esprit"]"#);
}

#[test]
fn the_binaries_link_only_what_the_distroless_image_holds() {
    for bin in dockerfile().copied {
        let out = cli::output(Command::new("readelf").args(["-d"]).arg(built(&bin)));
        testkit::assert_success("readelf -d", &out);
        let needed: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|line| line.contains("(NEEDED)"))
            .map(|line| {
                line.rsplit('[')
                    .next()
                    .unwrap()
                    .trim_end_matches(']')
                    .to_owned()
            })
            .collect();
        assert!(!needed.is_empty(), "{bin}: dynamically linked");
        for library in &needed {
            assert!(
                RUNTIME_LIBRARIES.contains(&library.as_str()),
                "{bin} needs {library}, which gcr.io/distroless/cc-debian12 does not hold"
            );
        }
    }
}

#[test]
fn the_binaries_run_alone_with_an_empty_environment_as_the_image_user() {
    let dir = tempfile::tempdir().unwrap();
    // Enterable by the image's user (a temporary directory is its creator's only).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin_dir = dir.path().join("usr/local/bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let copied = dockerfile().copied;
    for bin in &copied {
        std::fs::copy(built(bin), bin_dir.join(bin)).unwrap();
    }
    // As root (CI), drop to the image's user as the runtime stage does.
    let as_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0");
    for (bin, args, expect) in [
        ("esprit", &["--version"][..], "esprit "),
        ("esprit", &["--help"][..], "proxy"),
        ("bookstore-server", &["--help"][..], "--port"),
        ("bookstore-client", &["--help"][..], "--host"),
    ] {
        assert!(copied.contains(bin));
        let mut command = if as_root {
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={IMAGE_USER}"))
                .arg(format!("--regid={IMAGE_USER}"))
                .arg("--clear-groups")
                .arg(bin_dir.join(bin));
            command
        } else {
            Command::new(bin_dir.join(bin))
        };
        command.args(args).env_clear().current_dir("/");
        let out = cli::output(&mut command);
        testkit::assert_success(&format!("{bin} {args:?}"), &out);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(expect), "{bin} {args:?}: {stdout}");
    }
}
