//! The dashboard's data about buried jobs and its actions, on top of
//! [`crate::ops`] (which the CLI shares):
//!
//! - `GET /api/buried?tube=T[&limit=N]`: the tube's buried jobs with why
//!   they failed, from every server, each job with its server when there
//!   are several ([`ops::buried_over`]);
//! - `POST /api/kick` `{"tube":T,"job":ID,"server":S}` or
//!   `{"tube":T,"all":true}`: retry with a fresh attempt budget
//!   ([`ops::kick_over`]);
//! - `POST /api/delete` `{"job":ID,"force":false,"server":S}`
//!   ([`ops::delete_over`]);
//! - `POST /api/pause` `{"tube":T,"secs":S}`, on every server
//!   ([`ops::pause_over`]).
//!
//! Job ids are per server: with more than one server, an action on a job
//! must name its `server` (one of the list). Every POST needs the bearer
//! token ([`Authorized`], checked before the body is read); a GET never
//! acts. Errors are `{"error": "<one line>"}` with 400 (bad request), 404
//! (no such tube or job), 409 (job in another state or tube), 503
//! (beanstalkd unreachable). When some servers answered and others did
//! not, the answer is 200 with `"errors": [...]` naming those.

use axum::Json;
use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use beanbox_queue::Servers;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::auth::Authorized;
use super::server::AdminState;
use crate::ops::{self, Kick, OpsError, Over};

/// Buried jobs listed per tube unless `?limit=` says otherwise.
pub const DEFAULT_LIMIT: usize = 100;
/// The most buried jobs listed per request.
pub const MAX_LIMIT: usize = 1000;

/// The routes this file serves, for [`super::server::router`].
pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/buried", get(buried))
        .route("/api/kick", post(kick))
        .route("/api/delete", post(delete))
        .route("/api/pause", post(pause))
}

/// An error answer: a status and one line naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// `{"error": message}`.
    pub message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl From<OpsError> for ApiError {
    fn from(e: OpsError) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_GATEWAY),
            message: e.to_string(),
        }
    }
}

impl<T> From<Over<T>> for ApiError {
    /// No server answered: the first error's status, every error's line.
    fn from(over: Over<T>) -> ApiError {
        let status = over
            .errors
            .first()
            .and_then(|e| StatusCode::from_u16(e.http_status()).ok())
            .unwrap_or(StatusCode::BAD_GATEWAY);
        let lines: Vec<String> = over.errors.iter().map(ToString::to_string).collect();
        ApiError {
            status,
            message: lines.join("; "),
        }
    }
}

/// 200 with what the servers that answered said (`body`), and
/// `"errors": [...]` naming those that did not; an [`ApiError`] when none
/// answered.
fn over_answer<T>(over: Over<T>, body: impl FnOnce(T) -> Value) -> Result<Value, ApiError> {
    let Over { value, errors } = over;
    let Some(value) = value else {
        return Err(ApiError::from(Over::<T> {
            value: None,
            errors,
        }));
    };
    let mut answer = body(value);
    if !errors.is_empty()
        && let Value::Object(map) = &mut answer
    {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        map.insert("errors".into(), json!(lines));
    }
    Ok(answer)
}

