//! `esprit config …`: validate a service configuration and show what it means per method.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use service_config::{AllowedCallers, ApiKeyRequirement, Method, OnMissing, ServiceConfig};

#[derive(Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load and validate a service config; print every method with the checks that apply to it,
    /// then every HTTP route (from `google.api.http` options and `http.rules`).
    /// On an invalid config, print one line per problem to stderr and exit 1.
    Check(CheckArgs),
}

#[derive(Args)]
struct CheckArgs {
    /// The service configuration: `google.api.Service` YAML, or the expanded JSON form.
    #[arg(long, value_name = "FILE")]
    service_config: PathBuf,
    /// The API's descriptor: a FileDescriptorSet (`.pb`) or `.proto` files. Repeatable. Optional
    /// with the JSON form, which embeds it.
    #[arg(long, value_name = "FILE")]
    descriptor: Vec<PathBuf>,
    /// Accept sections esprit does not enforce (quota, CORS, backend routing, …)
    /// and list them as ignored, as `esprit proxy --allow-unenforced-config` would run. Without
    /// it they are reported as problems.
    #[arg(long)]
    allow_unenforced_config: bool,
}

pub fn run(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ConfigCommand::Check(check) => Ok(run_check(&check)),
    }
}

fn run_check(args: &CheckArgs) -> ExitCode {
    let options =
        service_config::LoadOptions::default().allow_unenforced(args.allow_unenforced_config);
    match service_config::load_with(&args.service_config, &args.descriptor, options) {
        Ok(config) => {
            print!("{}", render(&config));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            // One line per problem, each starting with the field path.
            for line in errors.to_string().lines() {
                eprintln!("{line}");
            }
            ExitCode::from(1)
        }
    }
}

/// The report `config check` prints for a valid config.
fn render(config: &ServiceConfig) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "service:   {}", config.name());
    if let Some(title) = config.title() {
        let _ = writeln!(out, "title:     {title}");
    }
    let _ = writeln!(out, "config id: {}", config.id());
    let apis: Vec<&str> = config.apis().iter().map(|a| a.name.as_str()).collect();
    let _ = writeln!(out, "apis:      {}", apis.join(", "));
    for provider in config.providers() {
        let keys = match &provider.jwks_uri {
            Some(uri) => uri.to_string(),
            None => "OpenID discovery".to_owned(),
        };
        let _ = writeln!(
            out,
            "provider:  {} issuer={} keys={}",
            provider.id, provider.issuer, keys
        );
    }
    for section in config.ignored_sections() {
        let _ = writeln!(out, "ignored:   {section} (not enforced by esprit)");
    }
    let _ = writeln!(out, "methods:   {}", config.methods().len());
    let _ = writeln!(out);

    let header = [
        "SELECTOR",
        "GRPC PATH",
        "API KEY",
        "ALLOW WITHOUT CREDENTIAL",
        "JWT (provider, accepted audiences, token locations)",
    ];
    let rows: Vec<Vec<String>> = config
        .methods()
        .iter()
        .map(|m| row(config, m).to_vec())
        .collect();
    write_table(&mut out, &header, &rows);

    // Each method's HTTP bindings, primary first: `POST /v1/shelves body=shelf`.
    let routes: Vec<Vec<String>> = config
        .http_routes()
        .map(|(method, binding)| vec![binding.to_string(), method.selector.to_string()])
        .collect();
    if !routes.is_empty() {
        let _ = writeln!(out);
        write_table(&mut out, &["HTTP ROUTE", "SELECTOR"], &routes);
    }
    out
}

/// Columns padded to their widest cell, two spaces apart; the last one unpadded.
fn write_table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut write_row = |cells: &[&str]| {
        let mut line = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ");
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    };
    write_row(header);
    for row in rows {
        write_row(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

fn row(config: &ServiceConfig, method: &Method) -> [String; 5] {
    let api_key = match method.api_key {
        ApiKeyRequirement::Required => {
            let locations: Vec<String> = method
                .api_key_locations
                .iter()
                .map(ToString::to_string)
                .collect();
            format!("required ({})", locations.join(", "))
        }
        ApiKeyRequirement::NotRequired => "not required".to_owned(),
    };
    let (allow, jwt) = match &method.auth {
        None => ("-".to_owned(), "none".to_owned()),
        Some(auth) => {
            let allow = match auth.on_missing {
                OnMissing::Allow => "yes",
                OnMissing::Reject => "no",
            };
            let requirements: Vec<String> = auth
                .requirements
                .iter()
                .map(|r| {
                    let audiences: Vec<&str> = r.audiences.iter().map(|a| a.as_str()).collect();
                    let locations: Vec<String> = config
                        .provider(&r.provider_id)
                        .map(|p| p.jwt_locations.iter().map(ToString::to_string).collect())
                        .unwrap_or_default();
                    // esprit extension: without a list every account of the provider may call.
                    let callers = match &r.allowed_callers {
                        AllowedCallers::Any => String::new(),
                        AllowedCallers::Listed { callers, .. } => {
                            let callers: Vec<&str> = callers.iter().map(|c| c.as_str()).collect();
                            format!(" [callers: {}]", callers.join(", "))
                        }
                    };
                    format!(
                        "{} [aud: {}] [in: {}]{callers}",
                        r.provider_id,
                        audiences.join(", "),
                        locations.join(", ")
                    )
                })
                .collect();
            (allow.to_owned(), requirements.join(" OR "))
        }
    };
    [
        method.selector.to_string(),
        method.grpc_path.clone(),
        api_key,
        allow,
        jwt,
    ]
}
