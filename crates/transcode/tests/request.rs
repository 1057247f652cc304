//! `request_message` as a table: what each HTTP request becomes, or the message a caller reads.
//! Expected messages are written as canonical proto3 JSON and read strictly by prost-reflect.

mod common;

use common::{decode, kitchen, kitchen_from};
use transcode::{BodyRule, JsonOptions, TranscodeError, request_message};

struct Case {
    desc: &'static str,
    variables: &'static [(&'static str, &'static str)],
    query: Option<&'static str>,
    rule: BodyRule<'static>,
    body: &'static str,
    options: JsonOptions,
    /// Ok(the request message as canonical JSON) or Err(the error's message).
    want: Result<&'static str, &'static str>,
}

fn case(desc: &'static str) -> Case {
    Case {
        desc,
        variables: &[],
        query: None,
        rule: BodyRule::None,
        body: "",
        options: JsonOptions::default(),
        want: Ok("{}"),
    }
}

impl Case {
    fn vars(mut self, variables: &'static [(&'static str, &'static str)]) -> Self {
        self.variables = variables;
        self
    }
    fn query(mut self, query: &'static str) -> Self {
        self.query = Some(query);
        self
    }
    fn body(mut self, rule: BodyRule<'static>, body: &'static str) -> Self {
        self.rule = rule;
        self.body = body;
        self
    }
    fn options(mut self, options: JsonOptions) -> Self {
        self.options = options;
        self
    }
    fn ok(mut self, json: &'static str) -> Self {
        self.want = Ok(json);
        self
    }
    fn err(mut self, message: &'static str) -> Self {
        self.want = Err(message);
        self
    }
}

fn case_insensitive() -> JsonOptions {
    JsonOptions {
        case_insensitive_enum_parsing: true,
        ..JsonOptions::default()
    }
}

fn reject_collisions() -> JsonOptions {
    JsonOptions {
        strict_request_validation: true,
        reject_binding_body_collisions: true,
        ..JsonOptions::default()
    }
}