/// The server an action on job `job` goes to: `given`, which must be one of
/// `servers`; it may be left out only when there is one server.
///
/// # Errors
///
/// 400: a server not in the list, or none given with several.
pub fn job_server(servers: &Servers, given: Option<&str>, job: u64) -> Result<String, ApiError> {
    match given {
        Some(server) => ops::listed(servers, server).map_err(ApiError::from),
        None if servers.len() == 1 => Ok(servers.first().to_owned()),
        None => Err(ApiError::bad_request(format!(
            "job ids are per server: say which holds job {job} with \"server\": one of {servers}"
        ))),
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> ApiError {
        ApiError {
            status: e.status(),
            message: format!("bad request body: {}", e.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> ApiError {
        ApiError::bad_request(format!("bad query string: {}", e.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// `/api/buried`'s query string.
#[derive(Debug, Deserialize)]
pub struct BuriedQuery {
    /// The tube (required).
    pub tube: Option<String>,
    /// How many jobs at most ([`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]).
    pub limit: Option<usize>,
}

impl BuriedQuery {
    /// The tube and the limit to list with.
    ///
    /// # Errors
    ///
    /// No tube, or a limit of 0 or above [`MAX_LIMIT`].
    pub fn resolve(self) -> Result<(String, usize), ApiError> {
        let tube = self
            .tube
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::bad_request("missing tube: ask /api/buried?tube=NAME"))?;
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "limit {limit} out of range: 1 to {MAX_LIMIT}"
            )));
        }
        Ok((tube, limit))
    }
}

/// `POST /api/kick`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KickBody {
    /// The tube the job is buried in.
    pub tube: String,
    /// The one job to kick.
    pub job: Option<u64>,
    /// Kick every buried job of the tube instead.
    #[serde(default)]
    pub all: bool,
    /// The job's server (required with several servers); with `all`: kick
    /// there only.
    pub server: Option<String>,
}

impl KickBody {
    /// Which jobs to kick.
    ///
    /// # Errors
    ///
    /// Neither or both of `job` and `"all": true`.
    pub fn which(&self) -> Result<Kick, ApiError> {
        match (self.job, self.all) {
            (Some(job), false) => Ok(Kick::Job(job)),
            (None, true) => Ok(Kick::All),
            (Some(_), true) => Err(ApiError::bad_request(
                "give either \"job\" or \"all\": true, not both",
            )),
            (None, false) => Err(ApiError::bad_request(
                "say which job to kick: \"job\": ID or \"all\": true",
            )),
        }
    }
}

/// `POST /api/delete`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteBody {
    /// The job.
    pub job: u64,
    /// Delete a ready job too (not only buried or delayed ones).
    #[serde(default)]
    pub force: bool,
    /// The job's server (required with several servers).
    pub server: Option<String>,
}

/// `POST /api/pause`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseBody {
    /// The tube.
    pub tube: String,
    /// Seconds to pause it for (0 ends a pause).
    pub secs: u32,
}

async fn buried(
    State(s): State<AdminState>,
    query: Result<Query<BuriedQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (tube, limit) = query?.0.resolve()?;
    // One reader of the failure records at a time (see AdminState::records).
    let _one = s.records().lock().await;
    let over = ops::buried_over(&s.config().beanstalkd, &tube, limit).await;
    Ok(Json(over_answer(over, to_json)?).into_response())
}

fn to_json<T: Serialize>(value: T) -> Value {
    serde_json::to_value(value).expect("serialisable")
}

async fn kick(
    _: Authorized,
    State(s): State<AdminState>,
    body: Result<Json<KickBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let body = body?.0;
    let which = body.which()?;
    let servers = &s.config().beanstalkd;
    let server = match which {
        Kick::Job(job) => Some(job_server(servers, body.server.as_deref(), job)?),
        Kick::All => body.server.clone(),
    };
    let _one = s.records().lock().await;
    let over = ops::kick_over(servers, server.as_deref(), &body.tube, which).await;
    if let Some(kicked) = &over.value {
        tracing::info!(tube = %body.tube, ?kicked, "admin: kicked (retried) buried jobs");
    }
    let answer = over_answer(over, |kicked| json!({ "kicked": kicked }))?;
    Ok(Json(answer).into_response())
}

async fn delete(
    _: Authorized,
    State(s): State<AdminState>,
    body: Result<Json<DeleteBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let body = body?.0;
    let servers = &s.config().beanstalkd;
    let server = job_server(servers, body.server.as_deref(), body.job)?;
    let _one = s.records().lock().await;
    let over = ops::delete_over(servers, Some(&server), body.job, body.force).await;
    let several = servers.len() > 1;
    let answer = over_answer(over, |server| {
        if several {
            json!({ "deleted": body.job, "server": server })
        } else {
            json!({ "deleted": body.job })
        }
    })?;
    tracing::info!(job = body.job, %server, force = body.force, "admin: deleted a job");
    Ok(Json(answer).into_response())
}

