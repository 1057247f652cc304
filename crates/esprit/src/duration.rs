//! Durations on the command line: `300` (seconds), `300s`, `5m`, `1h`, `250ms`, `7d`.
//!
//! Every duration flag has its own [`Bound`], enforced when clap parses the flag, so that an
//! absurd value is a usage error (exit 2, naming the flag and the bound) instead of a panic or an
//! overflow deep in a library (`Instant + duration`, a cache's time-to-live). The bounds are
//! listed in README's flag tables; keep them in step.

use std::fmt;
use std::time::Duration;

/// The largest duration any flag accepts, whatever its own bound: far below what `Instant`
/// arithmetic or the caches can hold.
const CEILING: Duration = Duration::from_secs(365 * 24 * 3600);

/// The inclusive range a duration flag accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    pub min: Duration,
    pub max: Duration,
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const fn bound(min: Duration, max: Duration) -> Bound {
    Bound { min, max }
}

/// `esprit proxy --backend-connect-timeout`.
pub const BACKEND_CONNECT_TIMEOUT: Bound = bound(Duration::from_millis(10), secs(300));
/// `esprit proxy --drain-timeout`: 0 exits at once.
pub const DRAIN_TIMEOUT: Bound = bound(Duration::ZERO, secs(3600));
/// `--clock-skew` (proxy and `token inspect`).
pub const CLOCK_SKEW: Bound = bound(Duration::ZERO, secs(3600));
/// `esprit proxy --jwks-cache-duration` (also the verified-token cache's time-to-live).
pub const JWKS_CACHE_DURATION: Bound = bound(secs(1), secs(7 * 24 * 3600));
/// `esprit proxy --jwks-max-stale`.
pub const JWKS_MAX_STALE: Bound = bound(Duration::ZERO, secs(30 * 24 * 3600));
/// `esprit proxy --jwks-refetch-interval`.
pub const JWKS_REFETCH_INTERVAL: Bound = bound(secs(1), secs(3600));
/// `--jwks-fetch-timeout` (proxy and `token inspect`).
pub const JWKS_FETCH_TIMEOUT: Bound = bound(Duration::from_millis(100), secs(300));
/// `esprit proxy --api-key-cache-duration`.
pub const API_KEY_CACHE_DURATION: Bound = bound(Duration::ZERO, secs(24 * 3600));
/// `esprit proxy --service-control-check-timeout`.
pub const SERVICE_CONTROL_CHECK_TIMEOUT: Bound = bound(Duration::from_millis(100), secs(60));
/// `esprit proxy --health-check-grpc-backend-interval`.
/// `--cors-max-age` (ESPv2's default 480h).
pub const CORS_MAX_AGE: Bound = bound(Duration::ZERO, secs(365 * 24 * 3600));
pub const HEALTH_CHECK_INTERVAL: Bound = bound(Duration::from_millis(100), secs(300));
/// `esprit proxy --watch-config-interval`.
pub const WATCH_CONFIG_INTERVAL: Bound =
    bound(proxy::WATCH_INTERVAL_MIN, proxy::WATCH_INTERVAL_MAX);
/// `esprit token --lifetime`: Google's longest for a self-signed service-account JWT.
pub const TOKEN_LIFETIME: Bound = bound(secs(1), secs(24 * 3600));
/// `esprit iam serve --signing-key-rotation` (the token service's own bounds).
pub const SIGNING_KEY_ROTATION: Bound = bound(iam::token::MIN_ROTATION, iam::token::MAX_ROTATION);
/// `iam serve --store-pool-wait`: how long a lookup waits for a free store connection.
pub const STORE_POOL_WAIT: Bound = bound(Duration::from_millis(1), secs(60));

impl Bound {
    /// Checks `value` against the bound; the error names the bound.
    pub fn check(self, text: &str, value: Duration) -> Result<Duration, String> {
        if value < self.min {
            return Err(format!(
                "{text:?} is too short: at least {}",
                Human(self.min)
            ));
        }
        if value > self.max {
            return Err(format!("{text:?} is too long: at most {}", Human(self.max)));
        }
        Ok(value)
    }

