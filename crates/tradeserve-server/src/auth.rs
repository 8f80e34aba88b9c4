//! The HTTP side of [`tradeserve_auth`]: the layer in front of a route that needs a key.
//! `Authorization: Bearer <key>`; 401 `unauthorized` for a missing or unknown key (with
//! `WWW-Authenticate: Bearer`), 403 `forbidden` for a key without the route's role, 429
//! `rate_limited` over the key's quota (with `Retry-After`). The key's id — never the key —
//! goes on as the request's [`tradeserve_auth::Caller`]: the `actor` of control changes and decision events.
//! Without keys the layer is not installed at all.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use tradeserve_auth::{Access, Auth, Refused};

use crate::error::ApiError;

/// The bearer token of a request, if it sent one.
fn bearer(request: &Request) -> Option<&str> {
    let value = request.headers().get(header::AUTHORIZATION)?;
    bearer_token(value.to_str().ok()?)
}

/// The token of an `Authorization: Bearer <token>` value (the gRPC metadata's as well).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The response to a refusal.
fn refusal(refused: &Refused) -> Response {
    let (status, code) = match refused {
        Refused::Missing | Refused::Unknown => (StatusCode::UNAUTHORIZED, "unauthorized"),
        Refused::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
        Refused::Limited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
    };
    let mut response = ApiError::new(status, code, refused.to_string()).into_response();
    let headers = response.headers_mut();
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let Refused::Limited { retry_after, .. } = refused {
        // Whole seconds, rounded up: a client that waits that long gets through.
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    response
}

/// The layer in front of a route that needs `access`.
pub async fn guard(
    State((auth, access)): State<(Arc<Auth>, Access)>,
    mut request: Request,
    next: Next,
) -> Response {
    match auth.check(access, bearer(&request)).await {
        Ok(caller) => {
            if let Some(caller) = caller {
                request.extensions_mut().insert(caller);
            }
            next.run(request).await
        }
        Err(refused) => refusal(&refused),
    }
}
