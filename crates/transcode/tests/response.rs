//! `response_json` for each print option and `response_body`, the JSON → proto → JSON round trip
//! of a full Kitchen, and the JSON array of a server stream.

mod common;

use common::{kitchen, kitchen_from};
use prost::Message;
use transcode::{BodyRule, JsonArrayWriter, JsonOptions, request_message, response_json};

/// Every field set, in the canonical JSON prost-reflect prints (camelCase, 64-bit integers as
/// strings, RFC 3339 timestamps, durations with 3/6/9 decimals, standard padded base64).
const FULL: &str = r#"{
  "fDouble": -2.5, "fFloat": 0.25, "fInt32": -2147483648, "fInt64": "-9223372036854775808",
  "fUint32": 4294967295, "fUint64": "18446744073709551615", "fSint32": -7, "fSint64": "-8",
  "fFixed32": 9, "fFixed64": "10", "fSfixed32": -11, "fSfixed64": "-12", "fBool": true,
  "fString": "ünïcode \"quoted\"\n", "fBytes": "AAEC/w==",
  "flavor": "BITTER",
  "nested": {"name": "n", "count": 2, "flavor": "SOUR", "tags": ["a", "b"],
             "child": {"name": "c", "child": {"count": 1}}},
  "rString": ["x", ""], "rInt64": ["1", "-1"], "rFlavor": ["SWEET", "FLAVOR_UNSPECIFIED"],
  "rNested": [{"name": "r0"}, {}], "rBytes": ["", "AQ=="],
  "mString": {"k": "v", "": "empty key"}, "mNested": {"-1": {"name": "minus one"}, "7": {}},
  "mFlavor": {"s": "SOUR"},
  "oNested": {"name": "in oneof"},
  "optInt32": 0,
  "timestamp": "2017-01-15T01:30:15.010Z", "duration": "-1.000000001s",
  "fieldMask": "fString,nested.childName",
  "struct": {"a": 1, "b": [true, null, "s", {"c": {}}]},
  "value": [1, {"x": "y"}], "listValue": ["l", 2, false],
  "any": {"@type": "type.googleapis.com/kitchen.v1.Nested", "name": "packed", "tags": ["t"]},
  "empty": {},
  "wDouble": 1.5, "wFloat": -0.5, "wInt64": "-3", "wUint64": "3", "wInt32": -4, "wUint32": 4,
  "wBool": false, "wString": "", "wBytes": "",
  "rTimestamp": ["1970-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z"]
}"#;

fn encoded(json: &str) -> Vec<u8> {
    kitchen_from(json).encode_to_vec()
}

fn answer(response_body: Option<&str>, json: &str, options: &JsonOptions) -> String {
    let bytes =
        response_json(&kitchen(), response_body, &encoded(json), options).expect("transcodes");
    String::from_utf8(bytes).expect("UTF-8")
}

/// The JSON of `text`, numbers compared as numbers: prost-reflect writes doubles as `1.0` where
/// the expectations write `1`.
fn value(text: &str) -> serde_json::Value {
    numbers_as_f64(serde_json::from_str(text).expect(text))
}

fn numbers_as_f64(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Number(n), Value::Number),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers_as_f64).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(key, value)| (key, numbers_as_f64(value)))
                .collect(),
        ),
        other => other,
    }
}

#[test]
fn full_kitchen_round_trips_json_proto_json() {
    let request = request_message(
        &kitchen(),
        &[],
        None,
        BodyRule::Whole,
        FULL.as_bytes(),
        &JsonOptions::default(),
    )
    .expect("request");
    let json = response_json(&kitchen(), None, &request, &JsonOptions::default()).expect("json");
    assert_eq!(
        value(std::str::from_utf8(&json).expect("UTF-8")),
        value(FULL)
    );
}

#[test]
fn print_options() {
    let options = |f: fn(&mut JsonOptions)| {
        let mut options = JsonOptions::default();
        f(&mut options);
        options
    };
    // (description, message, options, want)
    let cases: Vec<(&str, &str, JsonOptions, &str)> = vec![
        (
            "defaults: camelCase, enum names, default values omitted",
            r#"{"fInt32":0,"fString":"s","flavor":"SOUR","rString":[]}"#,
            JsonOptions::default(),
            r#"{"fString":"s","flavor":"SOUR"}"#,
        ),
        (
            "always_print_primitive_fields: fields without presence printed; unset messages, oneof and optional not",
            r#"{"nested":{"name":"n"}}"#,
            options(|o| o.always_print_primitive_fields = true),
            r#"{"fDouble":0,"fFloat":0,"fInt32":0,"fInt64":"0","fUint32":0,"fUint64":"0","fSint32":0,"fSint64":"0","fFixed32":0,"fFixed64":"0","fSfixed32":0,"fSfixed64":"0","fBool":false,"fString":"","fBytes":"","flavor":"FLAVOR_UNSPECIFIED","nested":{"name":"n","count":0,"flavor":"FLAVOR_UNSPECIFIED","tags":[]},"rString":[],"rInt64":[],"rFlavor":[],"rNested":[],"rBytes":[],"mString":{},"mNested":{},"mFlavor":{},"rTimestamp":[]}"#,
        ),
        (
            "always_print_enums_as_ints",
            r#"{"flavor":"SOUR","rFlavor":["BITTER"],"mFlavor":{"k":"SWEET"}}"#,
            options(|o| o.always_print_enums_as_ints = true),
            r#"{"flavor":2,"rFlavor":[3],"mFlavor":{"k":1}}"#,
        ),
        (
            "preserve_proto_field_names",
            r#"{"fInt32":1,"nested":{"child":{"name":"c"}},"wInt32":2}"#,
            options(|o| o.preserve_proto_field_names = true),
            r#"{"f_int32":1,"nested":{"child":{"name":"c"}},"w_int32":2}"#,
        ),
    ];
    for (desc, message, options, want) in cases {
        assert_eq!(
            value(&answer(None, message, &options)),
            value(want),
            "{desc}"
        );
    }
}

