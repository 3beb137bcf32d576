//! JSON <-> WIT conversion through showcase's echo exports: every WIT type in
//! both directions, name matching, and the errors for kwargs that do not fit,
//! each naming the argument and the type it should have had.

use beanbox::sandbox::{ArgError, ArgErrorKind, CallError};
use serde_json::{Value, json};

use crate::support::{fails, ok, refused};

/// Calls showcase's `task` with `{"v": v}` and returns the result.
async fn echo(task: &str, v: Value) -> Value {
    ok("showcase", task, json!({ "v": v })).await
}

/// Asserts that `value` comes back from `task` unchanged.
async fn round_trips(task: &str, value: Value) {
    assert_eq!(echo(task, value.clone()).await, value, "{task}");
}

/// The argument error of a call refused for its kwargs, and its message.
async fn bad_kwargs(task: &str, kwargs: Value) -> (ArgError, String) {
    let error = refused("showcase", task, kwargs).await;
    let message = error.to_string();
    match error {
        CallError::BadKwargs { error, .. } => (error, message),
        other => panic!("expected bad kwargs, got {other:?}"),
    }
}

/// Asserts a mismatch at `path` whose message names the path and `expected`.
async fn mismatch(task: &str, kwargs: Value, path: &str, expected: &str) -> String {
    let (error, message) = bad_kwargs(task, kwargs).await;
    assert_eq!(error.path, path, "{message}");
    assert!(
        matches!(&error.kind, ArgErrorKind::Mismatch { expected: e, .. } if e == expected),
        "{message}"
    );
    assert!(message.contains(&format!("`{path}`")), "{message}");
    assert!(message.contains(expected), "{message}");
    message
}

#[tokio::test]
async fn bools_round_trip() {
    round_trips("echo-bool", json!(true)).await;
    round_trips("echo-bool", json!(false)).await;
}

#[tokio::test]
async fn integers_round_trip_at_their_limits() {
    for (task, min, max) in [
        ("echo-u8", json!(0), json!(u8::MAX)),
        ("echo-u16", json!(0), json!(u16::MAX)),
        ("echo-u32", json!(0), json!(u32::MAX)),
        ("echo-u64", json!(0), json!(u64::MAX)),
        ("echo-s8", json!(i8::MIN), json!(i8::MAX)),
        ("echo-s16", json!(i16::MIN), json!(i16::MAX)),
        ("echo-s32", json!(i32::MIN), json!(i32::MAX)),
        ("echo-s64", json!(i64::MIN), json!(i64::MAX)),
    ] {
        round_trips(task, min).await;
        round_trips(task, max).await;
    }
}

#[tokio::test]
async fn integral_floats_are_accepted_as_integers() {
    assert_eq!(echo("echo-u32", json!(7.0)).await, json!(7));
}

#[tokio::test]
async fn floats_round_trip() {
    round_trips("echo-f64", json!(std::f64::consts::PI)).await;
    round_trips("echo-f64", json!(-1.0e300)).await;
    round_trips("echo-f32", json!(1.5)).await;
    round_trips("echo-f32", json!(-0.25)).await;
    // f32::MAX in its shortest decimal form, which is how it comes back.
    round_trips("echo-f32", json!(3.402_823_5e38)).await;
}

#[tokio::test]
async fn f32_comes_back_in_its_shortest_decimal_form() {
    // 0.1 is not exact in f32; its shortest decimal form is still 0.1, and
    // that is what a JSON consumer should see (not 0.10000000149011612).
    assert_eq!(echo("echo-f32", json!(0.1)).await, json!(0.1));
    assert_eq!(echo("echo-f32", json!(3.3)).await, json!(3.3));
}

#[tokio::test]
async fn chars_round_trip_including_non_ascii() {
    for c in ["a", "é", "世", "🦀"] {
        round_trips("echo-char", json!(c)).await;
    }
}

#[tokio::test]
async fn strings_round_trip_with_unicode_and_escapes() {
    round_trips("echo-string", json!("")).await;
    round_trips(
        "echo-string",
        json!("héllo, 世界 🦀\n\t\"quoted\" \\ \u{0}"),
    )
    .await;
}

#[tokio::test]
async fn lists_round_trip() {
    round_trips("echo-list", json!([1, 2, u32::MAX])).await;
    round_trips("echo-list", json!([])).await;
}

#[tokio::test]
async fn tuples_round_trip_as_arrays() {
    round_trips("echo-tuple", json!(["a", 7, true])).await;
}