fn cases() -> Vec<Case> {
    vec![
        // Path variables.
        case("no body, no binding: the empty message"),
        case("a path variable sets its field")
            .vars(&[("f_string", "shelf/1")])
            .ok(r#"{"fString":"shelf/1"}"#),
        case("nested path variable and an enum by name")
            .vars(&[("nested.name", "n"), ("flavor", "SOUR")])
            .ok(r#"{"nested":{"name":"n"},"flavor":"SOUR"}"#),
        case("an enum by number")
            .vars(&[("flavor", "2")])
            .ok(r#"{"flavor":"SOUR"}"#),
        case("path variables name fields by JSON name too")
            .vars(&[("fString", "x")])
            .ok(r#"{"fString":"x"}"#),
        case("an enum name is case-sensitive by default")
            .vars(&[("flavor", "sour")])
            .err(r#"Invalid value "sour" for enum field "kitchen.v1.Kitchen.flavor" of type "kitchen.v1.Flavor""#),
        case("case-insensitive enum parsing upper-cases the name")
            .vars(&[("flavor", "sour")])
            .options(case_insensitive())
            .ok(r#"{"flavor":"SOUR"}"#),
        case("a path variable that does not parse")
            .vars(&[("f_int32", "seven")])
            .err(r#"Invalid value "seven" for field "f_int32": invalid digit found in string"#),
        // Query parameters: scalars.
        case("query parameters of every scalar type")
            .query("f_double=1.5&f_float=-Infinity&f_int32=-5&f_int64=-9007199254740993&f_uint32=7&f_uint64=18446744073709551615&f_sint32=-3&f_sint64=-4&f_fixed32=9&f_fixed64=10&f_sfixed32=-11&f_sfixed64=-12&f_bool=true&f_string=hi&f_bytes=aGk_")
            .ok(r#"{"fDouble":1.5,"fFloat":"-Infinity","fInt32":-5,"fInt64":"-9007199254740993","fUint32":7,"fUint64":"18446744073709551615","fSint32":-3,"fSint64":"-4","fFixed32":9,"fFixed64":"10","fSfixed32":-11,"fSfixed64":"-12","fBool":true,"fString":"hi","fBytes":"aGk/"}"#),
        case("booleans as protobuf's safe_strtob reads them")
            .query("f_bool=YES&w_bool=0")
            .ok(r#"{"fBool":true,"wBool":false}"#),
        case("a boolean that is not one")
            .query("f_bool=maybe")
            .err(r#"Invalid value "maybe" for field "f_bool": expected a boolean"#),
        case("an integer out of range")
            .query("f_int32=2147483648")
            .err(r#"Invalid value "2147483648" for field "f_int32": number too large to fit in target type"#),
        case("bytes that are not base64")
            .query("f_bytes=*")
            .err(r#"Invalid value "*" for field "f_bytes": invalid base64: Invalid symbol 42, offset 0."#),
        case("'+' is a space, %2B a plus")
            .query("f_string=a+b%2Bc")
            .ok(r#"{"fString":"a b+c"}"#),
        case("'+' stays with query_parameters_disable_unescape_plus")
            .query("f_string=a+b%2Bc")
            .options(JsonOptions {
                query_parameters_disable_unescape_plus: true,
                ..JsonOptions::default()
            })
            .ok(r#"{"fString":"a+b+c"}"#),
        case("percent-encoded UTF-8, and a name percent-encoded")
            .query("f%5Fstring=caf%C3%A9%20au%20lait")
            .ok(r#"{"fString":"café au lait"}"#),
        case("an invalid escape stays as it is")
            .query("f_string=100%zz")
            .ok(r#"{"fString":"100%zz"}"#),
        case("a value that is not UTF-8")
            .query("f_string=%FF")
            .err(r#"Query parameter "f_string" is not valid UTF-8 after percent-decoding"#),
        case("parameters without '=' or without a name bind nothing")
            .query("flag&=x&&f_string=y")
            .ok(r#"{"fString":"y"}"#),
        // Query parameters: nested, repeated, enums.
        case("nested query parameters through a recursive message")
            .query("nested.child.child.name=deep&nested.count=3")
            .ok(r#"{"nested":{"count":3,"child":{"child":{"name":"deep"}}}}"#),
        case("a repeated field takes repeated parameters, in order")
            .query("r_string=a&r_string=b&r_int64=1&r_int64=-2&nested.tags=x&nested.tags=y")
            .ok(r#"{"rString":["a","b"],"rInt64":["1","-2"],"nested":{"tags":["x","y"]}}"#),
        case("repeated enums by name and number")
            .query("r_flavor=SWEET&r_flavor=3")
            .ok(r#"{"rFlavor":["SWEET","BITTER"]}"#),
        case("the last value of a singular field wins, path variable first")
            .vars(&[("f_string", "from-path")])
            .query("f_string=one&f_string=two")
            .ok(r#"{"fString":"two"}"#),
        case("a oneof member from the query")
            .query("o_int64=42")
            .ok(r#"{"oInt64":"42"}"#),
        case("proto3 optional from the query")
            .query("opt_int32=0")
            .ok(r#"{"optInt32":0}"#),
        // Query parameters: well-known types by their JSON string form.
        case("well-known types from query values")
            .query("timestamp=2017-01-15T01:30:15.01Z&duration=1.5s&field_mask=fString,nested.name&value=hello&w_double=1.5&w_float=2.5&w_int64=-5&w_uint64=6&w_int32=-7&w_uint32=8&w_bool=true&w_string=s&w_bytes=aGk%3D&r_timestamp=1970-01-01T00:00:00Z&r_timestamp=2000-01-01T00:00:00Z")
            .ok(r#"{"timestamp":"2017-01-15T01:30:15.010Z","duration":"1.500s","fieldMask":"fString,nested.name","value":"hello","wDouble":1.5,"wFloat":2.5,"wInt64":"-5","wUint64":"6","wInt32":-7,"wUint32":8,"wBool":true,"wString":"s","wBytes":"aGk=","rTimestamp":["1970-01-01T00:00:00Z","2000-01-01T00:00:00Z"]}"#),
        case("a timestamp that is not one")
            .query("timestamp=yesterday")
            .err(r#"Invalid value "yesterday" for field "timestamp": invalid rfc3339 timestamp: invalid date"#),
        case("a message field cannot take a query value")
            .query("nested=x")
            .err(r#"The field "nested" cannot be set from a path variable or query parameter"#),
        case("nor a Struct")
            .query("struct=x")
            .err(r#"The field "struct" cannot be set from a path variable or query parameter"#),
        case("nor a map")
            .query("m_string=x")
            .err(r#"The field "m_string" cannot be set from a path variable or query parameter"#),
        case("a path through a scalar")
            .query("f_string.x=1")
            .err(r#"Encountered a non-leaf field "f_string" that is not a message while parsing a field path"#),
        case("a path through a well-known type")
            .query("timestamp.seconds=1")
            .err(r#"Encountered a non-leaf field "timestamp" that is not a message while parsing a field path"#),
        case("a path through a repeated message")
            .query("r_nested.name=1")
            .err(r#"Encountered a non-leaf field "r_nested" that is not a message while parsing a field path"#),
        // Unknown and ignored query parameters.
        case("an unknown query parameter is refused, with Envoy's message")
            .query("f_string=x&nope=1")
            .err(r#"Could not find field "nope" in the type "kitchen.v1.Kitchen"."#),
        case("an unknown nested query parameter names its message")
            .query("nested.nope=1")
            .err(r#"Could not find field "nope" in the type "kitchen.v1.Nested"."#),
        case("ignore_unknown_query_parameters drops them")
            .query("f_string=x&nope=1&nested.nope=2&f_string.x=3")
            .options(JsonOptions {
                ignore_unknown_query_parameters: true,
                ..JsonOptions::default()
            })
            .ok(r#"{"fString":"x"}"#),
        case("ignored_query_parameters never bind, even to a field of that name")
            .query("key=abc&api_key=def&f_string=x&f_int32=5")
            .options(JsonOptions {
                ignored_query_parameters: vec!["key".into(), "api_key".into(), "f_int32".into()],
                ..JsonOptions::default()
            })
            .ok(r#"{"fString":"x"}"#),
        case("a too deep field path")
            .query("nested.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.name=x")
            .err(r#"The field path "nested.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.child.name" is nested too deeply"#),
        // Bodies.
        case("body '*' fills the message; query parameters fill the rest")
            .body(BodyRule::Whole, r#"{"fString":"body","f_int32":3,"nested":{"name":"n"}}"#)
            .query("f_int64=4&nested.count=5")
            .ok(r#"{"fString":"body","fInt32":3,"fInt64":"4","nested":{"name":"n","count":5}}"#),
        case("an empty or blank body is an empty message")
            .body(BodyRule::Whole, " \n")
            .vars(&[("f_string", "x")])
            .ok(r#"{"fString":"x"}"#),
        case("a JSON null body is an empty message")
            .body(BodyRule::Whole, "null")
            .ok("{}"),
        case("without a body rule a body still fills the message, as in Envoy")
            .body(BodyRule::None, r#"{"fInt32":1}"#)
            .ok(r#"{"fInt32":1}"#),
        case("body 'nested' fills that field; path variables the rest")
            .body(BodyRule::Field("nested"), r#"{"name":"n","flavor":"BITTER"}"#)
            .vars(&[("f_string", "k")])
            .ok(r#"{"fString":"k","nested":{"name":"n","flavor":"BITTER"}}"#),
        case("body 'nested' with an empty body sets an empty message")
            .body(BodyRule::Field("nested"), "")
            .ok(r#"{"nested":{}}"#),
        case("a binding inside the body field is woven in")
            .body(BodyRule::Field("nested"), r#"{"name":"n"}"#)
            .query("nested.count=2")
            .ok(r#"{"nested":{"name":"n","count":2}}"#),
        case("body naming a nested field")
            .body(BodyRule::Field("nested.child"), r#"{"name":"c"}"#)
            .query("nested.name=p")
            .ok(r#"{"nested":{"name":"p","child":{"name":"c"}}}"#),
        case("body naming a repeated field takes a list")
            .body(BodyRule::Field("r_string"), r#"["a","b"]"#)
            .ok(r#"{"rString":["a","b"]}"#),
        case("body naming a scalar takes a scalar")
            .body(BodyRule::Field("f_int64"), r#""12""#)
            .ok(r#"{"fInt64":"12"}"#),
        case("body naming a well-known type takes its JSON form")
            .body(BodyRule::Field("timestamp"), r#""2020-02-02T02:02:02Z""#)
            .ok(r#"{"timestamp":"2020-02-02T02:02:02Z"}"#),
        case("a body rule naming no field is the rule's fault")
            .body(BodyRule::Field("nope"), "{}")
            .err(r#"Invalid HTTP rule: body "nope": Could not find field "nope" in the type "kitchen.v1.Kitchen"."#),
        // Body and bindings on the same field.
        case("the body's singular value wins over a binding (Envoy drops the binding)")
            .body(BodyRule::Whole, r#"{"fString":"body","nested":{"name":"body"}}"#)
            .vars(&[("f_string", "path")])
            .query("nested.name=query")
            .ok(r#"{"fString":"body","nested":{"name":"body"}}"#),
        case("the body's value wins whichever name it uses")
            .body(BodyRule::Whole, r#"{"f_string":"body"}"#)
            .vars(&[("fString", "path")])
            .ok(r#"{"fString":"body"}"#),
        case("a binding for a field the body leaves null is taken")
            .body(BodyRule::Whole, r#"{"fString":null,"nested":null}"#)
            .query("f_string=q&nested.name=n")
            .ok(r#"{"fString":"q","nested":{"name":"n"}}"#),
        case("repeated: the bindings' values follow the body's")
            .body(BodyRule::Whole, r#"{"rString":["body"]}"#)
            .query("r_string=q1&r_string=q2")
            .ok(r#"{"rString":["body","q1","q2"]}"#),
        case("collisions refused: a different value")
            .body(BodyRule::Whole, r#"{"fString":"body"}"#)
            .vars(&[("f_string", "path")])
            .options(reject_collisions())
            .err("The binding value path of the field f_string is conflicting with the value body in the body."),
        case("collisions refused: nested, compared as values (\"3\" is 3)")
            .body(BodyRule::Whole, r#"{"nested":{"count":3,"name":"a"}}"#)
            .query("nested.count=3&nested.name=b")
            .options(reject_collisions())
            .err("The binding value b of the field name is conflicting with the value a in the body."),
        case("collisions refused: the same value passes")
            .body(BodyRule::Whole, r#"{"fInt64":"7","flavor":"SOUR"}"#)
            .query("f_int64=7&flavor=2")
            .options(reject_collisions())
            .ok(r#"{"fInt64":"7","flavor":"SOUR"}"#),
        case("collisions are only refused under strict request validation, as in ESPv2")
            .body(BodyRule::Whole, r#"{"fString":"body"}"#)
            .vars(&[("f_string", "path")])
            .options(JsonOptions {
                reject_binding_body_collisions: true,
                ..JsonOptions::default()
            })
            .ok(r#"{"fString":"body"}"#),
        case("a binding into another member of the body's oneof")
            .body(BodyRule::Whole, r#"{"oString":"s"}"#)
            .query("o_int64=1")
            .err("Invalid request body: multiple fields provided for oneof 'choice'"),
        case("bindings need the body to be an object")
            .body(BodyRule::Whole, "[1]")
            .query("f_string=x")
            .err("Invalid request body: expected a JSON object for the message kitchen.v1.Kitchen"),
        // The JSON body itself.
        case("unknown fields in the body are ignored, as in Envoy")
            .body(BodyRule::Whole, r#"{"fString":"x","nope":{"deep":[1,2]}}"#)
            .ok(r#"{"fString":"x"}"#),
        case("JSON that does not parse, with its position")
            .body(BodyRule::Whole, "{\"fString\": }")
            .err("Invalid JSON body: expected value at line 1 column 13"),
        case("trailing garbage")
            .body(BodyRule::Whole, "{} x")
            .err("Invalid JSON body: trailing characters at line 1 column 4"),
        case("a wrong type")
            .body(BodyRule::Whole, r#"{"fInt32":"abc"}"#)
            .err(r#"Invalid request body: fInt32: invalid digit found in string"#),
        case("a wrong type deep down is located")
            .body(BodyRule::Whole, r#"{"fString":"ok","nested":{"name":"n","child":{"count":true}}}"#)
            .err(r#"Invalid request body: nested.child.count: invalid type: boolean `true`, expected a 32-bit signed integer"#),
        case("in a list of messages")
            .body(BodyRule::Whole, r#"{"rNested":[{},{"tags":"not a list"}]}"#)
            .err(r#"Invalid request body: rNested[1].tags: invalid type: string "not a list", expected a list"#),
        case("an invalid well-known type value")
            .body(BodyRule::Whole, r#"{"duration":"5 minutes"}"#)
            .err(r#"Invalid request body: duration: failed to parse duration"#),
        case("an unknown enum name in the body is refused")
            .body(BodyRule::Whole, r#"{"nested":{"flavor":"SPICY"}}"#)
            .err(r#"Invalid value "SPICY" for enum field "kitchen.v1.Nested.flavor" of type "kitchen.v1.Flavor""#),
        case("case-insensitive enums in the body: singular, repeated, map values, nested")
            .body(BodyRule::Whole, r#"{"flavor":"sweet","rFlavor":["Sour",3],"mFlavor":{"a":"bitter"},"nested":{"flavor":"sOuR"},"mNested":{"1":{"flavor":"sweet"}}}"#)
            .options(case_insensitive())
            .ok(r#"{"flavor":"SWEET","rFlavor":["SOUR","BITTER"],"mFlavor":{"a":"BITTER"},"nested":{"flavor":"SOUR"},"mNested":{"1":{"flavor":"SWEET"}}}"#),
        case("well-known types in the body")
            .body(BodyRule::Whole, r#"{"timestamp":"1972-01-01T10:00:20.021Z","duration":"-3.000001s","fieldMask":"a.b,cD","struct":{"k":[1,"two",null,{"x":true}]},"value":{"n":null},"listValue":[1.5,"s"],"any":{"@type":"type.googleapis.com/kitchen.v1.Nested","name":"in any"},"empty":{},"wDouble":"NaN","wInt64":"9","wBytes":"AQI=","wString":""}"#)
            .ok(r#"{"timestamp":"1972-01-01T10:00:20.021Z","duration":"-3.000001s","fieldMask":"a.b,cD","struct":{"k":[1,"two",null,{"x":true}]},"value":{"n":null},"listValue":[1.5,"s"],"any":{"@type":"type.googleapis.com/kitchen.v1.Nested","name":"in any"},"empty":{},"wDouble":"NaN","wInt64":"9","wBytes":"AQI=","wString":""}"#),
        case("an Any of an unknown type is refused")
            .body(BodyRule::Whole, r#"{"any":{"@type":"type.googleapis.com/no.Such","x":1}}"#)
            .err("Invalid request body: any: message 'no.Such' not found"),
    ]
}

#[test]
fn request_message_table() {
    let input = kitchen();
    let mut failures = Vec::new();
    for case in cases() {
        let variables: Vec<(String, String)> = case
            .variables
            .iter()
            .map(|(path, value)| ((*path).to_owned(), (*value).to_owned()))
            .collect();
        let got = request_message(
            &input,
            &variables,
            case.query,
            case.rule,
            case.body.as_bytes(),
            &case.options,
        );
        match (&case.want, got) {
            (Ok(want), Ok(bytes)) => {
                let got = decode(&bytes);
                let want = kitchen_from(want);
                // NaN != NaN: compare the canonical JSON of both.
                let (got_json, want_json) = (json(&got), json(&want));
                if got_json != want_json {
                    failures.push(format!("{}: got {got_json}, want {want_json}", case.desc));
                }
            }
            (Err(want), Err(error)) => {
                if error.to_string() != *want {
                    failures.push(format!("{}: error {error}, want {want}", case.desc));
                }
            }
            (want, got) => failures.push(format!("{}: got {got:?}, want {want:?}", case.desc)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn json(message: &prost_reflect::DynamicMessage) -> String {
    serde_json::to_string(message).expect("serializes")
}

#[test]
fn nesting_beyond_serde_json_limit_is_refused_not_overflowed() {
    // 10 000 levels: serde_json stops at 128, so nothing recurses further.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let body = format!(r#"{{"struct":{{"k":{deep}}}}}"#);
    let error = request_message(
        &kitchen(),
        &[],
        None,
        BodyRule::Whole,
        body.as_bytes(),
        &JsonOptions::default(),
    )
    .expect_err("too deep");
    assert_eq!(
        error.to_string(),
        "Invalid JSON body: recursion limit exceeded at line 1 column 141"
    );

    // Nesting of messages within the limit goes through.
    let mut nested = String::from(r#"{"name":"leaf"}"#);
    for _ in 0..60 {
        nested = format!(r#"{{"child":{nested}}}"#);
    }
    let body = format!(r#"{{"nested":{nested}}}"#);
    request_message(
        &kitchen(),
        &[],
        None,
        BodyRule::Whole,
        body.as_bytes(),
        &JsonOptions::default(),
    )
    .expect("61 levels");
}

#[test]
fn errors_map_to_grpc_codes() {
    let caller = TranscodeError::UnknownField {
        field: "x".into(),
        message_type: "T".into(),
    };
    assert_eq!(caller.grpc_code(), 3);
    let rule = TranscodeError::InvalidRule { detail: "x".into() };
    assert_eq!(rule.grpc_code(), 13);
    let response = TranscodeError::InvalidResponse { detail: "x".into() };
    assert_eq!(response.grpc_code(), 13);
}

#[test]
fn kitchen_proto_carries_its_http_bindings() {
    // The lead's end-to-end test routes by these annotations: they must survive compilation.
    let service = common::pool()
        .get_service_by_name("kitchen.v1.KitchenService")
        .expect("service");
    let http = common::pool()
        .get_extension_by_name("google.api.http")
        .expect("google.api.http");
    for (name, server_streaming) in [("Echo", false), ("EchoNested", false), ("EchoStream", true)] {
        let method = service
            .methods()
            .find(|method| method.name() == name)
            .expect(name);
        assert_eq!(method.is_server_streaming(), server_streaming, "{name}");
        assert_eq!(method.input().full_name(), "kitchen.v1.Kitchen", "{name}");
        assert_eq!(method.output().full_name(), "kitchen.v1.Kitchen", "{name}");
        assert!(
            method.options().has_extension(&http),
            "{name} has no http rule"
        );
    }
}
