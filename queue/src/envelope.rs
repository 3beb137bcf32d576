//! The JSON bodies beanbox puts on beanstalkd: the job [`Envelope`] (which
//! task to run with which keyword arguments, and where to send the result)
//! and the [`ReplyBody`] a worker puts on the `reply_to` tube.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::beanstalk::proto::validate_tube;

/// A job: run `task` with `kwargs`, and put the outcome on `reply_to`.
///
/// On the wire: `{"task": "resize", "kwargs": {"width": 200}, "reply_to":
/// "results"}`. The seed framework's `{"func_name": ..., "tube": ...,
/// "kwargs": ...}` is read too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Envelope {
    /// The export of the tube's module to call.
    pub task: String,
    /// Its arguments by name.
    pub kwargs: Map<String, Value>,
    /// A tube that receives one [`ReplyBody`] when the job finishes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

/// Why a job or reply body was refused. Each message is one line that names
/// the offending field; a body that fails here can never succeed, so a
/// worker buries it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The bytes are not UTF-8.
    #[error("job body is not UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 {
        /// Where the first invalid byte is.
        offset: usize,
    },
    /// The text is not JSON; carries serde's message with line and column.
    #[error("job body is not JSON: {0}")]
    NotJson(String),
    /// The JSON is not an object.
    #[error(
        "job body is {found}, expected a JSON object like {{\"task\": \"name\", \"kwargs\": {{}}}}"
    )]
    NotObject {
        /// What it is instead (`an array`, `null`, …).
        found: &'static str,
    },
    /// Neither `task` nor the seed's `func_name` is there.
    #[error("job body has no \"task\" field (nor the seed's \"func_name\")")]
    MissingTask,
    /// A field has the wrong JSON type.
    #[error("field \"{field}\" must be {expected}, found {found}")]
    WrongType {
        /// The field's name.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it is.
        found: &'static str,
    },
    /// `reply_to` is not a name beanstalkd accepts for a tube.
    #[error("field \"reply_to\" is not a valid tube name: {0:?}")]
    InvalidReplyTo(String),
    /// A reply body lacks a required field.
    #[error("reply body has no \"{0}\" field")]
    MissingField(&'static str),
    /// A reply body has neither `ok` nor `error`.
    #[error("reply body has neither \"ok\" nor \"error\"")]
    MissingOutcome,
}

impl Envelope {
    /// Reads a job body.
    ///
    /// Unknown top-level fields are ignored, so producers can add some; a
    /// missing or `null` `kwargs` is empty, a missing or `null` `reply_to`
    /// none; the seed's `tube` field is ignored.
    ///
    /// # Errors
    ///
    /// [`EnvelopeError`] naming what is wrong: not UTF-8, not JSON, not an
    /// object, no `task`/`func_name`, a task that is not a non-empty string,
    /// `kwargs` that is not an object, or `reply_to` that is not a tube name.
    pub fn parse(body: &[u8]) -> Result<Envelope, EnvelopeError> {
        let mut fields = object(body)?;
        let (field, task) = match fields.remove("task") {
            Some(task) => ("task", task),
            None => (
                "func_name",
                fields
                    .remove("func_name")
                    .ok_or(EnvelopeError::MissingTask)?,
            ),
        };
        let task = match task {
            Value::String(task) if !task.is_empty() => task,
            other => {
                let found = if other == "" {
                    "an empty string"
                } else {
                    kind(&other)
                };
                return Err(EnvelopeError::WrongType {
                    field,
                    expected: "a non-empty string",
                    found,
                });
            }
        };
        let kwargs = match fields.remove("kwargs") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(kwargs)) => kwargs,
            Some(other) => {
                return Err(EnvelopeError::WrongType {
                    field: "kwargs",
                    expected: "an object",
                    found: kind(&other),
                });
            }
        };
        let reply_to = match fields.remove("reply_to") {
            None | Some(Value::Null) => None,
            Some(Value::String(tube)) => {
                // Refused now rather than after the job ran and its result
                // could not be delivered.
                if validate_tube(&tube).is_err() {
                    return Err(EnvelopeError::InvalidReplyTo(tube));
                }
                Some(tube)
            }
            Some(other) => {
                return Err(EnvelopeError::WrongType {
                    field: "reply_to",
                    expected: "a string (a tube name)",
                    found: kind(&other),
                });
            }
        };
        Ok(Envelope {
            task,
            kwargs,
            reply_to,
        })
    }

    /// The `reply_to` of a body that may not be a valid envelope: the
    /// field when the body is a JSON object holding a valid tube name there,
    /// else `None`. A worker uses it to tell a producer why its job was
    /// refused.
    pub fn reply_to_of(body: &[u8]) -> Option<String> {
        match object(body).ok()?.remove("reply_to")? {
            Value::String(tube) if validate_tube(&tube).is_ok() => Some(tube),
            _ => None,
        }
    }

    /// The body to put: `{"task": ..., "kwargs": {...}}` plus `reply_to`
    /// when set.
    pub fn to_json(&self) -> Vec<u8> {
        encode(&self.task, &self.kwargs, self.reply_to.as_deref())
    }
}