#[tokio::test]
async fn records_round_trip_as_objects() {
    let p = json!({"x": -3, "y": 4, "label": "home"});
    assert_eq!(ok("showcase", "echo-point", json!({ "p": p })).await, p);
}

#[tokio::test]
async fn absent_optional_record_field_comes_back_null() {
    let back = ok("showcase", "echo-point", json!({"p": {"x": 1, "y": 2}})).await;
    assert_eq!(back, json!({"x": 1, "y": 2, "label": null}));
    let back = ok(
        "showcase",
        "echo-point",
        json!({"p": {"x": 1, "y": 2, "label": null}}),
    )
    .await;
    assert_eq!(back, json!({"x": 1, "y": 2, "label": null}));
}

#[tokio::test]
async fn variants_with_payload_are_single_key_objects() {
    round_trips("echo-shape", json!({"circle": 2.5})).await;
    round_trips("echo-shape", json!({"square": 0.5})).await;
}

#[tokio::test]
async fn variants_without_payload_are_strings() {
    round_trips("echo-shape", json!("empty")).await;
    assert_eq!(
        echo("echo-shape", json!({"empty": null})).await,
        json!("empty")
    );
}

#[tokio::test]
async fn enums_are_strings_matched_in_snake_or_kebab_case() {
    round_trips("echo-color", json!("red")).await;
    round_trips("echo-color", json!("light-blue")).await;
    assert_eq!(
        echo("echo-color", json!("light_blue")).await,
        json!("light-blue")
    );
}

#[tokio::test]
async fn flags_are_arrays_of_names_in_declaration_order() {
    round_trips("echo-perms", json!(["read", "exec"])).await;
    round_trips("echo-perms", json!([])).await;
    assert_eq!(
        echo("echo-perms", json!(["exec", "read", "exec"])).await,
        json!(["read", "exec"])
    );
}

#[tokio::test]
async fn options_are_null_or_the_value() {
    round_trips("echo-option", json!(5)).await;
    round_trips("echo-option", json!(null)).await;
}

#[tokio::test]
async fn absent_option_kwarg_is_none() {
    assert_eq!(ok("showcase", "echo-option", json!({})).await, json!(null));
}

#[tokio::test]
async fn result_ok_is_the_call_result() {
    // A top-level result is the task's verdict: `ok` is unwrapped.
    assert_eq!(echo("echo-result", json!({"ok": 3})).await, json!(3));
}

#[tokio::test]
async fn result_err_fails_the_call_with_the_err_payload() {
    let error = fails("showcase", "echo-result", json!({"v": {"err": "it broke"}})).await;
    assert!(
        matches!(&error, CallError::Guest { payload, .. } if *payload == json!("it broke")),
        "{error:?}"
    );
    assert!(error.to_string().contains("it broke"), "{error}");
}

#[tokio::test]
async fn nested_lists_of_records_round_trip() {
    let v = json!([{"x": 1, "y": 2, "label": "a"}, {"x": 3, "y": 4}]);
    assert_eq!(
        echo("echo-nested", v).await,
        json!([{"x": 1, "y": 2, "label": "a"}, {"x": 3, "y": 4, "label": null}])
    );
}

#[tokio::test]
async fn multiple_parameters_are_taken_by_name() {
    let all = json!({"tags": ["a", "b"], "nickname": "annie", "age": 7, "name": "ann"});
    assert_eq!(
        ok("showcase", "describe", all).await,
        json!("name=ann;age=7;nickname=annie;tags=a,b")
    );
}

#[tokio::test]
async fn absent_option_among_multiple_parameters_is_none() {
    let no_nickname = json!({"name": "ann", "age": 7, "tags": []});
    assert_eq!(
        ok("showcase", "describe", no_nickname).await,
        json!("name=ann;age=7;nickname=;tags=")
    );
}

#[tokio::test]
async fn byte_lists_are_arrays_of_numbers() {
    let data = json!({"data": [1, 2, 255, 0]});
    assert_eq!(ok("showcase", "sum-bytes", data).await, json!(258));
}

#[tokio::test]
async fn functions_without_result_return_null() {
    assert_eq!(ok("showcase", "noop", json!({})).await, json!(null));
}

#[tokio::test]
async fn interface_functions_are_named_interface_dot_function() {
    assert_eq!(
        ok("showcase", "math.add", json!({"a": 2, "b": 40})).await,
        json!(42)
    );
    // Wrapping on overflow, computed by the guest.
    assert_eq!(
        ok("showcase", "math.add", json!({"a": i64::MAX, "b": 1})).await,
        json!(i64::MIN)
    );
}

