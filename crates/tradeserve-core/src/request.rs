//! Parsing and validating a `POST /api/v1/predict` body into a [`PredictRequest`].
//!
//! The body is parsed straight into a typed struct (`deny_unknown_fields`); serde's error,
//! with the path of the offending field, is turned into a stable error code. A body that is
//! not JSON or not an object is [`RequestErrorKind::Malformed`] (HTTP 400); valid JSON with a
//! bad field is [`RequestErrorKind::Invalid`] (HTTP 422).

use serde::Deserialize;
use time::{Duration, OffsetDateTime, format_description::well_known::Rfc3339};

use crate::types::{Specialist, Symbol};

/// A validated prediction request.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictRequest {
    pub symbol: Symbol,
    /// Point-in-time features as of this instant; `None` = latest.
    pub timestamp: Option<OffsetDateTime>,
    pub strategy_override: Option<Specialist>,
    pub risk_check: bool,
    pub explain: bool,
    /// The client's id of this order: a repeat of the same request is answered with the
    /// first decision ([`crate::idempotency`]).
    pub client_order_id: Option<String>,
}

/// Longest idempotency key (`client_order_id`, `Idempotency-Key`), in bytes.
pub const MAX_KEY_LEN: usize = 64;

/// Whether `key` is a valid idempotency key: 1 to 64 of `A-Z a-z 0-9 . _ : -`, starting with a
/// letter or digit.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key.starts_with(|c: char| c.is_ascii_alphanumeric())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
}

/// The pattern [`valid_key`] checks, for error messages.
pub const KEY_RULE: &str =
    "must be 1-64 characters of A-Z a-z 0-9 . _ : -, starting with a letter or digit";

/// The body of `POST /api/v1/predict`.
// As sent: `parse_predict_request` validates it into a `PredictRequest`.
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = PredictRequest))]
#[serde(deny_unknown_fields)]
pub struct RawRequest {
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Z][A-Z0-9.\-]*$", min_length = 1, max_length = 12)
    )]
    symbol: String,
    /// Point-in-time features as of this instant (RFC 3339); absent = latest. More than 5 s in
    /// the future is 422.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    timestamp: Option<String>,
    /// Use this specialist alone instead of the meta-controller's weights.
    #[serde(default)]
    strategy_override: Option<Specialist>,
    /// Check (and book) the order against the risk limits.
    #[serde(default = "default_true")]
    #[cfg_attr(feature = "openapi", schema(default = true))]
    risk_check: bool,
    /// Return Shapley-value attributions under `explanation` (adds milliseconds; the decision
    /// itself is unchanged).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = false))]
    explain: bool,
    /// The client's id of this order (the rule of the `Idempotency-Key` header, which it must
    /// equal when both are sent). The same id with the same request within `idempotency.ttl`
    /// (24 h) is answered with the first decision (same `decision_id`, `"repeat": true`) with
    /// no second booking and no second event; with a different request, 409
    /// `idempotency_conflict`. Scoped to the API key; kept fleet-wide when the risk ledger or
    /// the control store is Redis, per replica otherwise.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
    )]
    client_order_id: Option<String>,
}

fn default_true() -> bool {
    true
}

/// Whether the body could not be read as a JSON object, or a field in it is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestErrorKind {
    /// HTTP 400.
    Malformed,
    /// HTTP 422.
    Invalid,
}

/// A client error in the request body, with a stable `code` and the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    pub kind: RequestErrorKind,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl RequestError {
    fn malformed(code: &'static str, message: impl Into<String>) -> Self {
        RequestError {
            kind: RequestErrorKind::Malformed,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub(crate) fn invalid(
        code: &'static str,
        message: impl Into<String>,
        field: Option<String>,
    ) -> Self {
        RequestError {
            kind: RequestErrorKind::Invalid,
            code,
            message: message.into(),
            field,
        }
    }
}

/// Limits the parser applies besides the schema.
#[derive(Debug, Clone, Copy)]
pub struct RequestRules {
    /// How far in the future a `timestamp` may be (clock skew between client and server).
    pub max_clock_skew: Duration,
}

impl Default for RequestRules {
    fn default() -> Self {
        RequestRules {
            max_clock_skew: Duration::seconds(5),
        }
    }
}

/// Parse a JSON object body into `T`, strictly: not JSON or not an object is `Malformed`
/// (400); a wrong, missing or unknown field is `Invalid` (422) and names the field.
pub fn parse_json_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, RequestError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => {
                    RequestError::malformed("not_an_object", "request body must be a JSON object")
                }
                Err(e) => RequestError::malformed(
                    "malformed_json",
                    format!("request body is not valid JSON: {e}"),
                ),
            },
        );
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let raw: T = serde_path_to_error::deserialize(&mut de).map_err(|e| classify(e, body))?;
    de.end().map_err(|e| {
        RequestError::malformed(
            "malformed_json",
            format!("request body is not valid JSON: {e}"),
        )
    })?;

    Ok(raw)
}

