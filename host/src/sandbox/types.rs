//! Describes WIT types for people and tools: the WIT-like text used in
//! `runner inspect` and in conversion errors, and a JSON Schema per type for
//! `runner inspect --json`.

use serde_json::{Value, json};
use wasmtime::component::types::Type;

/// Renders `ty` as WIT source would spell it (records, variants, enums and
/// flags inline, since a component keeps no type names).
pub fn wit_name(ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(l) => format!("list<{}>", wit_name(&l.ty())),
        Type::FixedLengthList(l) => format!("list<{}, {}>", wit_name(&l.ty()), l.len()),
        Type::Map(m) => format!("map<{}, {}>", wit_name(&m.key()), wit_name(&m.value())),
        Type::Record(r) => {
            let fields: Vec<String> = r
                .fields()
                .map(|f| format!("{}: {}", f.name, wit_name(&f.ty)))
                .collect();
            format!("record {{ {} }}", fields.join(", "))
        }
        Type::Tuple(t) => {
            let types: Vec<String> = t.types().map(|t| wit_name(&t)).collect();
            format!("tuple<{}>", types.join(", "))
        }
        Type::Variant(v) => {
            let cases: Vec<String> = v
                .cases()
                .map(|c| match &c.ty {
                    Some(ty) => format!("{}({})", c.name, wit_name(ty)),
                    None => c.name.to_string(),
                })
                .collect();
            format!("variant {{ {} }}", cases.join(", "))
        }
        Type::Enum(e) => format!("enum {{ {} }}", e.names().collect::<Vec<_>>().join(", ")),
        Type::Flags(f) => format!("flags {{ {} }}", f.names().collect::<Vec<_>>().join(", ")),
        Type::Option(o) => format!("option<{}>", wit_name(&o.ty())),
        Type::Result(r) => {
            let part = |t: Option<Type>| t.map_or_else(|| "_".to_string(), |t| wit_name(&t));
            match (r.ok(), r.err()) {
                (None, None) => "result".into(),
                (ok, err) => format!("result<{}, {}>", part(ok), part(err)),
            }
        }
        Type::Own(_) => "own<resource>".into(),
        Type::Borrow(_) => "borrow<resource>".into(),
        Type::Future(_) => "future".into(),
        Type::Stream(_) => "stream".into(),
        Type::ErrorContext => "error-context".into(),
    }
}

/// Why a type cannot cross the JSON boundary, or `None` when it can.
///
/// Resources, futures, streams and error contexts live in the guest's
/// store; JSON can neither carry nor return them.
pub fn unsupported(ty: &Type) -> Option<String> {
    let inner = |ty: &Type| unsupported(ty);
    match ty {
        Type::Own(_) | Type::Borrow(_) => Some("resource handles".into()),
        Type::Future(_) => Some("futures".into()),
        Type::Stream(_) => Some("streams".into()),
        Type::ErrorContext => Some("error contexts".into()),
        Type::List(l) => inner(&l.ty()),
        Type::FixedLengthList(l) => inner(&l.ty()),
        Type::Map(m) => inner(&m.key()).or_else(|| inner(&m.value())),
        Type::Record(r) => r.fields().find_map(|f| inner(&f.ty)),
        Type::Tuple(t) => t.types().find_map(|t| inner(&t)),
        Type::Variant(v) => v.cases().find_map(|c| c.ty.as_ref().and_then(inner)),
        Type::Option(o) => inner(&o.ty()),
        Type::Result(r) => r
            .ok()
            .and_then(|t| inner(&t))
            .or_else(|| r.err().and_then(|t| inner(&t))),
        _ => None,
    }
}

/// JSON Schemas of what a task returning `ty` answers: its result (`null`
/// when it returns nothing) and the `err` value it may fail with (`null`
/// when it cannot return one). A top-level `result<T, E>` is the task's
/// verdict, not a value: its result is `T` unwrapped and its error `E`.
pub fn reply_schemas(ty: Option<&Type>) -> (Value, Value) {
    let side = |t: Option<Type>| t.map_or(json!({"type": "null"}), |t| json_schema(&t));
    match ty {
        None => (json!({"type": "null"}), Value::Null),
        Some(Type::Result(r)) => (side(r.ok()), side(r.err())),
        Some(ty) => (json_schema(ty), Value::Null),
    }
}

/// A JSON Schema (draft 2020-12 vocabulary) for the JSON form of `ty`.
pub fn json_schema(ty: &Type) -> Value {
    let int = |min: i128, max: i128| json!({"type": "integer", "minimum": min, "maximum": max});
    match ty {
        Type::Bool => json!({"type": "boolean"}),
        Type::S8 => int(i8::MIN.into(), i8::MAX.into()),
        Type::U8 => int(0, u8::MAX.into()),
        Type::S16 => int(i16::MIN.into(), i16::MAX.into()),
        Type::U16 => int(0, u16::MAX.into()),
        Type::S32 => int(i32::MIN.into(), i32::MAX.into()),
        Type::U32 => int(0, u32::MAX.into()),
        Type::S64 => int(i64::MIN.into(), i64::MAX.into()),
        Type::U64 => int(0, u64::MAX.into()),
        Type::Float32 | Type::Float64 => json!({"type": "number"}),
        Type::Char => json!({"type": "string", "minLength": 1, "maxLength": 1}),
        Type::String => json!({"type": "string"}),
        Type::List(l) => json!({"type": "array", "items": json_schema(&l.ty())}),
        Type::FixedLengthList(l) => json!({
            "type": "array", "items": json_schema(&l.ty()),
            "minItems": l.len(), "maxItems": l.len(),
        }),
        Type::Map(m) => json!({
            "type": "array",
            "items": {"type": "array", "prefixItems": [json_schema(&m.key()), json_schema(&m.value())]},
        }),
        Type::Record(r) => {
            let mut props = serde_json::Map::new();
            let mut required = Vec::new();
            for f in r.fields() {
                if !matches!(f.ty, Type::Option(_)) {
                    required.push(Value::from(f.name));
                }
                props.insert(f.name.to_string(), json_schema(&f.ty));
            }
            json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
        }
        Type::Tuple(t) => {
            let items: Vec<Value> = t.types().map(|t| json_schema(&t)).collect();
            let n = items.len();
            json!({"type": "array", "prefixItems": items, "minItems": n, "maxItems": n})
        }
        Type::Variant(v) => {
            let one_of: Vec<Value> = v
                .cases()
                .map(|c| match &c.ty {
                    Some(ty) => json!({
                        "type": "object", "properties": {c.name: json_schema(ty)},
                        "required": [c.name], "additionalProperties": false,
                    }),
                    None => json!({"const": c.name}),
                })
                .collect();
            json!({"oneOf": one_of})
        }
        Type::Enum(e) => json!({"type": "string", "enum": e.names().collect::<Vec<_>>()}),
        Type::Flags(f) => json!({
            "type": "array", "uniqueItems": true,
            "items": {"type": "string", "enum": f.names().collect::<Vec<_>>()},
        }),
        Type::Option(o) => json!({"anyOf": [{"type": "null"}, json_schema(&o.ty())]}),
        Type::Result(r) => {
            let side = |t: Option<Type>| t.map_or(json!({"type": "null"}), |t| json_schema(&t));
            json!({"oneOf": [
                {"type": "object", "properties": {"ok": side(r.ok())}, "required": ["ok"], "additionalProperties": false},
                {"type": "object", "properties": {"err": side(r.err())}, "required": ["err"], "additionalProperties": false},
            ]})
        }
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            json!(false)
        }
    }
}