#[tokio::test]
async fn interface_functions_are_reachable_by_their_short_name() {
    assert_eq!(
        ok("showcase", "add", json!({"a": -2, "b": -3})).await,
        json!(-5)
    );
}

#[tokio::test]
async fn snake_case_task_names_find_kebab_case_exports() {
    assert_eq!(ok("showcase", "echo_u8", json!({"v": 9})).await, json!(9));
    assert_eq!(
        ok("showcase", "sum_bytes", json!({"data": [1]})).await,
        json!(1)
    );
}

#[tokio::test]
async fn snake_case_kwargs_keys_find_kebab_case_parameters() {
    let snake = json!({"first_name": "Ada", "last_name": "Lovelace"});
    assert_eq!(
        ok("showcase", "full-name", snake).await,
        json!("Ada Lovelace")
    );
    let kebab = json!({"first-name": "Ada", "last-name": "Lovelace"});
    assert_eq!(
        ok("showcase", "full_name", kebab).await,
        json!("Ada Lovelace")
    );
    let absent = json!({"first_name": "Ada"});
    assert_eq!(ok("showcase", "full_name", absent).await, json!("Ada"));
}

#[tokio::test]
async fn integer_above_range_names_the_argument() {
    let message = mismatch("echo-u8", json!({"v": 256}), "v", "u8").await;
    assert!(message.contains("out of range"), "{message}");
}

#[tokio::test]
async fn integer_below_range_names_the_argument() {
    let message = mismatch("echo-s8", json!({"v": -129}), "v", "s8").await;
    assert!(message.contains("out of range"), "{message}");
}

#[tokio::test]
async fn negative_into_unsigned_names_the_argument() {
    let message = mismatch("echo-u64", json!({"v": -1}), "v", "u64").await;
    assert!(message.contains("out of range"), "{message}");
}

#[tokio::test]
async fn fraction_into_integer_names_the_argument() {
    let message = mismatch("echo-u32", json!({"v": 1.5}), "v", "u32").await;
    assert!(message.contains("fraction"), "{message}");
}

#[tokio::test]
async fn f32_out_of_range_names_the_argument() {
    let message = mismatch("echo-f32", json!({"v": 1e39}), "v", "f32").await;
    assert!(message.contains("out of range"), "{message}");
}

#[tokio::test]
async fn string_into_integer_names_the_argument() {
    let message = mismatch("echo-u32", json!({"v": "5"}), "v", "u32").await;
    assert!(message.contains("got string \"5\""), "{message}");
}

#[tokio::test]
async fn number_into_string_names_the_argument() {
    let message = mismatch("echo-string", json!({"v": 5}), "v", "string").await;
    assert!(message.contains("got number 5"), "{message}");
}

#[tokio::test]
async fn object_into_list_names_the_argument() {
    let message = mismatch("echo-list", json!({"v": {"a": 1}}), "v", "list<u32>").await;
    assert!(message.contains("got object"), "{message}");
}

#[tokio::test]
async fn bad_record_field_names_its_path() {
    mismatch(
        "echo-point",
        json!({"p": {"x": "one", "y": 2}}),
        "p.x",
        "s32",
    )
    .await;
}

#[tokio::test]
async fn missing_record_field_names_its_path() {
    let (error, message) = bad_kwargs("echo-point", json!({"p": {"x": 1}})).await;
    assert_eq!(error.path, "p.y", "{message}");
    assert!(
        matches!(error.kind, ArgErrorKind::Missing { .. }),
        "{message}"
    );
    assert!(
        message.contains("`p.y` is missing (expected s32)"),
        "{message}"
    );
}

#[tokio::test]
async fn unknown_record_field_names_its_path() {
    let (error, message) = bad_kwargs("echo-point", json!({"p": {"x": 1, "y": 2, "z": 3}})).await;
    assert_eq!(error.path, "p.z", "{message}");
    assert!(message.contains("x, y, label"), "{message}");
}

#[tokio::test]
async fn bad_list_item_names_its_index() {
    mismatch("echo-list", json!({"v": [1, "two", 3]}), "v[1]", "u32").await;
}

#[tokio::test]
async fn bad_item_deep_in_nested_lists_names_the_whole_path() {
    let v = json!([{"x": 1, "y": 2}, {"x": 1, "y": 2, "label": 7}]);
    // Inside an option the expected type named is the option's payload.
    mismatch("echo-nested", json!({ "v": v }), "v[1].label", "string").await;
}

#[tokio::test]
async fn out_of_range_byte_names_its_index() {
    let message = mismatch("sum-bytes", json!({"data": [1, 300]}), "data[1]", "u8").await;
    assert!(message.contains("out of range"), "{message}");
}

