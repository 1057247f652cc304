//! `esprit token inspect`: decodes a token and explains, check by check, whether the proxy
//! would accept it for one method, and why not. It loads the same config, fetches the method's
//! providers' keys the way the proxy does (`keysets`), and replays the proxy's own checks
//! (`authn::explain`), so its verdict and the proxy's cannot disagree.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use authn::{CheckStatus, MethodPolicy};
use clap::Args;

use crate::duration;

#[derive(Args)]
pub struct InspectArgs {
    /// The token (with or without a leading `Bearer `). `-` reads it from stdin.
    token: String,
    /// The service configuration the proxy runs with.
    #[arg(long, value_name = "FILE")]
    service_config: PathBuf,
    /// The API's descriptor (as for `esprit proxy`).
    #[arg(long, value_name = "FILE")]
    descriptor: Vec<PathBuf>,
    /// The method, as a selector (`pkg.Service.Method`) or a gRPC path (`/pkg.Service/Method`).
    #[arg(long, value_name = "SELECTOR")]
    method: String,
    /// Tolerance on `exp` and `nbf`, as the proxy's `--clock-skew`.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration::CLOCK_SKEW.parser())]
    clock_skew: Duration,
    /// Extra CA certificates (PEM) for `https` key servers, as the proxy's `--jwks-ca`.
    #[arg(long, value_name = "FILE")]
    jwks_ca: Option<PathBuf>,
    /// Bound on each key-set fetch.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration::JWKS_FETCH_TIMEOUT.parser())]
    jwks_fetch_timeout: Duration,
    /// Accept service config sections esprit does not enforce, as the proxy's flag of the
    /// same name.
    #[arg(long)]
    allow_unenforced_config: bool,
}

pub fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let options =
        service_config::LoadOptions::default().allow_unenforced(args.allow_unenforced_config);
    let config = service_config::load_with(&args.service_config, &args.descriptor, options)
        .with_context(|| {
            format!(
                "loading service config from {}",
                args.service_config.display()
            )
        })?;
    let method = config
        .method_by_selector(&args.method)
        .or_else(|| config.method_by_path(&args.method))
        .with_context(|| {
            format!(
                "{:?} is not a method of {} (try `esprit config check`)",
                args.method,
                config.name()
            )
        })?;
    let policy = MethodPolicy::new(method, &config);
    let token = read_token(&args.token)?;

    let settings = keysets::JwksSettings {
        extra_ca: args.jwks_ca.clone(),
        fetch_timeout: args.jwks_fetch_timeout,
        ..keysets::JwksSettings::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut keys: HashMap<service_config::ProviderId, Arc<jose::KeySet>> = HashMap::new();
    let mut fetch_notes = Vec::new();
    for id in policy.providers() {
        let Some(provider) = config.provider(id) else {
            continue;
        };
        let source = match &provider.jwks_uri {
            Some(uri) => uri.as_str().to_owned(),
            None => format!(
                "OpenID discovery at {}",
                keysets::discovery_url(&provider.issuer)
            ),
        };
        match runtime.block_on(keysets::fetch_once(provider, &settings)) {
            Ok(set) => {
                fetch_notes.push(format!(
                    "keys of {id}: {} usable from {source}{}",
                    set.keys().len(),
                    skipped_note(&set)
                ));
                keys.insert(id.clone(), Arc::new(set));
            }
            Err(err) => fetch_notes.push(format!(
                "keys of {id}: fetch from {source} failed: {}",
                err.chain()
            )),
        }
    }

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let explanation = authn::explain(&token, &policy, &keys, jose::UnixTime(now), args.clock_skew);

    println!(
        "method:  {} ({})",
        method.selector.as_str(),
        method.grpc_path
    );
    println!("now:     {now}");
    if let Some(header) = &explanation.header {
        println!("header:  {header}");
    }
    if let Some(claims) = &explanation.claims {
        println!(
            "claims:  {}",
            serde_json::to_string_pretty(claims)
                .unwrap_or_default()
                .replace('\n', "\n         ")
        );
    }
    for note in &fetch_notes {
        println!("{note}");
    }
    println!();
    for check in &explanation.checks {
        let mark = match check.status {
            CheckStatus::Passed => "ok  ",
            CheckStatus::Failed => "FAIL",
            CheckStatus::Skipped => "skip",
        };
        let provider = check
            .provider
            .as_ref()
            .map(|p| format!(" [{p}]"))
            .unwrap_or_default();
        println!(
            "{mark} {:<9}{provider} {}",
            check.stage.name(),
            check.detail
        );
    }
    println!();
    match &explanation.result {
        Ok(Some(provider)) => {
            println!(
                "ACCEPTED: the proxy would forward this call (validated by provider {provider})"
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(None) => {
            println!("ACCEPTED: {} checks no JWT", method.selector.as_str());
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            println!(
                "REJECTED: {} {} \"{err}\" (HTTP {})",
                err.code().as_u16(),
                grpc_code_name(err.code()),
                err.http_status()
            );
            Ok(ExitCode::from(1))
        }
    }
}

/// The gRPC name of an authentication failure's code (the workspace's one code-name table).
fn grpc_code_name(code: authn::GrpcCode) -> &'static str {
    proxy::code_name(tonic::Code::from_i32(i32::from(code.as_u16())))
}

fn skipped_note(set: &jose::KeySet) -> String {
    if set.skipped().is_empty() {
        return String::new();
    }
    let reasons: Vec<String> = set.skipped().iter().map(|s| s.reason.to_string()).collect();
    format!(" ({} skipped: {})", reasons.len(), reasons.join("; "))
}

fn read_token(arg: &str) -> anyhow::Result<String> {
    let raw = if arg == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the token from stdin")?
    } else {
        arg.to_owned()
    };
    let raw = raw.trim();
    // Accept what people paste: the header value, with the scheme in any case.
    let token = match raw.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => raw,
    };
    Ok(token.to_owned())
}