/// Writes an envelope from borrowed parts, sparing the producer a copy of
/// the kwargs.
pub(crate) fn encode(task: &str, kwargs: &Map<String, Value>, reply_to: Option<&str>) -> Vec<u8> {
    #[derive(Serialize)]
    struct Wire<'a> {
        task: &'a str,
        kwargs: &'a Map<String, Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reply_to: Option<&'a str>,
    }
    to_vec(&Wire {
        task,
        kwargs,
        reply_to,
    })
}

/// What a finished job reports on its `reply_to` tube:
/// `{"job": 7, "task": "resize", "ok": <result>}` or
/// `{"job": 7, "task": "resize", "error": {"kind": ..., "message": ..., "value": <err>}}`
/// (`value` only when the task returned `err(value)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyBody {
    /// The id of the job that ran.
    pub job: u64,
    /// The task it ran.
    pub task: String,
    /// The task's JSON result, or why it failed.
    pub outcome: Result<Value, ReplyError>,
}

/// What went wrong, as a reply says it (`error.kind`): one list for the
/// worker that writes replies and the clients that read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The module has no export of that name.
    UnknownTask,
    /// The kwargs do not fit the export's parameters.
    BadKwargs,
    /// The task returned `err`.
    GuestError,
    /// The task trapped (panic, exception, unreachable, stack overflow).
    Trap,
    /// The task ran out of fuel.
    Fuel,
    /// The task asked for more memory than allowed.
    Memory,
    /// The task ran past its time limit (or the job's TTR).
    Deadline,
    /// The task wrote more than allowed to stdout or stderr.
    Output,
    /// The job body is not a job envelope.
    BadEnvelope,
    /// The task succeeded, but its follow-up jobs could not be put.
    FollowUpsFailed,
    /// The job finished (and was settled), but its reply was too big to put.
    ReplyTooBig,
}