#[tokio::test]
async fn unknown_kwarg_is_named_with_the_known_ones() {
    let kwargs = json!({"name": "ann", "age": 7, "tags": [], "colour": "red"});
    let (error, message) = bad_kwargs("describe", kwargs).await;
    assert_eq!(error.path, "colour", "{message}");
    assert!(
        matches!(&error.kind, ArgErrorKind::Unknown { known } if known == &["name", "age", "nickname", "tags"]),
        "{message}"
    );
    assert!(message.contains("unknown argument `colour`"), "{message}");
    assert!(message.contains("name, age, nickname, tags"), "{message}");
}

#[tokio::test]
async fn missing_required_kwarg_is_named_with_its_type() {
    let (error, message) = bad_kwargs("describe", json!({"name": "ann", "tags": []})).await;
    assert_eq!(error.path, "age", "{message}");
    assert!(
        matches!(&error.kind, ArgErrorKind::Missing { expected } if expected == "u8"),
        "{message}"
    );
    assert!(
        message.contains("argument `age` is missing (expected u8)"),
        "{message}"
    );
}

#[tokio::test]
async fn unknown_task_lists_the_available_ones() {
    let error = refused("showcase", "echo-u128", json!({"v": 1})).await;
    let message = error.to_string();
    let CallError::UnknownTask { task, available } = error else {
        panic!("expected an unknown task, got {message}");
    };
    assert_eq!(task, "echo-u128");
    for expected in ["echo-u8", "describe", "math.add"] {
        assert!(
            available.iter().any(|a| a == expected),
            "{available:?} lacks {expected}"
        );
    }
    assert!(message.contains("`echo-u128`"), "{message}");
    assert!(message.contains("echo-u8, "), "{message}");
    assert!(message.contains("math.add"), "{message}");
}

#[tokio::test]
async fn multi_character_string_into_char_names_the_argument() {
    let message = mismatch("echo-char", json!({"v": "ab"}), "v", "char").await;
    assert!(message.contains("exactly one character"), "{message}");
}

#[tokio::test]
async fn empty_string_into_char_names_the_argument() {
    mismatch("echo-char", json!({"v": ""}), "v", "char").await;
}

#[tokio::test]
async fn unknown_enum_case_names_the_argument_and_the_cases() {
    let message = mismatch(
        "echo-color",
        json!({"v": "purple"}),
        "v",
        "enum { red, green, light-blue }",
    )
    .await;
    assert!(message.contains("no case `purple`"), "{message}");
}

#[tokio::test]
async fn variant_case_without_its_payload_names_the_argument() {
    let message = mismatch(
        "echo-shape",
        json!({"v": "circle"}),
        "v",
        "variant { circle(f64), square(f64), empty }",
    )
    .await;
    assert!(
        message.contains("case `circle` needs a payload"),
        "{message}"
    );
}

#[tokio::test]
async fn unknown_variant_case_names_the_argument() {
    let message = mismatch(
        "echo-shape",
        json!({"v": {"triangle": 1.0}}),
        "v",
        "variant { circle(f64), square(f64), empty }",
    )
    .await;
    assert!(message.contains("no case `triangle`"), "{message}");
}

#[tokio::test]
async fn bad_variant_payload_names_the_case_path() {
    mismatch(
        "echo-shape",
        json!({"v": {"circle": "big"}}),
        "v.circle",
        "f64",
    )
    .await;
}

#[tokio::test]
async fn unknown_flag_names_the_argument() {
    let message = mismatch(
        "echo-perms",
        json!({"v": ["read", "delete"]}),
        "v",
        "flags { read, write, exec }",
    )
    .await;
    assert!(message.contains("no flag `delete`"), "{message}");
}

#[tokio::test]
async fn result_needs_ok_or_err() {
    mismatch(
        "echo-result",
        json!({"v": {"fine": 1}}),
        "v",
        "result<u32, string>",
    )
    .await;
}

#[tokio::test]
async fn tuple_of_wrong_length_names_the_argument() {
    let message = mismatch(
        "echo-tuple",
        json!({"v": ["a", 1]}),
        "v",
        "tuple<string, u32, bool>",
    )
    .await;
    assert!(message.contains("exactly 3 items"), "{message}");
}

#[tokio::test]
async fn null_for_a_required_value_names_the_argument() {
    let message = mismatch("echo-bool", json!({"v": null}), "v", "bool").await;
    assert!(message.contains("got null"), "{message}");
}
