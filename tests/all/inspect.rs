//! `runner inspect --json` tells the truth about replies: for every export
//! of showcase (every WIT type), what `runner call` really prints — the
//! `ok` value, or the `err` value of a task that returned `err` — fits the
//! JSON Schema inspect gives for it (`result`, `error`), checked by a real
//! JSON Schema validator; and the validator does reject a value that does
//! not fit, so the check can fail. And inspect shows the WIT doc comments
//! of a component that carries them.

use std::collections::BTreeSet;
use std::path::Path;

use jsonschema::Validator;
use serde_json::{Value, json};
use wit_parser::decoding::{DecodedWasm, decode};
use wit_parser::{PackageMetadata, Resolve, WorldItem, WorldKey};

use crate::support::{assert_exit, runner, runner_call, stdout, wasm};
use crate::worker_support::TempDir;

/// `runner inspect showcase.wasm --json`'s `tasks`.
fn showcase_tasks() -> serde_json::Map<String, Value> {
    let output = runner()
        .arg("inspect")
        .arg(wasm("showcase"))
        .arg("--json")
        .output()
        .expect("failed to run runner");
    assert_exit(&output, 0);
    let doc: Value = serde_json::from_slice(&output.stdout).expect("inspect --json prints JSON");
    match doc["tasks"].clone() {
        Value::Object(tasks) => tasks,
        other => panic!("`tasks` is not an object: {other}"),
    }
}

/// A draft 2020-12 validator for `schema`, which must itself be valid.
fn validator(schema: &Value) -> Validator {
    jsonschema::draft202012::new(schema)
        .unwrap_or_else(|e| panic!("inspect gave an invalid schema {schema}: {e}"))
}

/// Panics with the validator's reasons unless `value` fits `schema`.
fn assert_fits(what: &str, schema: &Value, value: &Value) {
    let reasons: Vec<String> = validator(schema)
        .iter_errors(value)
        .map(|e| e.to_string())
        .collect();
    assert!(
        reasons.is_empty(),
        "{what}: {value} does not fit {schema}: {reasons:?}"
    );
}

/// How a call ends: with its `ok` value, or with `err` (exit code 3).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ends {
    Ok,
    Err,
}

/// Valid kwargs for every showcase export, some more than once (each case
/// of a variant, `ok` and `err` of a result).
fn cases() -> Vec<(&'static str, Value, Ends)> {
    use Ends::{Err, Ok};
    vec![
        ("echo-bool", json!({"v": true}), Ok),
        ("echo-u8", json!({"v": u8::MAX}), Ok),
        ("echo-u16", json!({"v": u16::MAX}), Ok),
        ("echo-u32", json!({"v": u32::MAX}), Ok),
        ("echo-u64", json!({"v": u64::MAX}), Ok),
        ("echo-s8", json!({"v": i8::MIN}), Ok),
        ("echo-s16", json!({"v": i16::MIN}), Ok),
        ("echo-s32", json!({"v": i32::MIN}), Ok),
        ("echo-s64", json!({"v": i64::MIN}), Ok),
        ("echo-f32", json!({"v": 1.5}), Ok),
        ("echo-f64", json!({"v": -2.25}), Ok),
        ("echo-char", json!({"v": "é"}), Ok),
        ("echo-string", json!({"v": "line\n\"two\""}), Ok),
        ("echo-list", json!({"v": [1, 2, 3]}), Ok),
        ("echo-tuple", json!({"v": ["a", 1, true]}), Ok),
        ("echo-point", json!({"p": {"x": 1, "y": -2}}), Ok),
        ("echo-shape", json!({"v": {"circle": 1.5}}), Ok),
        ("echo-shape", json!({"v": "empty"}), Ok),
        ("echo-color", json!({"v": "light-blue"}), Ok),
        ("echo-perms", json!({"v": ["read", "exec"]}), Ok),
        ("echo-option", json!({"v": null}), Ok),
        ("echo-option", json!({"v": 7}), Ok),
        ("echo-result", json!({"v": {"ok": 3}}), Ok),
        ("echo-result", json!({"v": {"err": "no"}}), Err),
        (
            "echo-nested",
            json!({"v": [{"x": 1, "y": 2, "label": "a"}, {"x": 3, "y": 4}]}),
            Ok,
        ),
        (
            "describe",
            json!({"name": "ann", "age": 7, "tags": ["a", "b"]}),
            Ok,
        ),
        ("full-name", json!({"first-name": "Ann"}), Ok),
        ("sum-bytes", json!({"data": [1, 2, 255]}), Ok),
        ("noop", json!({}), Ok),
        ("math.add", json!({"a": 2, "b": -3}), Ok),
        ("place", json!({"p": {"x": 1, "y": 2, "label": "near"}}), Ok),
        ("place", json!({"p": {"x": 10, "y": 2}}), Err),
        ("place", json!({"p": {"x": 1, "y": 2}}), Err),
    ]
}

