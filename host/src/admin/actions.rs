//! The dashboard's data about buried jobs and its actions, on top of
//! [`crate::ops`] (which the CLI shares):
//!
//! - `GET /api/buried?tube=T[&limit=N]`: the tube's buried jobs with why
//!   they failed ([`ops::buried`]);
//! - `POST /api/kick` `{"tube":T,"job":ID}` or `{"tube":T,"all":true}`:
//!   retry with a fresh attempt budget ([`ops::kick`]);
//! - `POST /api/delete` `{"job":ID,"force":false}` ([`ops::delete`]);
//! - `POST /api/pause` `{"tube":T,"secs":S}` ([`ops::pause`]).
//!
//! Every POST needs the bearer token ([`Authorized`], checked before the
//! body is read); a GET never acts. Errors are `{"error": "<one line>"}`
//! with 400 (bad request), 404 (no such tube or job), 409 (job in another
//! state or tube), 503 (beanstalkd unreachable).

use axum::Json;
use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::auth::Authorized;
use super::server::AdminState;
use crate::ops::{self, Kick, OpsError};

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
    let list = ops::buried(&s.config().beanstalkd, &tube, limit).await?;
    Ok(Json(list).into_response())
}

async fn kick(
    _: Authorized,
    State(s): State<AdminState>,
    body: Result<Json<KickBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let body = body?.0;
    let which = body.which()?;
    let _one = s.records().lock().await;
    let kicked = ops::kick(&s.config().beanstalkd, &body.tube, which).await?;
    tracing::info!(tube = %body.tube, ?kicked, "admin: kicked (retried) buried jobs");
    Ok(Json(json!({ "kicked": kicked })).into_response())
}

async fn delete(
    _: Authorized,
    State(s): State<AdminState>,
    body: Result<Json<DeleteBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let body = body?.0;
    let _one = s.records().lock().await;
    let deleted = ops::delete(&s.config().beanstalkd, body.job, body.force).await?;
    tracing::info!(job = deleted, force = body.force, "admin: deleted a job");
    Ok(Json(json!({ "deleted": deleted })).into_response())
}

async fn pause(
    _: Authorized,
    State(s): State<AdminState>,
    body: Result<Json<PauseBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let body = body?.0;
    ops::pause(&s.config().beanstalkd, &body.tube, body.secs).await?;
    tracing::info!(tube = %body.tube, secs = body.secs, "admin: paused a tube");
    Ok(Json(json!({ "paused": body.tube, "secs": body.secs })).into_response())
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
