//! The responses many operations share, described once: the key check's (401, 429), an
//! operator-only route's 403, and the optional `{"reason"}` body of a control action (400,
//! 413, 422).

use utoipa::IntoResponses;

use crate::error::Envelope;

/// 401 and 429 of every route behind the key check (only when authentication is on).
#[derive(IntoResponses)]
#[allow(dead_code)] // described, never built: the auth layer answers these
pub enum Guarded<'a> {
    #[response(
        status = 401,
        description = "unauthorized: no API key, or not one of the configured keys (only when \
                       authentication is on; with `WWW-Authenticate: Bearer`)"
    )]
    Unauthorized(Envelope<'a>),
    #[response(
        status = 429,
        description = "rate_limited: the API key is over its quota (Retry-After)",
        headers(("Retry-After" = u32, description = "rate_limited: whole seconds until the key's quota lets a request through"))
    )]
    RateLimited(Envelope<'a>),
}

/// 403 of a route that needs the operator role.
#[derive(IntoResponses)]
#[allow(dead_code)] // described, never built: the auth layer answers it
pub enum OperatorOnly<'a> {
    #[response(
        status = 403,
        description = "forbidden: the API key lacks the operator role"
    )]
    Forbidden(Envelope<'a>),
}

/// An action's optional body `{"reason": "…"}` (`routes::body::Requested`).
#[derive(IntoResponses)]
#[allow(dead_code)] // described, never built: the extractor answers these
pub enum OptionalReason<'a> {
    #[response(
        status = 400,
        description = "bad_request: the optional body is not a JSON object"
    )]
    NotAnObject(Envelope<'a>),
    #[response(
        status = 413,
        description = "body_too_large: the optional body is over the limit"
    )]
    TooLarge(Envelope<'a>),
    #[response(
        status = 422,
        description = "invalid_value: the optional body's `reason` is not a string"
    )]
    NotAString(Envelope<'a>),
}

/// The 400 and 413 of a required JSON body (`routes::body::JsonBody`).
#[derive(IntoResponses)]
#[allow(dead_code)] // described, never built: the extractor answers these
pub enum JsonBodyErrors<'a> {
    #[response(status = 400, description = "Body is not JSON or not an object")]
    Malformed(Envelope<'a>),
    #[response(status = 413, description = "Body larger than the limit")]
    TooLarge(Envelope<'a>),
}

/// The `X-Actor` header of a control change.
pub const ACTOR: &str = "Who is making the change, recorded on the audit trail (default 'api'); \
                         kept as printable ASCII, its first 64 characters. Ignored when API keys \
                         are configured: the key's id is the actor.";

/// The 503 of a control change.
pub const CONTROL_UNAVAILABLE: &str = "not_ready (models not loaded), control_store_unavailable";

/// The 503 of a change that loads model versions (creating an experiment or a rollout, moving
/// a rollout on).
pub const LOADING_UNAVAILABLE: &str = "not_ready (models not loaded), \
                                       control_store_unavailable, registry_unavailable, \
                                       backend_unavailable (the model server a named version \
                                       is served from does not answer)";

/// The 422 of an experiment's or a rollout's definition.
pub const INVALID_DEFINITION: &str = "Invalid field (error.field names it): unknown_field, \
                                      missing_field, invalid_type, invalid_value, \
                                      unknown_model_version";

/// The 409 of a control change that does not apply.
pub const CONFLICT: &str = "conflict: the change does not apply in the current state (e.g. one \
                            running experiment or one active rollout at a time, a stopped \
                            experiment, a finished rollout)";