impl ErrorKind {
    /// Every kind, in the order above.
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::UnknownTask,
        ErrorKind::BadKwargs,
        ErrorKind::GuestError,
        ErrorKind::Trap,
        ErrorKind::Fuel,
        ErrorKind::Memory,
        ErrorKind::Deadline,
        ErrorKind::Output,
        ErrorKind::BadEnvelope,
        ErrorKind::FollowUpsFailed,
        ErrorKind::ReplyTooBig,
    ];

    /// The name on the wire, e.g. `guest-error`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::UnknownTask => "unknown-task",
            ErrorKind::BadKwargs => "bad-kwargs",
            ErrorKind::GuestError => "guest-error",
            ErrorKind::Trap => "trap",
            ErrorKind::Fuel => "fuel",
            ErrorKind::Memory => "memory",
            ErrorKind::Deadline => "deadline",
            ErrorKind::Output => "output",
            ErrorKind::BadEnvelope => "bad-envelope",
            ErrorKind::FollowUpsFailed => "follow-ups-failed",
            ErrorKind::ReplyTooBig => "reply-too-big",
        }
    }

    /// The kind named `name` on the wire, if beanbox knows it.
    pub fn parse(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed job's outcome in a [`ReplyBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ReplyError {
    /// A short machine-readable class, chosen by the worker (e.g. `trap`):
    /// an [`ErrorKind`]'s name.
    pub kind: String,
    /// One line for people.
    pub message: String,
    /// The task's `err` value as JSON (the JSON form of the WIT error type
    /// `E` of its `result<T, E>`; `null` when `E` is absent), present only
    /// for [`ErrorKind::GuestError`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

impl ReplyBody {
    /// Reads a reply body.
    ///
    /// # Errors
    ///
    /// [`EnvelopeError`] naming the missing or mistyped field.
    pub fn parse(body: &[u8]) -> Result<ReplyBody, EnvelopeError> {
        let mut fields = object(body)?;
        let job = match fields.remove("job") {
            Some(job) => job.as_u64().ok_or_else(|| EnvelopeError::WrongType {
                field: "job",
                expected: "a job id (an integer from 0)",
                found: kind(&job),
            })?,
            None => return Err(EnvelopeError::MissingField("job")),
        };
        let task = string(&mut fields, "task")?;
        let outcome = if let Some(error) = fields.remove("error") {
            let Value::Object(mut error) = error else {
                return Err(EnvelopeError::WrongType {
                    field: "error",
                    expected: "an object",
                    found: kind(&error),
                });
            };
            Err(ReplyError {
                kind: string(&mut error, "kind")?,
                message: string(&mut error, "message")?,
                // Present means returned, even as `null`.
                value: error.remove("value"),
            })
        } else {
            // `"ok": null` is a valid result (a task that returns nothing).
            Ok(fields.remove("ok").ok_or(EnvelopeError::MissingOutcome)?)
        };
        Ok(ReplyBody { job, task, outcome })
    }

    /// The body to put on the reply tube.
    pub fn to_json(&self) -> Vec<u8> {
        match &self.outcome {
            Ok(ok) => reply_ok(self.job, &self.task, ok),
            Err(e) => reply_err(self.job, &self.task, &e.kind, &e.message, e.value.as_ref()),
        }
    }
}

/// The reply body for a job that succeeded: `{"job": id, "task": ..., "ok": value}`.
pub fn reply_ok(job: u64, task: &str, ok: &Value) -> Vec<u8> {
    #[derive(Serialize)]
    struct Wire<'a> {
        job: u64,
        task: &'a str,
        ok: &'a Value,
    }
    to_vec(&Wire { job, task, ok })
}

/// The reply body for a job that failed:
/// `{"job": id, "task": ..., "error": {"kind": ..., "message": ..., "value": ...}}`,
/// `value` (the task's `err` value) only when given.
pub fn reply_err(
    job: u64,
    task: &str,
    kind: &str,
    message: &str,
    value: Option<&Value>,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Error<'a> {
        kind: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<&'a Value>,
    }
    #[derive(Serialize)]
    struct Wire<'a> {
        job: u64,
        task: &'a str,
        error: Error<'a>,
    }
    to_vec(&Wire {
        job,
        task,
        error: Error {
            kind,
            message,
            value,
        },
    })
}

fn to_vec(value: &impl Serialize) -> Vec<u8> {
    // These shapes have string keys and plain values only, the cases where
    // serde_json cannot fail.
    serde_json::to_vec(value).expect("JSON with string keys always serializes")
}

fn object(body: &[u8]) -> Result<Map<String, Value>, EnvelopeError> {
    let text = std::str::from_utf8(body).map_err(|e| EnvelopeError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    match serde_json::from_str(text) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(other) => Err(EnvelopeError::NotObject {
            found: kind(&other),
        }),
        Err(e) => Err(EnvelopeError::NotJson(e.to_string())),
    }
}

fn string(fields: &mut Map<String, Value>, field: &'static str) -> Result<String, EnvelopeError> {
    match fields.remove(field) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(EnvelopeError::WrongType {
            field,
            expected: "a string",
            found: kind(&other),
        }),
        None => Err(EnvelopeError::MissingField(field)),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
