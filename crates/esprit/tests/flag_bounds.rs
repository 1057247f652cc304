//! Every duration and count flag refuses an absurd value at parse time: exit 2 (clap's usage
//! error), a message naming the flag and its bound, and no panic
//! (`--jwks-cache-duration 40000000000s` used to panic in the token cache's builder).

/// Required arguments of each command, so that only the flag under test can fail.
const PROXY: &[&str] = &[
    "proxy",
    "--service-config",
    "missing.yaml",
    "--backend",
    "grpc://127.0.0.1:1",
];
const TOKEN: &[&str] = &["token", "--key-file", "missing.json", "--audiences", "a"];
const IAM_SERVE: &[&str] = &["iam", "serve"];
const INSPECT: &[&str] = &[
    "token",
    "inspect",
    "x.y.z",
    "--service-config",
    "missing.yaml",
    "--method",
    "a.B.C",
];

#[test]
fn absurd_values_are_usage_errors_naming_flag_and_bound() {
    // (command, flag, value, the bound the message must state)
    let cases: &[(&[&str], &str, &str, &str)] = &[
        (PROXY, "--jwks-cache-duration", "40000000000s", "at most 7d"),
        (PROXY, "--jwks-cache-duration", "0", "at least 1s"),
        (PROXY, "--jwks-max-stale", "1000y", "at most 30d"),
        (PROXY, "--jwks-refetch-interval", "2h", "at most 1h"),
        (PROXY, "--jwks-refetch-interval", "0", "at least 1s"),
        (PROXY, "--jwks-fetch-timeout", "1ms", "at least 100ms"),
        (PROXY, "--jwks-fetch-timeout", "1h", "at most 5m"),
        (PROXY, "--clock-skew", "18446744073709551615s", "at most 1h"),
        (PROXY, "--backend-connect-timeout", "0", "at least 10ms"),
        (PROXY, "--backend-connect-timeout", "1d", "at most 5m"),
        (PROXY, "--drain-timeout", "99999999999", "at most 1h"),
        (PROXY, "--api-key-cache-duration", "2d", "at most 24h"),
        (
            PROXY,
            "--service-control-check-timeout",
            "10ms",
            "at least 100ms",
        ),
        (PROXY, "--service-control-check-timeout", "2m", "at most 1m"),
        (PROXY, "--jwt-cache-size", "1000000001", "0..=1000000"),
        (PROXY, "--jwt-cache-size", "-1", "-1"),
        (PROXY, "--worker-threads", "0", "1..=1024"),
        (PROXY, "--worker-threads", "100000", "1..=1024"),
        (PROXY, "--http2-max-concurrent-streams", "0", "1..=65536"),
        (
            PROXY,
            "--http2-max-concurrent-streams",
            "4294967296",
            "4294967296",
        ),
        (PROXY, "--backend-connections", "65", "1..=64"),
        (PROXY, "--watch-config-interval", "10ms", "at least 100ms"),
        (PROXY, "--watch-config-interval", "2h", "at most 1h"),
        (
            PROXY,
            "--health-check-grpc-backend-interval",
            "1ms",
            "at least 100ms",
        ),
        (
            PROXY,
            "--health-check-grpc-backend-interval",
            "1h",
            "at most 5m",
        ),
        (
            PROXY,
            "--admin-listen",
            "localhost:1",
            "expected PORT or HOST:PORT",
        ),
        (
            PROXY,
            "--admin-listen",
            "70000",
            "expected PORT or HOST:PORT",
        ),
        (TOKEN, "--lifetime", "40000000000s", "at most 24h"),
        (TOKEN, "--lifetime", "0s", "at least 1s"),
        (INSPECT, "--clock-skew", "40000000000s", "at most 1h"),
        (INSPECT, "--jwks-fetch-timeout", "0", "at least 100ms"),
        (IAM_SERVE, "--store-pool-size", "0", "1..=256"),
        (IAM_SERVE, "--store-pool-size", "257", "1..=256"),
        (IAM_SERVE, "--store-pool-wait", "0", "at least 1ms"),
        (IAM_SERVE, "--store-pool-wait", "2m", "at most 1m"),
    ];
    for (command, flag, value, bound) in cases {
        let out = testkit::cli::command(env!("CARGO_BIN_EXE_esprit"))
            .args(*command)
            // `--flag=value`, so that a value starting with `-` is still the flag's value.
            .arg(format!("{flag}={value}"))
            .output()
            .expect("run esprit");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(&format!("invalid value '{value}' for '{flag} ")),
            "{flag} {value}: {stderr}"
        );
        assert!(stderr.contains(bound), "{flag} {value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{flag} {value}: {stderr}");
    }
}
