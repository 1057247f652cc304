//! The flags of the HTTP side of the proxy: CORS and HTTP/JSON transcoding (ESPv2's flags, with
//! `-` for `_`).

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::duration;

/// ESPv2's CORS flags (names with `-` for `_`, same defaults; the allowed and exposed headers
/// add gRPC-Web's). Every other `--cors-*` flag requires `--cors-preset`, as in ESPv2.
#[derive(Args)]
pub(super) struct CorsArgs {
    /// Turn CORS on: `basic` allows --cors-allow-origin, `cors_with_regex` the origins
    /// --cors-allow-origin-regex matches. Preflights are answered before any credential check.
    #[arg(long, value_enum, value_name = "PRESET")]
    cors_preset: Option<CorsPresetArg>,
    /// The origin allowed with `basic` (`*`: any, echoed back).
    #[arg(
        long,
        value_name = "ORIGIN",
        default_value = "*",
        requires = "cors_preset"
    )]
    cors_allow_origin: String,
    /// With `cors_with_regex`: origins this regular expression matches whole are allowed.
    #[arg(
        long,
        value_name = "REGEX",
        default_value = "",
        requires = "cors_preset"
    )]
    cors_allow_origin_regex: String,
    /// Access-Control-Allow-Methods on preflight answers.
    #[arg(long, value_name = "METHODS", default_value = proxy::DEFAULT_ALLOW_METHODS, requires = "cors_preset")]
    cors_allow_methods: String,
    /// Access-Control-Allow-Headers on preflight answers.
    #[arg(long, value_name = "HEADERS", default_value = proxy::DEFAULT_ALLOW_HEADERS, requires = "cors_preset")]
    cors_allow_headers: String,
    /// Access-Control-Expose-Headers on other answers.
    #[arg(long, value_name = "HEADERS", default_value = proxy::DEFAULT_EXPOSE_HEADERS, requires = "cors_preset")]
    cors_expose_headers: String,
    /// Send Access-Control-Allow-Credentials: true.
    #[arg(long, requires = "cors_preset")]
    cors_allow_credentials: bool,
    /// Access-Control-Max-Age on preflight answers (whole seconds).
    #[arg(long, value_name = "DURATION", default_value = "480h", requires = "cors_preset", value_parser = duration::CORS_MAX_AGE.parser())]
    cors_max_age: Duration,
}

#[derive(Clone, Copy, ValueEnum)]
enum CorsPresetArg {
    #[value(name = "basic")]
    Basic,
    #[value(name = "cors_with_regex")]
    CorsWithRegex,
}

impl CorsArgs {
    pub(super) fn settings(self) -> Option<proxy::CorsSettings> {
        let preset = match self.cors_preset? {
            CorsPresetArg::Basic => proxy::CorsPreset::Basic,
            CorsPresetArg::CorsWithRegex => proxy::CorsPreset::CorsWithRegex,
        };
        Some(proxy::CorsSettings {
            preset,
            allow_origin: self.cors_allow_origin,
            allow_origin_regex: self.cors_allow_origin_regex,
            allow_methods: self.cors_allow_methods,
            allow_headers: self.cors_allow_headers,
            expose_headers: self.cors_expose_headers,
            allow_credentials: self.cors_allow_credentials,
            max_age: self.cors_max_age,
        })
    }
}

/// ESPv2's `--transcoding_*` flags: how HTTP/JSON calls are translated to and from messages.
#[derive(Args)]
pub(super) struct TranscodingArgs {
    /// Print fields that hold their default value (0, "", false, empty lists) in JSON answers.
    #[arg(long)]
    transcoding_always_print_primitive_fields: bool,
    /// Print enum values as numbers in JSON answers, not names.
    #[arg(long)]
    transcoding_always_print_enums_as_ints: bool,
    /// Print the proto field names (`shelf_id`) in JSON answers, not lowerCamelCase (`shelfId`).
    #[arg(long)]
    transcoding_preserve_proto_field_names: bool,
    /// Query parameters that set no field and are not an error (comma-separated, e.g.
    /// `api_key,access_token`).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    transcoding_ignore_query_parameters: Vec<String>,
    /// A query parameter that names no field of the request is ignored, not a 400.
    #[arg(long)]
    transcoding_ignore_unknown_query_parameters: bool,
    /// `+` in a query parameter stays `+` rather than meaning a space.
    #[arg(long)]
    transcoding_query_parameters_disable_unescape_plus: bool,
    /// Enum names in requests match whatever their case.
    #[arg(long)]
    transcoding_case_insensitive_enum_parsing: bool,
}

impl TranscodingArgs {
    pub(super) fn settings(self) -> proxy::JsonOptions {
        proxy::JsonOptions {
            always_print_primitive_fields: self.transcoding_always_print_primitive_fields,
            always_print_enums_as_ints: self.transcoding_always_print_enums_as_ints,
            preserve_proto_field_names: self.transcoding_preserve_proto_field_names,
            ignored_query_parameters: self.transcoding_ignore_query_parameters,
            ignore_unknown_query_parameters: self.transcoding_ignore_unknown_query_parameters,
            query_parameters_disable_unescape_plus: self
                .transcoding_query_parameters_disable_unescape_plus,
            case_insensitive_enum_parsing: self.transcoding_case_insensitive_enum_parsing,
            ..proxy::JsonOptions::default()
        }
    }
}