/// Parse and validate a request body; `now` is the server's clock.
pub fn parse_predict_request(
    body: &[u8],
    now: OffsetDateTime,
    rules: &RequestRules,
) -> Result<PredictRequest, RequestError> {
    let raw: RawRequest = parse_json_object(body)?;

    let symbol = Symbol::parse(&raw.symbol).map_err(|e| {
        RequestError::invalid("invalid_symbol", e.to_string(), Some("symbol".to_owned()))
    })?;
    let timestamp = match raw.timestamp {
        None => None,
        Some(text) => {
            let ts = OffsetDateTime::parse(&text, &Rfc3339).map_err(|e| {
                RequestError::invalid(
                    "invalid_timestamp",
                    format!("timestamp must be RFC 3339 (e.g. 2025-10-21T14:30:00Z): {e}"),
                    Some("timestamp".to_owned()),
                )
            })?;
            if ts > now + rules.max_clock_skew {
                return Err(RequestError::invalid(
                    "timestamp_in_future",
                    format!(
                        "timestamp is more than {} s in the future",
                        rules.max_clock_skew.whole_seconds()
                    ),
                    Some("timestamp".to_owned()),
                ));
            }
            Some(ts)
        }
    };
    if let Some(id) = &raw.client_order_id
        && !valid_key(id)
    {
        return Err(RequestError::invalid(
            "invalid_value",
            format!("client_order_id {}", KEY_RULE),
            Some("client_order_id".to_owned()),
        ));
    }
    Ok(PredictRequest {
        symbol,
        timestamp,
        strategy_override: raw.strategy_override,
        risk_check: raw.risk_check,
        explain: raw.explain,
        client_order_id: raw.client_order_id,
    })
}

fn classify(err: serde_path_to_error::Error<serde_json::Error>, body: &[u8]) -> RequestError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    if !inner.is_data() {
        // serde_json reports a wrong type for an enum (`"strategy_override": 1`) as a syntax
        // error; when the body parses as JSON, it is a bad field (422), not bad JSON (400).
        if path != "." && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
            return RequestError::invalid(
                "invalid_type",
                format!("{path}: wrong type for this field"),
                Some(path),
            );
        }
        return RequestError::malformed(
            "malformed_json",
            format!("request body is not valid JSON: {inner}"),
        );
    }
    let text = inner.to_string();
    let message = strip_position(&text);
    let backticked = || text.split('`').nth(1).map(str::to_owned);
    let field = if path == "." { None } else { Some(path) };
    if text.starts_with("unknown field") {
        RequestError::invalid("unknown_field", message, backticked())
    } else if text.starts_with("missing field") {
        RequestError::invalid("missing_field", message, backticked())
    } else if text.starts_with("duplicate field") {
        RequestError::invalid("duplicate_field", message, backticked())
    } else if text.starts_with("unknown variant") {
        RequestError::invalid("invalid_value", message, field)
    } else {
        RequestError::invalid("invalid_type", message, field)
    }
}

