//! The job envelope and the reply body: both formats read, every refusal
//! names what is wrong.

use beanbox_queue::{
    Envelope, EnvelopeError, ErrorKind, ReplyBody, ReplyError, reply_err, reply_ok,
};
use serde_json::{Value, json};

fn parse(body: &str) -> Result<Envelope, EnvelopeError> {
    Envelope::parse(body.as_bytes())
}

fn message(body: &[u8]) -> String {
    Envelope::parse(body).unwrap_err().to_string()
}

#[test]
fn reads_our_envelope() {
    let env =
        parse(r#"{"task": "resize", "kwargs": {"width": 200, "url": "u"}, "reply_to": "results"}"#)
            .unwrap();
    assert_eq!(env.task, "resize");
    assert_eq!(Value::Object(env.kwargs), json!({"width": 200, "url": "u"}));
    assert_eq!(env.reply_to.as_deref(), Some("results"));
}

#[test]
fn reads_the_seed_envelope() {
    let env =
        parse(r#"{"func_name": "send_email", "tube": "emails", "kwargs": {"to": "a@b"}}"#).unwrap();
    assert_eq!(env.task, "send_email");
    assert_eq!(Value::Object(env.kwargs), json!({"to": "a@b"}));
    assert_eq!(env.reply_to, None);
}

#[test]
fn task_wins_over_func_name() {
    assert_eq!(
        parse(r#"{"task": "a", "func_name": "b"}"#).unwrap().task,
        "a"
    );
}

#[test]
fn kwargs_and_reply_to_are_optional_and_unknown_fields_ignored() {
    for body in [
        r#"{"task": "t"}"#,
        r#"{"task": "t", "kwargs": null, "reply_to": null}"#,
        r#"{"task": "t", "priority": 3, "future": {"x": [1]}}"#,
    ] {
        let env = parse(body).unwrap();
        assert_eq!(env.task, "t", "{body}");
        assert!(env.kwargs.is_empty(), "{body}");
        assert_eq!(env.reply_to, None, "{body}");
    }
}

#[test]
fn to_json_round_trips_and_omits_absent_reply_to() {
    let mut env =
        parse(r#"{"task": "t", "kwargs": {"n": [1, 2.5, "x", null, {"k": true}]}}"#).unwrap();
    let json: Value = serde_json::from_slice(&env.to_json()).unwrap();
    assert_eq!(
        json,
        json!({"task": "t", "kwargs": {"n": [1, 2.5, "x", null, {"k": true}]}})
    );
    env.reply_to = Some("r".into());
    assert_eq!(Envelope::parse(&env.to_json()).unwrap(), env);
}

#[test]
fn refuses_bytes_that_are_not_utf8() {
    let m = message(b"{\"task\": \"\xff\"}");
    assert!(m.contains("not UTF-8") && m.contains("offset 10"), "{m}");
}

#[test]
fn refuses_text_that_is_not_json_with_serdes_position() {
    let m = message(b"{\"task\": ");
    assert!(m.contains("not JSON") && m.contains("line 1 column"), "{m}");
    let m = message(b"");
    assert!(m.contains("not JSON"), "{m}");
}

#[test]
fn refuses_json_that_is_not_an_object() {
    for (body, found) in [
        ("[1]", "an array"),
        ("null", "null"),
        ("\"task\"", "a string"),
        ("3", "a number"),
    ] {
        let m = message(body.as_bytes());
        assert!(
            m.contains("expected a JSON object") && m.contains(found),
            "{m}"
        );
    }
}

#[test]
fn refuses_a_body_without_task() {
    let e = parse(r#"{"kwargs": {}}"#).unwrap_err();
    assert_eq!(e, EnvelopeError::MissingTask);
    assert!(e.to_string().contains("\"task\"") && e.to_string().contains("func_name"));
}

#[test]
fn refuses_a_task_that_is_not_a_non_empty_string() {
    let m = message(br#"{"task": 3}"#);
    assert_eq!(
        m,
        "field \"task\" must be a non-empty string, found a number"
    );
    let m = message(br#"{"func_name": ["f"]}"#);
    assert_eq!(
        m,
        "field \"func_name\" must be a non-empty string, found an array"
    );
    let m = message(br#"{"task": ""}"#);
    assert!(m.contains("found an empty string"), "{m}");
    let m = message(br#"{"task": null}"#);
    assert!(m.contains("\"task\"") && m.contains("null"), "{m}");
}

#[test]
fn refuses_kwargs_that_are_not_an_object() {
    let m = message(br#"{"task": "t", "kwargs": [1, 2]}"#);
    assert_eq!(m, "field \"kwargs\" must be an object, found an array");
}

#[test]
fn refuses_reply_to_that_is_not_a_tube_name() {
    let m = message(br#"{"task": "t", "reply_to": 5}"#);
    assert!(
        m.contains("\"reply_to\"") && m.contains("found a number"),
        "{m}"
    );
    let e = parse(r#"{"task": "t", "reply_to": "no spaces"}"#).unwrap_err();
    assert_eq!(e, EnvelopeError::InvalidReplyTo("no spaces".into()));
    assert!(e.to_string().contains("reply_to"));
}

#[test]
fn reply_bodies_have_the_documented_shape() {
    let ok: Value = serde_json::from_slice(&reply_ok(7, "resize", &json!({"w": 1}))).unwrap();
    assert_eq!(ok, json!({"job": 7, "task": "resize", "ok": {"w": 1}}));
    let err: Value =
        serde_json::from_slice(&reply_err(8, "resize", "trap", "unreachable", None)).unwrap();
    assert_eq!(
        err,
        json!({"job": 8, "task": "resize", "error": {"kind": "trap", "message": "unreachable"}})
    );
}

#[test]
fn reply_bodies_parse_back() {
    let ok = ReplyBody::parse(&reply_ok(7, "t", &Value::Null)).unwrap();
    assert_eq!(
        ok,
        ReplyBody {
            job: 7,
            task: "t".into(),
            outcome: Ok(Value::Null)
        }
    );
    let err = ReplyBody::parse(&reply_err(8, "t", "fuel", "out of fuel", None)).unwrap();
    let expected = ReplyError {
        kind: "fuel".into(),
        message: "out of fuel".into(),
        value: None,
    };
    assert_eq!(err.outcome, Err(expected.clone()));
    assert_eq!(expected.to_string(), "fuel: out of fuel");
    assert_eq!(ReplyBody::parse(&err.to_json()).unwrap(), err);
    assert_eq!(ReplyBody::parse(&ok.to_json()).unwrap(), ok);
}

#[test]
fn a_guest_error_reply_carries_the_err_value_beside_the_message() {
    let value = json!({"off-grid": {"x": 11, "y": 0, "label": null}});
    let body = reply_err(
        9,
        "place",
        "guest-error",
        "task `place` returned an error",
        Some(&value),
    );
    let wire: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        wire["error"],
        json!({"kind": "guest-error", "message": "task `place` returned an error", "value": value})
    );
    let reply = ReplyBody::parse(&body).unwrap();
    assert_eq!(reply.outcome.as_ref().unwrap_err().value, Some(value));
    assert_eq!(ReplyBody::parse(&reply.to_json()).unwrap(), reply);
}

#[test]
fn a_null_err_value_is_kept_and_an_absent_one_stays_absent() {
    // `result<T>` without an error type: the guest returned `err`, whose
    // value is `null`; that differs from a failure with no value at all.
    let null = reply_err(1, "t", "guest-error", "m", Some(&Value::Null));
    let wire: Value = serde_json::from_slice(&null).unwrap();
    assert_eq!(wire["error"]["value"], Value::Null);
    assert!(wire["error"].as_object().unwrap().contains_key("value"));
    let reply = ReplyBody::parse(&null).unwrap();
    assert_eq!(reply.outcome.unwrap_err().value, Some(Value::Null));

    let none = reply_err(1, "t", "trap", "m", None);
    let wire: Value = serde_json::from_slice(&none).unwrap();
    assert!(
        !wire["error"].as_object().unwrap().contains_key("value"),
        "{wire}"
    );
    assert_eq!(
        ReplyBody::parse(&none).unwrap().outcome.unwrap_err().value,
        None
    );
}

#[test]
fn malformed_reply_bodies_name_the_field() {
    let cases: [(&str, &str); 6] = [
        (r#"{"task": "t", "ok": 1}"#, "\"job\""),
        (r#"{"job": -1, "task": "t", "ok": 1}"#, "\"job\""),
        (r#"{"job": 1, "ok": 1}"#, "\"task\""),
        (r#"{"job": 1, "task": "t"}"#, "neither \"ok\" nor \"error\""),
        (
            r#"{"job": 1, "task": "t", "error": "boom"}"#,
            "\"error\" must be an object",
        ),
        (
            r#"{"job": 1, "task": "t", "error": {"kind": "k"}}"#,
            "\"message\"",
        ),
    ];
    for (body, needle) in cases {
        let m = ReplyBody::parse(body.as_bytes()).unwrap_err().to_string();
        assert!(m.contains(needle), "{body}: {m}");
    }
}

#[test]
fn reply_to_is_found_in_bodies_that_are_no_envelope() {
    let cases: [(&str, Option<&str>); 6] = [
        (r#"{"kwargs": 1, "reply_to": "answers"}"#, Some("answers")),
        (r#"{"task": 7, "reply_to": "answers"}"#, Some("answers")),
        (r#"{"task": "t", "reply_to": "bad name"}"#, None),
        (r#"{"task": "t", "reply_to": 3}"#, None),
        (r#"["reply_to", "answers"]"#, None),
        ("not json", None),
    ];
    for (body, expected) in cases {
        assert_eq!(
            Envelope::reply_to_of(body.as_bytes()).as_deref(),
            expected,
            "{body}"
        );
    }
}

#[test]
fn error_kinds_round_trip_by_their_wire_names() {
    for kind in ErrorKind::ALL {
        assert_eq!(ErrorKind::parse(kind.as_str()), Some(kind));
        assert_eq!(kind.to_string(), kind.as_str());
    }
    assert_eq!(ErrorKind::parse("guest-error"), Some(ErrorKind::GuestError));
    assert_eq!(ErrorKind::parse("no-such-kind"), None);
}
