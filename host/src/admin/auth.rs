//! Who may act: the admin listener's POST actions need `Authorization:
//! Bearer TOKEN` with the token the worker was started with
//! (`--admin-token`); without one configured the listener is read-only.
//! [`check`] is the decision; [`Authorized`] is the axum extractor a POST
//! handler takes as its first argument.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};

use super::server::AdminState;

/// Why an action was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No token is configured: the listener is read-only (403).
    ReadOnly,
    /// No `Authorization: Bearer …` header (401).
    Missing,
    /// A token that is not the configured one (401).
    Wrong,
}

impl Denied {
    /// The HTTP status: 403 for a read-only listener, else 401.
    pub fn status(self) -> StatusCode {
        match self {
            Denied::ReadOnly => StatusCode::FORBIDDEN,
            Denied::Missing | Denied::Wrong => StatusCode::UNAUTHORIZED,
        }
    }

    /// One line for the `{"error": …}` body.
    pub fn message(self) -> &'static str {
        match self {
            Denied::ReadOnly => "read-only: start the worker with --admin-token",
            Denied::Missing => "missing token: send Authorization: Bearer <token>",
            Denied::Wrong => "wrong token",
        }
    }
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let body = axum::Json(serde_json::json!({ "error": self.message() }));
        let mut response = (self.status(), body).into_response();
        if self.status() == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// Whether a request with `Authorization` header `header` may act, given
/// the `configured` token. The comparison takes the same time wherever the
/// two differ (and whatever their lengths: SHA-256 digests are compared).
///
/// # Errors
///
/// [`Denied`] says why not.
pub fn check(configured: Option<&str>, header: Option<&str>) -> Result<(), Denied> {
    let configured = configured.ok_or(Denied::ReadOnly)?;
    let given = header
        .and_then(|h| {
            let (scheme, token) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or(Denied::Missing)?;
    if same(configured.as_bytes(), given.as_bytes()) {
        Ok(())
    } else {
        Err(Denied::Wrong)
    }
}

/// Constant-time equality of the SHA-256 digests of `a` and `b`.
fn same(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Proof that a request carried the configured token. A POST handler takes
/// it as an argument (`async fn kick(_: Authorized, …)`); a request without
/// it is answered with [`Denied`] (403 or 401, `{"error": …}`) before the
/// handler runs.
#[derive(Debug, Clone, Copy)]
pub struct Authorized;

impl FromRequestParts<AdminState> for Authorized {
    type Rejection = Denied;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AdminState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        check(state.token(), header).map(|()| Authorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_configured_token_every_action_is_refused_as_read_only() {
        assert_eq!(check(None, None), Err(Denied::ReadOnly));
        assert_eq!(check(None, Some("Bearer x")), Err(Denied::ReadOnly));
        assert_eq!(Denied::ReadOnly.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn the_configured_token_is_needed() {
        let t = Some("s3cret");
        assert_eq!(check(t, Some("Bearer s3cret")), Ok(()));
        assert_eq!(check(t, Some("bearer  s3cret ")), Ok(()));
        assert_eq!(check(t, None), Err(Denied::Missing));
        assert_eq!(check(t, Some("Bearer ")), Err(Denied::Missing));
        assert_eq!(check(t, Some("Basic czNjcmV0")), Err(Denied::Missing));
        assert_eq!(check(t, Some("s3cret")), Err(Denied::Missing));
        assert_eq!(check(t, Some("Bearer s3cre")), Err(Denied::Wrong));
        assert_eq!(check(t, Some("Bearer s3cret2")), Err(Denied::Wrong));
        assert_eq!(Denied::Wrong.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(Denied::Missing.status(), StatusCode::UNAUTHORIZED);
    }
}
