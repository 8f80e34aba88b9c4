//! What every gRPC call goes through before and after its service: the API key from
//! `authorization: Bearer <key>` (the same keys, roles and quotas as REST), the caller's
//! `grpc-timeout`, the request metadata the REST headers stand for, and the shared response
//! metrics (`protocol="grpc"`, the status the REST API would have answered).

use std::time::Duration;

use tonic::metadata::MetadataMap;
use tonic::{Code, Status};
use tradeserve_auth::{Access, Caller};

use crate::metrics::{Protocol, Route};
use crate::routes::admit::Arrival;
use crate::state::AppState;

use super::status;

/// The bearer token in the call's metadata, if it sent one.
fn bearer(metadata: &MetadataMap) -> Option<&str> {
    crate::auth::bearer_token(metadata.get("authorization")?.to_str().ok()?)
}

/// The caller, when keys are configured (`None` without authentication), or the refusal.
pub async fn authorize(
    state: &AppState,
    metadata: &MetadataMap,
    access: Access,
) -> Result<Option<Caller>, Status> {
    let Some(auth) = &state.auth else {
        return Ok(None);
    };
    auth.check(access, bearer(metadata))
        .await
        .map_err(|refused| status::from_refusal(&refused))
}

/// The caller's `grpc-timeout` (up to 8 digits and a unit: H, M, S, m, u, n), if it sent one.
pub fn timeout(metadata: &MetadataMap) -> Result<Option<Duration>, Status> {
    let Some(raw) = metadata.get("grpc-timeout") else {
        return Ok(None);
    };
    let bad = || {
        status::invalid(
            "grpc-timeout",
            "grpc-timeout must be 1-8 digits and a unit (H, M, S, m, u, n)",
        )
    };
    let text = raw.to_str().map_err(|_| bad())?;
    let (digits, unit) = text.split_at(text.len().saturating_sub(1));
    if digits.is_empty() || digits.len() > 8 {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let timeout = match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return Err(bad()),
    };
    Ok(Some(timeout))
}

/// A metadata value as the REST header parsers take it: absent, or present and text (visible
/// ASCII) or not.
pub fn text<'a>(metadata: &'a MetadataMap, key: &str) -> Option<Option<&'a str>> {
    metadata.get(key).map(|v| v.to_str().ok())
}

/// Count the call's answer in the response metrics, from its arrival.
pub fn observe<T>(state: &AppState, route: Route, arrival: Arrival, result: &Result<T, Status>) {
    let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
    state.metrics.observe_response(
        Protocol::Grpc,
        route,
        status::http_status_of(code),
        arrival.instant.elapsed().as_secs_f64(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        if let Ok(v) = value.parse() {
            m.insert("grpc-timeout", v);
        }
        m
    }

    #[test]
    fn grpc_timeout_in_every_unit() {
        assert_eq!(timeout(&MetadataMap::new()).ok(), Some(None));
        for (text, want) in [
            ("1H", Duration::from_secs(3600)),
            ("2M", Duration::from_secs(120)),
            ("3S", Duration::from_secs(3)),
            ("25m", Duration::from_millis(25)),
            ("500u", Duration::from_micros(500)),
            ("99999999n", Duration::from_nanos(99_999_999)),
        ] {
            assert_eq!(timeout(&with(text)).ok(), Some(Some(want)), "{text}");
        }
        for bad in ["", "m", "123456789m", "10x", "-1m", "1.5S"] {
            let err = timeout(&with(bad));
            if bad.is_empty() {
                continue; // an empty value is not a header at all
            }
            assert_eq!(
                err.map_err(|s| s.code()),
                Err(Code::InvalidArgument),
                "{bad}"
            );
        }
    }

    #[test]
    fn bearer_needs_the_scheme_and_a_token() {
        let mut m = MetadataMap::new();
        assert_eq!(bearer(&m), None);
        if let Ok(v) = "Bearer  k1 ".parse() {
            m.insert("authorization", v);
        }
        assert_eq!(bearer(&m), Some("k1"));
        if let Ok(v) = "Basic k1".parse() {
            m.insert("authorization", v);
        }
        assert_eq!(bearer(&m), None);
    }
}
