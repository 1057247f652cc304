#![allow(clippy::unwrap_used)]
use http::HeaderMap;
use proptest::prelude::*;

use super::*;

const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn traceparent(lines: &[&str]) -> Option<TraceParent> {
    let mut headers = HeaderMap::new();
    for line in lines {
        headers.append(TRACEPARENT, HeaderValue::from_str(line).unwrap());
    }
    parse_traceparent(headers.get_all(TRACEPARENT))
}

fn tracestate(lines: &[&str]) -> Option<String> {
    let mut headers = HeaderMap::new();
    for line in lines {
        headers.append(
            TRACESTATE,
            HeaderValue::from_bytes(line.as_bytes()).unwrap(),
        );
    }
    parse_tracestate(headers.get_all(TRACESTATE)).map(|state| {
        state
            .header()
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    })
}

#[test]
fn the_specs_example_is_read() {
    let parent = traceparent(&[VALID]).unwrap();
    assert_eq!(
        parent.trace_id,
        [
            0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
            0x47, 0x36
        ]
    );
    assert_eq!(
        parent.parent_id,
        [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
    );
    assert!(parent.sampled);
    let unsampled = traceparent(&[&VALID.replace("-01", "-00")]).unwrap();
    assert!(!unsampled.sampled);
}

#[test]
fn traceparent_table() {
    // (description, value, valid, sampled)
    let table: &[(&str, &str, bool, bool)] = &[
        ("spec example", VALID, true, true),
        (
            "unknown flag bits: only `sampled` is read",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-fe",
            true,
            false,
        ),
        (
            "upper-case trace id",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            false,
            false,
        ),
        (
            "upper-case parent id",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            false,
            false,
        ),
        (
            "upper-case flags",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
            false,
            false,
        ),
        (
            "all-zero trace id",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            false,
            false,
        ),
        (
            "all-zero parent id",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            false,
            false,
        ),
        (
            "version ff",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            false,
            false,
        ),
        (
            "version not hex",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            false,
            false,
        ),
        (
            "version 00 with more after it",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            false,
            false,
        ),
        (
            "version 00 one character short",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            false,
            false,
        ),
        (
            "a later version, exactly the 00 fields",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            true,
            true,
        ),
        (
            "a later version with more fields",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds",
            true,
            true,
        ),
        (
            "a later version, more without a dash",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01what",
            false,
            false,
        ),
        (
            "trace id one digit short",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            false,
            false,
        ),
        (
            "wrong separator",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            false,
            false,
        ),
        (
            "non-hex in the trace id",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            false,
            false,
        ),
        (
            "leading space",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            false,
            false,
        ),
        ("empty", "", false, false),
    ];
    for (desc, value, valid, sampled) in table {
        let parsed = traceparent(&[value]);
        assert_eq!(parsed.is_some(), *valid, "{desc}: {value}");
        if let Some(parent) = parsed {
            assert_eq!(parent.sampled, *sampled, "{desc}");
        }
    }
}

#[test]
fn two_traceparent_lines_are_invalid() {
    assert!(traceparent(&[VALID, VALID]).is_none());
    assert!(traceparent(&[]).is_none());
}

#[test]
fn the_proxys_traceparent_is_version_00_with_only_the_sampled_flag() {
    let parent = traceparent(&[VALID]).unwrap();
    let span = [1, 2, 3, 4, 5, 6, 7, 0xff];
    let sampled = format_traceparent(parent.trace_id, span, true);
    assert_eq!(
        sampled,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-01020304050607ff-01"
    );
    let unsampled = format_traceparent(parent.trace_id, span, false);
    assert_eq!(
        unsampled,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-01020304050607ff-00"
    );
    // What the proxy writes, it reads back.
    let again = parse_traceparent_value(sampled.as_bytes()).unwrap();
    assert_eq!(again.trace_id, parent.trace_id);
    assert_eq!(again.parent_id, span);
}

#[test]
fn tracestate_table() {
    let long_value = "v".repeat(256);
    let too_long_value = "v".repeat(257);
    let long_key = format!("k{}", "a".repeat(255));
    let too_long_key = format!("k{}", "a".repeat(256));
    let with_long_value = format!("a={long_value}");
    let with_too_long_value = format!("a={too_long_value}");
    let with_long_key = format!("{long_key}=1");
    let with_too_long_key = format!("{too_long_key}=1");
    // (description, lines, what is passed on: None = dropped whole)
    let table: Vec<(&str, Vec<&str>, Option<&str>)> = vec![
        (
            "one member",
            vec!["congo=t61rcWkgMzE"],
            Some("congo=t61rcWkgMzE"),
        ),
        (
            "two members, order kept",
            vec!["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"],
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
        ),
        (
            "blanks around members and empty members",
            vec![" rojo=1 ,\t, ,congo=2\t"],
            Some("rojo=1,congo=2"),
        ),
        (
            "two lines form one list",
            vec!["rojo=1", "congo=2"],
            Some("rojo=1,congo=2"),
        ),
        ("empty header", vec![""], Some("")),
        (
            "multi-tenant key",
            vec!["fw529a3039@dt=1"],
            Some("fw529a3039@dt=1"),
        ),
        (
            "tenant may start with a digit",
            vec!["1tenant@sys=1"],
            Some("1tenant@sys=1"),
        ),
        (
            "simple key may not start with a digit",
            vec!["1abc=1"],
            None,
        ),
        ("upper-case key", vec!["Rojo=1"], None),
        ("system id too long", vec!["t@abcdefghijklmno=1"], None),
        ("two @", vec!["a@b@c=1"], None),
        ("value with a space inside", vec!["a=b c"], Some("a=b c")),
        ("value with =", vec!["a=b=c"], None),
        ("no =", vec!["rojo"], None),
        ("empty value", vec!["a="], None),
        ("empty key", vec!["=1"], None),
        ("non-ASCII value", vec!["a=caf\u{e9}"], None),
        ("tab inside a value", vec!["a=b\tc"], None),
        ("duplicate key", vec!["a=1,b=2,a=3"], None),
        (
            "256-character key",
            vec![with_long_key.as_str()],
            Some(with_long_key.as_str()),
        ),
        ("257-character key", vec![with_too_long_key.as_str()], None),
        (
            "256-character value",
            vec![with_long_value.as_str()],
            Some(with_long_value.as_str()),
        ),
        (
            "257-character value",
            vec![with_too_long_value.as_str()],
            None,
        ),
        ("one bad member drops all", vec!["rojo=1", "Bad=2"], None),
    ];
    for (desc, lines, want) in table {
        assert_eq!(tracestate(&lines).as_deref(), want, "{desc}");
    }
}

#[test]
fn tracestate_member_count_is_bounded_at_32() {
    let members = |n: usize| {
        (0..n)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let thirty_two = members(32);
    assert_eq!(
        tracestate(&[&thirty_two]).as_deref(),
        Some(thirty_two.as_str())
    );
    assert_eq!(tracestate(&[&members(33)]), None);
}

#[test]
fn long_tracestate_is_cut_to_512_bytes_long_members_first() {
    // 20 members of 20 bytes (419 with commas) and two of 200: 821 in all.
    let short: Vec<String> = (0..20)
        .map(|i| format!("k{i:02}={}", "x".repeat(16)))
        .collect();
    let mut lines = vec![format!("big1={}", "y".repeat(195))];
    lines.extend(short.iter().cloned());
    lines.push(format!("big2={}", "z".repeat(195)));
    let joined = lines.join(",");
    let kept = tracestate(&[&joined]).unwrap();
    assert_eq!(kept, short.join(","), "members over 128 bytes go first");
    // Still too long without long members: members are dropped from the end.
    let many: Vec<String> = (0..32)
        .map(|i| format!("k{i:02}={}", "x".repeat(26)))
        .collect();
    let kept = tracestate(&[&many.join(",")]).unwrap();
    assert!(kept.len() <= MAX_TRACESTATE_LEN);
    assert_eq!(kept, many[..kept.split(',').count()].join(","));
    assert_eq!(
        kept.split(',').count(),
        16,
        "16 members of 30 bytes and 15 commas fit"
    );
}

#[test]
fn an_oversized_tracestate_is_dropped_unread() {
    let huge = "a=1,".repeat(MAX_TRACESTATE_INPUT / 4 + 1);
    assert_eq!(tracestate(&[&huge]), None);
}

proptest! {
    /// Whatever the client sends, the result is either nothing or a header within the bounds
    /// that parses again to itself.
    #[test]
    fn tracestate_output_is_bounded_and_stable(input in "[a-z0-9=,@ _*/-]{0,700}") {
        if let Some(out) = tracestate(&[&input]) {
            prop_assert!(out.len() <= MAX_TRACESTATE_LEN);
            prop_assert!(out.split(',').filter(|m| !m.is_empty()).count() <= MAX_TRACESTATE_MEMBERS);
            if !out.is_empty() {
                prop_assert_eq!(tracestate(&[&out]), Some(out.clone()));
            }
        }
    }

    #[test]
    fn traceparent_never_panics_and_keeps_only_valid_ids(input in proptest::collection::vec(any::<u8>(), 0..80)) {
        if let Some(parent) = parse_traceparent_value(&input) {
            prop_assert_ne!(parent.trace_id, [0u8; 16]);
            prop_assert_ne!(parent.parent_id, [0u8; 8]);
            prop_assert!(input.len() >= TRACEPARENT_LEN);
        }
    }

    #[test]
    fn formatted_traceparents_parse_back(trace in any::<[u8; 16]>(), span in any::<[u8; 8]>(), sampled in any::<bool>()) {
        prop_assume!(trace != [0; 16] && span != [0; 8]);
        let value = format_traceparent(trace, span, sampled);
        let parsed = parse_traceparent_value(value.as_bytes()).unwrap();
        prop_assert_eq!(parsed, TraceParent { trace_id: trace, parent_id: span, sampled });
    }
}