async fn pause(
    _: Authorized,
    State(s): State<AdminState>,
    body: Result<Json<PauseBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let body = body?.0;
    let servers = &s.config().beanstalkd;
    let several = servers.len() > 1;
    let over = ops::pause_over(servers, &body.tube, body.secs).await;
    let answer = over_answer(over, |paused| {
        if several {
            json!({ "paused": body.tube, "secs": body.secs, "servers": paused })
        } else {
            json!({ "paused": body.tube, "secs": body.secs })
        }
    })?;
    tracing::info!(tube = %body.tube, secs = body.secs, "admin: paused a tube");
    Ok(Json(answer).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kick_body(json: &str) -> KickBody {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_kick_names_one_job_or_all_of_them() {
        assert_eq!(
            kick_body(r#"{"tube":"t","job":12}"#).which(),
            Ok(Kick::Job(12))
        );
        assert_eq!(
            kick_body(r#"{"tube":"t","all":true}"#).which(),
            Ok(Kick::All)
        );
        let neither = kick_body(r#"{"tube":"t"}"#).which().unwrap_err();
        assert_eq!(neither.status, StatusCode::BAD_REQUEST);
        assert!(neither.message.contains("which job"), "{}", neither.message);
        let both = kick_body(r#"{"tube":"t","job":1,"all":true}"#)
            .which()
            .unwrap_err();
        assert!(both.message.contains("not both"), "{}", both.message);
        assert!(serde_json::from_str::<KickBody>(r#"{"tube":"t","jobs":[1]}"#).is_err());
    }

    #[test]
    fn a_listing_needs_a_tube_and_a_sane_limit() {
        let query = |tube: Option<&str>, limit| BuriedQuery {
            tube: tube.map(str::to_string),
            limit,
        };
        assert_eq!(
            query(Some("t"), None).resolve(),
            Ok(("t".into(), DEFAULT_LIMIT))
        );
        assert_eq!(query(Some("t"), Some(5)).resolve(), Ok(("t".into(), 5)));
        for bad in [
            query(None, None),
            query(Some(""), None),
            query(Some("t"), Some(0)),
        ] {
            assert_eq!(bad.resolve().unwrap_err().status, StatusCode::BAD_REQUEST);
        }
        let big = query(Some("t"), Some(MAX_LIMIT + 1)).resolve().unwrap_err();
        assert!(big.message.contains("out of range"), "{}", big.message);
    }

    #[test]
    fn operator_errors_keep_their_status_and_message() {
        let e = ApiError::from(OpsError::NoSuchJob(9));
        assert_eq!(
            (e.status, e.message.as_str()),
            (StatusCode::NOT_FOUND, "no such job: 9")
        );
        let e = ApiError::from(OpsError::InvalidTube("-x".into()));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = ApiError::from(OpsError::Changed(3));
        assert_eq!(e.status, StatusCode::CONFLICT);
    }

    #[test]
    fn a_job_action_names_its_server_when_there_are_several() {
        let one: Servers = "a:1".parse().unwrap();
        let two: Servers = "a:1,b:2".parse().unwrap();
        assert_eq!(job_server(&one, None, 5), Ok("a:1".into()));
        assert_eq!(job_server(&two, Some("b:2"), 5), Ok("b:2".into()));
        let missing = job_server(&two, None, 5).unwrap_err();
        assert_eq!(missing.status, StatusCode::BAD_REQUEST);
        assert!(
            missing.message.contains("job 5") && missing.message.contains("a:1,b:2"),
            "{}",
            missing.message
        );
        let stranger = job_server(&two, Some("c:3"), 5).unwrap_err();
        assert_eq!(stranger.status, StatusCode::BAD_REQUEST);
        assert!(stranger.message.contains("`c:3`"), "{}", stranger.message);
        assert!(
            job_server(&one, Some("b:2"), 5).is_err(),
            "only listed servers"
        );
    }

    #[test]
    fn some_servers_down_is_an_answer_with_errors_none_answering_an_error() {
        let down = || OpsError::Unreachable {
            addr: "b:2".into(),
            source: beanbox_queue::Error::Closed,
        };
        let partial = Over {
            value: Some(vec![1]),
            errors: vec![down()],
        };
        let answer = over_answer(partial, |v| json!({ "kicked": v })).unwrap();
        assert_eq!(answer["kicked"], json!([1]));
        assert!(
            answer["errors"][0].as_str().unwrap().contains("b:2"),
            "{answer}"
        );
        let none = over_answer(
            Over::<Vec<u8>> {
                value: None,
                errors: vec![down(), down()],
            },
            |v| json!(v),
        )
        .unwrap_err();
        assert_eq!(none.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(none.message.contains("; "), "{}", none.message);
        let whole = over_answer(
            Over {
                value: Some(3),
                errors: Vec::new(),
            },
            |v| json!({ "deleted": v }),
        )
        .unwrap();
        assert_eq!(whole, json!({ "deleted": 3 }));
    }

    #[test]
    fn pause_and_delete_bodies_name_their_fields() {
        let e = serde_json::from_str::<PauseBody>(r#"{"tube":"t","secs":-1}"#).unwrap_err();
        assert!(
            e.to_string().contains("secs") || e.to_string().contains("-1"),
            "{e}"
        );
        let d: DeleteBody = serde_json::from_str(r#"{"job":4}"#).unwrap();
        assert!(!d.force);
    }
}
