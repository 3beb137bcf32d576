//! JSON <-> WIT values, one rule set in both directions (the README's
//! "JSON ↔ WIT" table). Going in, every mismatch names the argument path, the
//! WIT type expected and what came; coming out cannot fail.

use serde_json::{Map, Number, Value};
use wasmtime::component::Val;
use wasmtime::component::types::Type;

use super::types::wit_name;

/// A JSON value that does not fit a WIT parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ArgError {
    /// Where: the parameter name, then `.field`, `[index]` or `.case` steps.
    pub path: String,
    /// What went wrong.
    pub kind: ArgErrorKind,
}

/// What is wrong with an argument.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArgErrorKind {
    /// A required parameter (or record field) is absent.
    Missing {
        /// The WIT type it should have had.
        expected: String,
    },
    /// A kwarg (or object key) that the signature does not have.
    Unknown {
        /// The names that would have been accepted.
        known: Vec<String>,
    },
    /// A value of the wrong JSON type, out of range, or not one of the cases.
    Mismatch {
        /// The WIT type expected.
        expected: String,
        /// A short rendering of the JSON that came.
        got: String,
        /// Extra detail ("out of range", "a fraction", ...), may be empty.
        detail: String,
    },
}

impl ArgError {
    fn render(&self) -> String {
        match &self.kind {
            ArgErrorKind::Missing { expected } => {
                format!("argument `{}` is missing (expected {expected})", self.path)
            }
            ArgErrorKind::Unknown { known } => format!(
                "unknown argument `{}` (expected one of: {})",
                self.path,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
            ArgErrorKind::Mismatch {
                expected,
                got,
                detail,
            } if detail.is_empty() => {
                format!("argument `{}`: expected {expected}, got {got}", self.path)
            }
            ArgErrorKind::Mismatch {
                expected,
                got,
                detail,
            } => {
                format!(
                    "argument `{}`: expected {expected}, got {got} ({detail})",
                    self.path
                )
            }
        }
    }
}

/// Matches names written in snake_case or kebab-case: `task_one` == `task-one`.
pub fn same_name(wit: &str, given: &str) -> bool {
    wit.len() == given.len()
        && wit
            .bytes()
            .zip(given.bytes())
            .all(|(a, b)| a == b || (a == b'-' && b == b'_'))
}

/// Converts a job's kwargs into the parameter list of a function.
///
/// An absent `option<T>` parameter is `none`; every other absent parameter,
/// and every kwarg the function does not have, is an error.
///
/// # Errors
///
/// The first argument that does not fit, with its path.
pub fn kwargs_to_params(
    params: &[(String, Type)],
    kwargs: &Map<String, Value>,
) -> Result<Vec<Val>, ArgError> {
    if let Some(unknown) = kwargs
        .keys()
        .find(|k| !params.iter().any(|(name, _)| same_name(name, k)))
    {
        return Err(ArgError {
            path: unknown.clone(),
            kind: ArgErrorKind::Unknown {
                known: params.iter().map(|(n, _)| n.clone()).collect(),
            },
        });
    }
    params
        .iter()
        .map(|(name, ty)| match lookup(kwargs, name) {
            Some(value) => to_val(value, ty, name),
            None if matches!(ty, Type::Option(_)) => Ok(Val::Option(None)),
            None => Err(ArgError {
                path: name.clone(),
                kind: ArgErrorKind::Missing {
                    expected: wit_name(ty),
                },
            }),
        })
        .collect()
}

fn lookup<'a>(object: &'a Map<String, Value>, wit: &str) -> Option<&'a Value> {
    object.get(wit).or_else(|| {
        object
            .iter()
            .find(|(k, _)| same_name(wit, k))
            .map(|(_, v)| v)
    })
}

fn mismatch(path: &str, ty: &Type, got: &Value, detail: &str) -> ArgError {
    ArgError {
        path: path.to_string(),
        kind: ArgErrorKind::Mismatch {
            expected: wit_name(ty),
            got: describe(got),
            detail: detail.to_string(),
        },
    }
}

/// A short, bounded rendering of a JSON value for error messages.
fn describe(value: &Value) -> String {
    let kind = match value {
        Value::Null => return "null".into(),
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let mut text = value.to_string();
    if text.len() > 40 {
        text.truncate(text.floor_char_boundary(37));
        text.push_str("...");
    }
    format!("{kind} {text}")
}

fn int_in(value: &Value, min: i128, max: i128) -> Result<i128, &'static str> {
    let Value::Number(n) = value else {
        return Err("");
    };
    let wide = if let Some(i) = n.as_i64() {
        i128::from(i)
    } else if let Some(u) = n.as_u64() {
        i128::from(u)
    } else {
        let f = n.as_f64().ok_or("")?;
        if f.fract() != 0.0 {
            return Err("a fraction cannot become an integer");
        }
        if f < min as f64 || f > max as f64 {
            return Err("out of range");
        }
        f as i128
    };
    if wide < min || wide > max {
        return Err("out of range");
    }
    Ok(wide)
}

