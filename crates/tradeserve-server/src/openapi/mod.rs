//! The OpenAPI 3.1 document of every endpoint, generated from the request and response types
//! (`utoipa::ToSchema`, derived where each type is defined) and each handler's
//! `#[utoipa::path]`: served at `GET /openapi.json`, printed by `tradeserve openapi`, and
//! committed as `crates/tradeserve-server/openapi.json` for readers and tools, where a test
//! fails when the committed file is not what the code generates.
//!
//! - [`responses`]: the responses many operations share (the key check's, the operator-only
//!   403, an action's optional reason body).

pub mod responses;

use std::sync::LazyLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{bars, experiments, halts, models, ops, outcomes, predict, rollouts, stats};

/// See the module docs.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "TradeServe",
        description = "Low-latency trading decisions (BUY/SELL/HOLD) from an ONNX model ensemble, with risk checks and an audit trail.",
    ),
    servers((url = "http://127.0.0.1:8080")),
    security(("apiKey" = [])),
    modifiers(&ApiKey, &OptionalBodies),
    paths(
        predict::predict,
        models::models, models::reload, models::symbols,
        ops::live, ops::ready, ops::metrics, ops::openapi,
        stats::stats, stats::dashboard,
        experiments::list, experiments::create, experiments::get, experiments::update,
        experiments::stop, experiments::report,
        outcomes::post,
        rollouts::list, rollouts::create, rollouts::get, rollouts::promote, rollouts::pause,
        rollouts::rollback, rollouts::kill_switch,
        bars::post,
        halts::list, halts::create, halts::release,
    ),
    components(schemas(tradeserve_features::live::Bar)),
)]
pub struct ApiDoc;

/// The bearer API key scheme every secured operation names.
struct ApiKey;

impl Modify for ApiKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key `<id>.<secret>` from `tradeserve auth new-key`, when `[auth]` \
                         has keys (without keys the service is open, on loopback only unless \
                         auth.allow_insecure). Roles: viewer (reads), trader (predict, outcomes, \
                         reads), operator (experiments, rollouts, halts, model reload, rollback, \
                         bars, reads).",
                    ))
                    .build(),
            ),
        );
    }
}

/// An optional request body (`request_body(content = Option<T>)`) is written as `T`, not as
/// "`T` or null": the body is left out, not sent as `null` (which is refused 400, not an
/// object).
struct OptionalBodies;

impl Modify for OptionalBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, Required, schema::Schema};
        let operations = openapi
            .paths
            .paths
            .values_mut()
            .flat_map(|item| {
                [
                    &mut item.get,
                    &mut item.put,
                    &mut item.post,
                    &mut item.delete,
                ]
            })
            .flatten();
        for op in operations {
            let Some(body) = &mut op.request_body else {
                continue;
            };
            if body.required == Some(Required::True) {
                continue;
            }
            for content in body.content.values_mut() {
                if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema
                    && let [RefOr::T(Schema::Object(null)), inner] = one_of.items.as_slice()
                    && null.schema_type
                        == utoipa::openapi::schema::SchemaType::Type(utoipa::openapi::Type::Null)
                {
                    content.schema = Some(inner.clone());
                }
            }
        }
    }
}

/// The document as served and committed: pretty JSON with a trailing newline, built once.
pub fn document() -> &'static str {
    static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
        // Serializing a document of strings, maps and numbers cannot fail.
        let mut text = ApiDoc::openapi().to_pretty_json().unwrap_or_default();
        text.push('\n');
        text
    });
    &DOCUMENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_document_is_the_generated_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == document(),
            "{} is not what the code generates: regenerate it with \
             `cargo run --bin tradeserve -- openapi > crates/tradeserve-server/openapi.json`",
            path.display()
        );
    }

    #[test]
    fn every_operation_says_what_it_answers() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        assert_eq!(paths.len(), 23);
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                let summary = op["summary"].as_str().unwrap_or_default();
                assert!(!summary.is_empty(), "{method} {path}: no summary");
                let responses = op["responses"].as_object().unwrap();
                assert!(
                    responses.keys().any(|s| s.starts_with('2')),
                    "{method} {path}: no success response"
                );
                for (status, r) in responses {
                    let described = r["description"].as_str().unwrap_or_default();
                    assert!(
                        !described.is_empty(),
                        "{method} {path} {status}: no description"
                    );
                    // Every error is in the error shape (the 403 of a decision: that, or the
                    // rejected decision).
                    if status.starts_with(['4', '5']) {
                        let schema = r.pointer("/content/application~1json/schema").unwrap();
                        let named = schema["$ref"].as_str().unwrap_or_default();
                        let error = "#/components/schemas/Error";
                        let either = doc["components"]["schemas"]["Refused"].to_string();
                        assert!(
                            named == error
                                || (named == "#/components/schemas/Refused"
                                    && either.contains(error)),
                            "{method} {path} {status}: {schema}"
                        );
                    }
                }
            }
        }
    }
}