/// serde_json appends " at line L column C"; the field name says more to an API client.
fn strip_position(text: &str) -> String {
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2025-10-21 14:30:00 UTC);

    fn parse(body: &str) -> Result<PredictRequest, RequestError> {
        parse_predict_request(body.as_bytes(), NOW, &RequestRules::default())
    }

    fn err(body: &str) -> (RequestErrorKind, &'static str, Option<String>) {
        let e = parse(body).expect_err(body);
        (e.kind, e.code, e.field)
    }

    #[test]
    fn a_wrong_type_in_any_field_is_422_naming_the_field() {
        let cases = [
            (
                r#"{"symbol":"AAPL","strategy_override":1}"#,
                "strategy_override",
            ),
            (
                r#"{"symbol":"AAPL","strategy_override":true}"#,
                "strategy_override",
            ),
            (
                r#"{"symbol":"AAPL","strategy_override":["bull_specialist"]}"#,
                "strategy_override",
            ),
            (r#"{"symbol":1}"#, "symbol"),
            (r#"{"symbol":null}"#, "symbol"),
            (r#"{"symbol":"AAPL","timestamp":5}"#, "timestamp"),
            (r#"{"symbol":"AAPL","risk_check":"yes"}"#, "risk_check"),
            (r#"{"symbol":"AAPL","explain":1}"#, "explain"),
        ];
        for (body, field) in cases {
            assert_eq!(
                err(body),
                (
                    RequestErrorKind::Invalid,
                    "invalid_type",
                    Some(field.to_owned())
                ),
                "{body}"
            );
        }
        // An object for an enum reads as an unknown variant: still 422 on the field.
        assert_eq!(
            err(r#"{"symbol":"AAPL","strategy_override":{"a":1}}"#),
            (
                RequestErrorKind::Invalid,
                "invalid_value",
                Some("strategy_override".to_owned())
            )
        );
        // Bytes that are not JSON stay 400.
        assert_eq!(
            err(r#"{"symbol":"AAPL","strategy_override":1"#).0,
            RequestErrorKind::Malformed
        );
    }

    #[test]
    fn idempotency_keys_follow_the_documented_rule() {
        for ok in ["a", "ORD-2025.10:14_1", &"x".repeat(64)] {
            assert!(valid_key(ok), "{ok}");
        }
        for bad in ["", "-a", "a b", "é", &"x".repeat(65), "a/b"] {
            assert!(!valid_key(bad), "{bad}");
        }
    }

    #[test]
    fn minimal_request_gets_defaults() {
        let r = parse(r#"{"symbol":"AAPL"}"#);
        assert_eq!(
            r,
            Ok(PredictRequest {
                symbol: Symbol::parse("AAPL").unwrap(),
                timestamp: None,
                strategy_override: None,
                risk_check: true,
                explain: false,
                client_order_id: None,
            })
        );
    }

    #[test]
    fn full_request() {
        let r = parse(
            r#"{"symbol":"BRK.B","timestamp":"2025-10-21T14:29:00Z","strategy_override":"bear_specialist","risk_check":false,"explain":true}"#,
        );
        let r = r.map_err(|e| e.message);
        assert_eq!(
            r.as_ref().map(|r| r.timestamp),
            Ok(Some(datetime!(2025-10-21 14:29:00 UTC)))
        );
        assert_eq!(
            r.as_ref().map(|r| r.strategy_override),
            Ok(Some(Specialist::Bear))
        );
        assert_eq!(
            r.as_ref().map(|r| (r.risk_check, r.explain)),
            Ok((false, true))
        );
        let null_override = parse(r#"{"symbol":"A","strategy_override":null}"#);
        assert_eq!(null_override.map(|r| r.strategy_override), Ok(None));
    }

    #[test]
    fn malformed_bodies_are_400() {
        assert_eq!(
            err(""),
            (RequestErrorKind::Malformed, "malformed_json", None)
        );
        assert_eq!(
            err("{"),
            (RequestErrorKind::Malformed, "malformed_json", None)
        );
        assert_eq!(
            err("{\"symbol\":\"A\"} x"),
            (RequestErrorKind::Malformed, "malformed_json", None)
        );
        assert_eq!(
            err("symbol=AAPL"),
            (RequestErrorKind::Malformed, "malformed_json", None)
        );
        assert_eq!(
            err("[1,2]"),
            (RequestErrorKind::Malformed, "not_an_object", None)
        );
        assert_eq!(
            err("\"AAPL\""),
            (RequestErrorKind::Malformed, "not_an_object", None)
        );
        assert_eq!(
            err("null"),
            (RequestErrorKind::Malformed, "not_an_object", None)
        );
    }

    #[test]
    fn invalid_fields_are_422_with_the_field() {
        let f = |s: &str| Some(s.to_owned());
        assert_eq!(
            err("{}"),
            (RequestErrorKind::Invalid, "missing_field", f("symbol"))
        );
        assert_eq!(
            err(r#"{"symbol":"A","foo":1}"#),
            (RequestErrorKind::Invalid, "unknown_field", f("foo"))
        );
        assert_eq!(
            err(r#"{"symbol":1}"#),
            (RequestErrorKind::Invalid, "invalid_type", f("symbol"))
        );
        assert_eq!(
            err(r#"{"symbol":"A","risk_check":"yes"}"#),
            (RequestErrorKind::Invalid, "invalid_type", f("risk_check"))
        );
        assert_eq!(
            err(r#"{"symbol":"A","explain":null}"#),
            (RequestErrorKind::Invalid, "invalid_type", f("explain"))
        );
        assert_eq!(
            err(r#"{"symbol":"A","strategy_override":"momentum"}"#),
            (
                RequestErrorKind::Invalid,
                "invalid_value",
                f("strategy_override")
            )
        );
        assert_eq!(
            err(r#"{"symbol":"aapl"}"#),
            (RequestErrorKind::Invalid, "invalid_symbol", f("symbol"))
        );
        assert_eq!(
            err(r#"{"symbol":"ABCDEFGHIJKLM"}"#),
            (RequestErrorKind::Invalid, "invalid_symbol", f("symbol"))
        );
        assert_eq!(
            err(r#"{"symbol":"A","symbol":"B"}"#),
            (RequestErrorKind::Invalid, "duplicate_field", f("symbol"))
        );
        assert_eq!(
            err(r#"{"symbol":"A","timestamp":"yesterday"}"#),
            (
                RequestErrorKind::Invalid,
                "invalid_timestamp",
                f("timestamp")
            )
        );
        assert_eq!(
            err(r#"{"symbol":"A","timestamp":1761057000}"#),
            (RequestErrorKind::Invalid, "invalid_type", f("timestamp"))
        );
    }

    #[test]
    fn future_timestamps_beyond_the_skew_are_rejected() {
        assert!(parse(r#"{"symbol":"A","timestamp":"2025-10-21T14:30:05Z"}"#).is_ok());
        assert_eq!(
            err(r#"{"symbol":"A","timestamp":"2025-10-21T14:30:06Z"}"#),
            (
                RequestErrorKind::Invalid,
                "timestamp_in_future",
                Some("timestamp".to_owned())
            )
        );
        // Offsets other than Z are understood.
        assert!(parse(r#"{"symbol":"A","timestamp":"2025-10-21T10:29:00-04:00"}"#).is_ok());
    }
}