/// Converts one JSON value to a WIT value of type `ty`; `path` names it in errors.
///
/// # Errors
///
/// When `value` does not fit `ty`.
pub fn to_val(value: &Value, ty: &Type, path: &str) -> Result<Val, ArgError> {
    let err = |detail: &str| mismatch(path, ty, value, detail);
    macro_rules! int {
        ($variant:ident, $t:ty) => {
            int_in(value, <$t>::MIN.into(), <$t>::MAX.into())
                .map(|i| Val::$variant(i as $t))
                .map_err(|d| err(d))
        };
    }
    match ty {
        Type::Bool => value.as_bool().map(Val::Bool).ok_or_else(|| err("")),
        Type::S8 => int!(S8, i8),
        Type::U8 => int!(U8, u8),
        Type::S16 => int!(S16, i16),
        Type::U16 => int!(U16, u16),
        Type::S32 => int!(S32, i32),
        Type::U32 => int!(U32, u32),
        Type::S64 => int!(S64, i64),
        Type::U64 => int!(U64, u64),
        Type::Float32 => match value.as_f64() {
            // Out of range is what rounds to infinity: 3.4028235e38, the
            // shortest form of f32::MAX, is a hair above it and still fits.
            Some(f) if (f as f32).is_infinite() => Err(err("out of range")),
            Some(f) => Ok(Val::Float32(f as f32)),
            None => Err(err("")),
        },
        Type::Float64 => value.as_f64().map(Val::Float64).ok_or_else(|| err("")),
        Type::Char => {
            let s = value.as_str().ok_or_else(|| err(""))?;
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Ok(Val::Char(c)),
                _ => Err(err("a char is a string of exactly one character")),
            }
        }
        Type::String => value
            .as_str()
            .map(|s| Val::String(s.to_string()))
            .ok_or_else(|| err("")),
        Type::List(l) => {
            let items = value.as_array().ok_or_else(|| err(""))?;
            items_to_vals(items, &l.ty(), path).map(Val::List)
        }
        Type::FixedLengthList(l) => {
            let items = value.as_array().ok_or_else(|| err(""))?;
            if items.len() != l.len() as usize {
                return Err(err(&format!("needs exactly {} items", l.len())));
            }
            items_to_vals(items, &l.ty(), path).map(Val::FixedLengthList)
        }
        Type::Map(m) => {
            let pairs = value
                .as_array()
                .ok_or_else(|| err("a map is an array of [key, value] pairs"))?;
            let (kt, vt) = (m.key(), m.value());
            pairs
                .iter()
                .enumerate()
                .map(|(i, pair)| match pair.as_array().map(Vec::as_slice) {
                    Some([k, v]) => Ok((
                        to_val(k, &kt, &format!("{path}[{i}][0]"))?,
                        to_val(v, &vt, &format!("{path}[{i}][1]"))?,
                    )),
                    _ => Err(err("a map is an array of [key, value] pairs")),
                })
                .collect::<Result<_, _>>()
                .map(Val::Map)
        }
        Type::Record(r) => {
            let object = value.as_object().ok_or_else(|| err(""))?;
            if let Some(unknown) = object
                .keys()
                .find(|k| !r.fields().any(|f| same_name(f.name, k)))
            {
                return Err(ArgError {
                    path: format!("{path}.{unknown}"),
                    kind: ArgErrorKind::Unknown {
                        known: r.fields().map(|f| f.name.to_string()).collect(),
                    },
                });
            }
            r.fields()
                .map(|f| {
                    let field_path = format!("{path}.{}", f.name);
                    let val = match lookup(object, f.name) {
                        Some(v) => to_val(v, &f.ty, &field_path)?,
                        None if matches!(f.ty, Type::Option(_)) => Val::Option(None),
                        None => {
                            return Err(ArgError {
                                path: field_path,
                                kind: ArgErrorKind::Missing {
                                    expected: wit_name(&f.ty),
                                },
                            });
                        }
                    };
                    Ok((f.name.to_string(), val))
                })
                .collect::<Result<_, _>>()
                .map(Val::Record)
        }
        Type::Tuple(t) => {
            let items = value.as_array().ok_or_else(|| err(""))?;
            if items.len() != t.types().len() {
                return Err(err(&format!("needs exactly {} items", t.types().len())));
            }
            items
                .iter()
                .zip(t.types())
                .enumerate()
                .map(|(i, (v, ty))| to_val(v, &ty, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()
                .map(Val::Tuple)
        }
        Type::Variant(v) => {
            let (name, payload) = single_case(value).ok_or_else(|| err(""))?;
            let case = v
                .cases()
                .find(|c| same_name(c.name, name))
                .ok_or_else(|| err(&format!("no case `{name}`")))?;
            let payload = match (&case.ty, payload) {
                (Some(ty), Some(p)) => {
                    Some(Box::new(to_val(p, ty, &format!("{path}.{}", case.name))?))
                }
                (None, None) | (None, Some(Value::Null)) => None,
                (Some(_), None) => {
                    return Err(err(&format!("case `{}` needs a payload", case.name)));
                }
                (None, Some(_)) => {
                    return Err(err(&format!("case `{}` has no payload", case.name)));
                }
            };
            Ok(Val::Variant(case.name.to_string(), payload))
        }
        Type::Enum(e) => {
            let s = value.as_str().ok_or_else(|| err(""))?;
            e.names()
                .find(|n| same_name(n, s))
                .map(|n| Val::Enum(n.to_string()))
                .ok_or_else(|| err(&format!("no case `{s}`")))
        }
        Type::Flags(f) => {
            let items = value.as_array().ok_or_else(|| err(""))?;
            let mut set = Vec::with_capacity(items.len());
            for item in items {
                let s = item
                    .as_str()
                    .ok_or_else(|| err("flags are an array of strings"))?;
                let flag = f
                    .names()
                    .find(|n| same_name(n, s))
                    .ok_or_else(|| err(&format!("no flag `{s}`")))?;
                if !set.iter().any(|x: &String| x == flag) {
                    set.push(flag.to_string());
                }
            }
            Ok(Val::Flags(set))
        }
        Type::Option(o) => match value {
            Value::Null => Ok(Val::Option(None)),
            v => Ok(Val::Option(Some(Box::new(to_val(v, &o.ty(), path)?)))),
        },
        Type::Result(r) => {
            let (name, payload) = single_case(value)
                .filter(|(n, _)| *n == "ok" || *n == "err")
                .ok_or_else(|| err("a result is {\"ok\": ...} or {\"err\": ...}"))?;
            let side = if name == "ok" { r.ok() } else { r.err() };
            let inner = match (side, payload) {
                (Some(ty), Some(p)) => Some(Box::new(to_val(p, &ty, &format!("{path}.{name}"))?)),
                (Some(_), None) => return Err(err(&format!("`{name}` needs a value"))),
                (None, None | Some(Value::Null)) => None,
                (None, Some(_)) => return Err(err(&format!("`{name}` carries no value"))),
            };
            Ok(Val::Result(if name == "ok" {
                Ok(inner)
            } else {
                Err(inner)
            }))
        }
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            Err(err("this type cannot be passed as JSON"))
        }
    }
}