    /// A clap value parser for a flag with this bound.
    pub fn parser(self) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync {
        move |text| self.check(text, parse_unbounded(text)?)
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", Human(self.min), Human(self.max))
    }
}

/// A duration in the unit an operator would write it in: `24h`, `7d`, `250ms`, `0s`.
struct Human(Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() != 0 {
            return write!(f, "{}ms", d.as_millis());
        }
        let s = d.as_secs();
        match s {
            0 => write!(f, "0s"),
            _ if s.is_multiple_of(86_400) && s > 86_400 => write!(f, "{}d", s / 86_400),
            _ if s.is_multiple_of(3_600) => write!(f, "{}h", s / 3_600),
            _ if s.is_multiple_of(60) => write!(f, "{}m", s / 60),
            _ => write!(f, "{s}s"),
        }
    }
}

/// Parses a duration, refusing anything above a year ([`CEILING`]). Flags use
/// [`Bound::parser`] with a bound of their own; this is the floor of safety for one that has
/// none yet.
#[allow(dead_code, reason = "every flag has its own Bound today")]
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let value = parse_unbounded(text)?;
    if value > CEILING {
        return Err(format!("{text:?} is too long: at most {}", Human(CEILING)));
    }
    Ok(value)
}

fn parse_unbounded(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let value = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| format!("{text:?}: {e}"))?
    } else {
        humantime::parse_duration(text)
            .map_err(|e| format!("{text:?}: {e} (examples: 300, 300s, 5m, 1h)"))?
    };
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_spellings() {
        assert_eq!(parse_duration("300"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("300s"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("five").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn absurd_values_are_errors_not_panics() {
        for text in [
            "40000000000s",
            "40000000000",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999s",
            "1000y",
            "366d",
        ] {
            let err = parse_duration(text).expect_err(text);
            assert!(
                err.contains("at most 365d") || err.contains("too large") || err.contains("number"),
                "{text}: {err}"
            );
        }
        assert_eq!(parse_duration("365d"), Ok(CEILING));
    }

    #[test]
    fn bounds_are_inclusive_and_named_in_errors() {
        let parse = TOKEN_LIFETIME.parser();
        assert_eq!(parse("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(
            parse("0"),
            Err("\"0\" is too short: at least 1s".to_owned())
        );
        assert_eq!(
            parse("25h"),
            Err("\"25h\" is too long: at most 24h".to_owned())
        );
        let parse = JWKS_CACHE_DURATION.parser();
        assert_eq!(
            parse("40000000000s"),
            Err("\"40000000000s\" is too long: at most 7d".to_owned())
        );
        assert_eq!(
            parse("8d"),
            Err("\"8d\" is too long: at most 7d".to_owned())
        );
        let parse = BACKEND_CONNECT_TIMEOUT.parser();
        assert_eq!(
            parse("1ms"),
            Err("\"1ms\" is too short: at least 10ms".to_owned())
        );
    }

    #[test]
    fn every_bound_is_ordered_and_below_the_ceiling() {
        for bound in [
            BACKEND_CONNECT_TIMEOUT,
            DRAIN_TIMEOUT,
            CLOCK_SKEW,
            JWKS_CACHE_DURATION,
            JWKS_MAX_STALE,
            JWKS_REFETCH_INTERVAL,
            JWKS_FETCH_TIMEOUT,
            API_KEY_CACHE_DURATION,
            TOKEN_LIFETIME,
            SIGNING_KEY_ROTATION,
            STORE_POOL_WAIT,
        ] {
            assert!(bound.min <= bound.max && bound.max <= CEILING, "{bound}");
        }
    }

    #[test]
    fn human_units() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(10), "10ms"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(300), "5m"),
            (Duration::from_secs(86_400), "24h"),
            (Duration::from_secs(7 * 86_400), "7d"),
        ];
        for (value, text) in cases {
            assert_eq!(Human(value).to_string(), text);
        }
    }
}