#[test]
fn every_showcase_reply_fits_the_schema_inspect_gives() {
    let tasks = showcase_tasks();
    let covered: BTreeSet<&str> = cases().iter().map(|(task, ..)| *task).collect();
    let listed: BTreeSet<&str> = tasks.keys().map(String::as_str).collect();
    assert_eq!(covered, listed, "every export needs a case here");

    for (task, kwargs, ends) in cases() {
        let described = &tasks[task];
        assert_fits(&format!("{task} kwargs"), &described["kwargs"], &kwargs);
        let output = runner_call(&wasm("showcase"), task, &kwargs.to_string(), &[]);
        let (code, schema) = match ends {
            Ends::Ok => (0, &described["result"]),
            Ends::Err => (3, &described["error"]),
        };
        assert_exit(&output, code);
        let printed: Value = serde_json::from_str(&stdout(&output))
            .unwrap_or_else(|e| panic!("{task}: stdout is not JSON ({e})"));
        assert!(schema.is_object(), "{task}: no schema for {printed}");
        assert_fits(task, schema, &printed);
    }
}

#[test]
fn the_validator_rejects_a_value_that_does_not_fit() {
    let tasks = showcase_tasks();
    // Each schema accepts its first value and refuses the second.
    let pairs = [
        ("echo-u8", "result", json!(255), json!(256)),
        ("echo-char", "result", json!("é"), json!("ab")),
        (
            "echo-point",
            "result",
            json!({"x": 1, "y": 2, "label": null}),
            json!({"x": 1}),
        ),
        (
            "echo-shape",
            "result",
            json!("empty"),
            json!({"circle": "big"}),
        ),
        (
            "echo-color",
            "result",
            json!("light-blue"),
            json!("light_blue"),
        ),
        ("echo-result", "result", json!(3), json!({"ok": 3})),
        ("echo-result", "error", json!("no"), json!({"err": "no"})),
        (
            "place",
            "error",
            json!("unlabelled"),
            json!({"off-grid": 5}),
        ),
        ("noop", "result", Value::Null, json!(0)),
    ];
    for (task, side, fits, does_not) in pairs {
        let schema = &tasks[task][side];
        let validator = validator(schema);
        assert!(
            validator.is_valid(&fits),
            "{task} {side}: {fits} vs {schema}"
        );
        assert!(
            !validator.is_valid(&does_not),
            "{task} {side}: {does_not} passed {schema}"
        );
    }
    // A task that cannot return `err` has no error schema.
    assert_eq!(tasks["echo-u8"]["error"], Value::Null);
}

/// `component` with the doc comments of showcase's `world.wit` in a
/// `package-docs` section, as a toolchain that kept them would write it:
/// keyed by the world the component decodes to. (wasm-component-ld, which
/// builds showcase, drops them.)
fn with_showcase_docs(component: &[u8]) -> Vec<u8> {
    let wit = concat!(env!("CARGO_MANIFEST_DIR"), "/../tasks/showcase/wit");
    let mut source = Resolve::default();
    let (package, _) = source
        .push_dir(Path::new(wit))
        .expect("showcase's WIT parses");
    let world = source
        .select_world(&[package], Some("showcase"))
        .expect("showcase's world");
    let Ok(DecodedWasm::Component(mut resolve, root)) = decode(component) else {
        panic!("showcase.wasm does not decode as a component");
    };
    for item in resolve.worlds[root].exports.values_mut() {
        if let WorldItem::Function(f) = item {
            let key = WorldKey::Name(f.name.clone());
            if let Some(WorldItem::Function(documented)) = source.worlds[world].exports.get(&key) {
                f.docs = documented.docs.clone();
            }
        }
    }
    let package = resolve.worlds[root]
        .package
        .expect("the root world's package");
    let data = PackageMetadata::extract(&resolve, package)
        .encode()
        .expect("docs encode");
    let mut out = component.to_vec();
    // A custom section may close a component: its id, then size and name.
    out.push(0);
    wasm_encoder::Encode::encode(
        &wasm_encoder::CustomSection {
            name: PackageMetadata::SECTION_NAME.into(),
            data: data.into(),
        },
        &mut out,
    );
    out
}

#[test]
fn inspect_shows_the_doc_comments_a_component_carries() {
    let dir = TempDir::new("docs");
    let documented = dir.path().join("showcase-docs.wasm");
    let bytes = std::fs::read(wasm("showcase")).unwrap();
    std::fs::write(&documented, with_showcase_docs(&bytes)).unwrap();

    let output = runner()
        .arg("inspect")
        .arg(&documented)
        .output()
        .expect("failed to run runner");
    assert_exit(&output, 0);
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let place = lines
        .iter()
        .position(|l| l.starts_with("place: func("))
        .unwrap_or_else(|| panic!("no `place` in {text}"));
    // `/// Places `p` on the grid: returns it when it has a label and ...`
    assert!(
        lines[place + 1].starts_with("Places `p` on the grid"),
        "{text}"
    );

    let output = runner()
        .args(["inspect", "--json"])
        .arg(&documented)
        .output()
        .expect("failed to run runner");
    assert_exit(&output, 0);
    let doc: Value = serde_json::from_slice(&output.stdout).unwrap();
    let docs = doc["tasks"]["describe"]["docs"]
        .as_str()
        .unwrap_or_default();
    assert!(docs.contains("Several parameters"), "{doc}");
    assert_eq!(doc["tasks"]["echo-u8"]["docs"], "Returns `v`.");

    // The component as built carries none.
    let tasks = showcase_tasks();
    assert_eq!(tasks["place"]["docs"], Value::Null);
}