#[test]
fn response_body_selects_a_field() {
    let message = r#"{"fString":"s","fInt64":"5","nested":{"name":"n","child":{"count":3}},"rString":["a"],"mString":{"k":"v"},"timestamp":"2000-01-01T00:00:00Z","flavor":"SOUR","wInt32":0}"#;
    let default = JsonOptions::default();
    let preserve = JsonOptions {
        preserve_proto_field_names: true,
        ..JsonOptions::default()
    };
    let enums_as_ints = JsonOptions {
        always_print_enums_as_ints: true,
        ..JsonOptions::default()
    };
    // (response_body, options, want: the exact answer)
    let cases: Vec<(&str, &JsonOptions, &str)> = vec![
        ("nested", &default, r#"{"name":"n","child":{"count":3}}"#),
        ("nested", &preserve, r#"{"name":"n","child":{"count":3}}"#),
        ("nested.child", &default, r#"{"count":3}"#),
        ("f_string", &default, r#""s""#),
        ("fString", &default, r#""s""#),
        ("f_string", &preserve, r#""s""#),
        ("f_int64", &default, r#""5""#),
        ("nested.name", &default, r#""n""#),
        ("flavor", &default, r#""SOUR""#),
        ("flavor", &enums_as_ints, "2"),
        ("r_string", &default, r#"["a"]"#),
        ("m_string", &default, r#"{"k":"v"}"#),
        ("timestamp", &default, r#""2000-01-01T00:00:00Z""#),
        ("w_int32", &default, "0"),
        // Unset fields answer their default value, never an empty body.
        ("f_int32", &default, "0"),
        ("f_bool", &default, "false"),
        ("f_bytes", &default, r#""""#),
        ("r_int64", &default, "[]"),
        ("m_nested", &default, "{}"),
        ("o_string", &default, r#""""#),
        ("opt_int32", &default, "0"),
        ("struct", &default, "{}"),
        ("duration", &default, r#""0s""#),
        ("w_string", &default, r#""""#),
        ("r_nested", &default, "[]"),
    ];
    for (path, options, want) in cases {
        assert_eq!(
            answer(Some(path), message, options),
            want,
            "response_body {path}"
        );
    }
}

#[test]
fn response_errors() {
    let error = response_json(&kitchen(), None, b"\xff\xff", &JsonOptions::default())
        .expect_err("not a Kitchen");
    assert_eq!(error.grpc_code(), 13);
    assert!(
        error.to_string().starts_with(
            "Failed to transcode the response: the backend's message is not a kitchen.v1.Kitchen:"
        ),
        "{error}"
    );

    for path in ["nope", "f_string.x", "r_nested.name", ""] {
        let error =
            response_json(&kitchen(), Some(path), b"", &JsonOptions::default()).expect_err(path);
        assert_eq!(error.grpc_code(), 13, "{path}");
        assert!(
            error
                .to_string()
                .starts_with("Invalid HTTP rule: response_body"),
            "{error}"
        );
    }
}

#[test]
fn server_stream_is_a_json_array_written_as_messages_arrive() {
    let mut writer = JsonArrayWriter::new();
    let mut body = JsonArrayWriter::open().to_vec();
    for name in ["a", "b", "c"] {
        let message = format!(r#"{{"fString":"{name}"}}"#);
        let json = response_json(
            &kitchen(),
            None,
            &encoded(&message),
            &JsonOptions::default(),
        )
        .expect("json");
        let item = writer.item(json);
        // The first element has no separator; the next ones start with one.
        assert_eq!(item.first() == Some(&b','), name != "a");
        body.extend(item);
    }
    body.extend_from_slice(JsonArrayWriter::close());
    assert_eq!(writer.items(), 3);
    assert_eq!(
        String::from_utf8(body).expect("UTF-8"),
        r#"[{"fString":"a"},{"fString":"b"},{"fString":"c"}]"#
    );

    let empty = [JsonArrayWriter::open(), JsonArrayWriter::close()].concat();
    assert_eq!(empty, b"[]");
}