/// Converts the items of a JSON array, each to `ty`, naming them `path[i]`.
fn items_to_vals(items: &[Value], ty: &Type, path: &str) -> Result<Vec<Val>, ArgError> {
    items
        .iter()
        .enumerate()
        .map(|(i, v)| to_val(v, ty, &format!("{path}[{i}]")))
        .collect()
}

/// `"case"` or `{"case": payload}`: the shape of variants and results.
fn single_case(value: &Value) -> Option<(&str, Option<&Value>)> {
    match value {
        Value::String(s) => Some((s, None)),
        Value::Object(o) if o.len() == 1 => o.iter().next().map(|(k, v)| (k.as_str(), Some(v))),
        _ => None,
    }
}

/// Converts a WIT value back to JSON, by the same table.
pub fn to_json(val: &Val) -> Value {
    match val {
        Val::Bool(b) => Value::Bool(*b),
        Val::S8(i) => (*i).into(),
        Val::U8(i) => (*i).into(),
        Val::S16(i) => (*i).into(),
        Val::U16(i) => (*i).into(),
        Val::S32(i) => (*i).into(),
        Val::U32(i) => (*i).into(),
        Val::S64(i) => (*i).into(),
        Val::U64(i) => (*i).into(),
        // NaN and infinities have no JSON form: they become null.
        // Through the f32's shortest decimal form: 0.1f32 is 0.1, not 0.10000000149011612.
        Val::Float32(f) => f
            .to_string()
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Val::Float64(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Val::Char(c) => Value::String(c.to_string()),
        Val::String(s) => Value::String(s.clone()),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
            Value::Array(items.iter().map(to_json).collect())
        }
        Val::Map(pairs) => Value::Array(
            pairs
                .iter()
                .map(|(k, v)| Value::Array(vec![to_json(k), to_json(v)]))
                .collect(),
        ),
        Val::Record(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
        Val::Variant(case, None) | Val::Enum(case) => Value::String(case.clone()),
        Val::Variant(case, Some(payload)) => {
            Value::Object(Map::from_iter([(case.clone(), to_json(payload))]))
        }
        Val::Flags(names) => Value::Array(names.iter().cloned().map(Value::String).collect()),
        Val::Option(None) => Value::Null,
        Val::Option(Some(v)) => to_json(v),
        Val::Result(r) => {
            let (key, inner) = match r {
                Ok(v) => ("ok", v),
                Err(v) => ("err", v),
            };
            let inner = inner.as_deref().map_or(Value::Null, to_json);
            Value::Object(Map::from_iter([(key.to_string(), inner)]))
        }
        // Refused at load time (see `types::unsupported`); never returned.
        Val::Resource(_) | Val::Future(_) | Val::Stream(_) | Val::ErrorContext(_) => Value::Null,
    }
}
