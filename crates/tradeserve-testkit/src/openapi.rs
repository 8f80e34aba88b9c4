//! Holds API responses to the OpenAPI document the service publishes
//! (`crates/tradeserve-server/openapi.json`, OpenAPI 3.1, whose schemas are JSON Schema
//! 2020-12): the operation must be documented, the status listed for it, and a JSON body valid
//! against the response's schema, formats (`uuid`, `date-time`) included.
//!
//! Checked more strictly than published: every object with documented `properties` is held to
//! them (no undocumented field passes), unless the document says `additionalProperties`
//! itself. Clients may ignore fields they do not know; the tests make sure there are none.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use serde_json::{Map, Value, json};

/// The published document, tightened for checking, and the validators compiled from it.
struct Checker {
    doc: Value,
    components: Value,
    compiled: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

fn checker() -> &'static Checker {
    static CHECKER: OnceLock<Checker> = OnceLock::new();
    CHECKER.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tradeserve-server/openapi.json");
        let text = std::fs::read_to_string(&path).expect("read openapi.json");
        let doc: Value = serde_json::from_str(&text).expect("openapi.json is JSON");
        let mut components = doc["components"].clone();
        let open = allof_targets(&doc);
        if let Some(Value::Object(schemas)) = components.get_mut("schemas") {
            for (name, schema) in schemas.iter_mut() {
                tighten(schema, open.contains(name));
            }
        }
        Checker {
            doc,
            components,
            compiled: Mutex::new(HashMap::new()),
        }
    })
}

/// Components referenced directly by an `allOf` member: they must stay open at their top
/// level, or the other members' properties would be refused (the composing schema closes).
fn allof_targets(doc: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::Array(members)) = m.get("allOf") {
                    for r in members.iter().filter_map(|x| x.get("$ref")?.as_str()) {
                        out.insert(r.rsplit('/').next().unwrap_or_default().to_owned());
                    }
                }
                m.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(doc, &mut out);
    out
}

/// Close every object schema with documented `properties` (and every `allOf` composition)
/// that does not say `additionalProperties` itself; `open` leaves this level as it is.
fn tighten(schema: &mut Value, open: bool) {
    let Value::Object(m) = schema else {
        if let Value::Array(a) = schema {
            a.iter_mut().for_each(|x| tighten(x, false));
        }
        return;
    };
    let says = m.contains_key("additionalProperties") || m.contains_key("unevaluatedProperties");
    let closes = m.contains_key("properties") || m.contains_key("allOf");
    if closes && !says && !open {
        m.insert("unevaluatedProperties".into(), Value::Bool(false));
    }
    for (k, v) in m.iter_mut() {
        match (k.as_str(), v) {
            // The members of a composition stay open: the composition closes.
            ("allOf", Value::Array(members)) => members.iter_mut().for_each(|x| tighten(x, true)),
            ("properties", Value::Object(props)) => {
                props.values_mut().for_each(|x| tighten(x, false))
            }
            ("enum" | "example" | "required", _) => {}
            (_, v) => tighten(v, false),
        }
    }
}

/// The documented path template `uri` falls under (an exact path before a template).
fn template<'a>(paths: &'a Map<String, Value>, uri: &str) -> Option<&'a str> {
    let path = uri.split(['?', '#']).next().unwrap_or(uri);
    if paths.contains_key(path) {
        return paths.get_key_value(path).map(|(k, _)| k.as_str());
    }
    let segments: Vec<&str> = path.split('/').collect();
    paths.keys().map(String::as_str).find(|t| {
        let parts: Vec<&str> = t.split('/').collect();
        parts.len() == segments.len()
            && parts
                .iter()
                .zip(&segments)
                .all(|(p, s)| *p == *s || (p.starts_with('{') && p.ends_with('}') && !s.is_empty()))
    })
}

/// Whether a response agrees with the document; `Err` says how it does not.
pub fn check(method: &str, uri: &str, status: u16, body: &[u8]) -> Result<(), String> {
    let c = checker();
    let paths = c.doc["paths"].as_object().ok_or("no paths")?;
    let Some(t) = template(paths, uri) else {
        // Any undocumented path is answered 404 in the error shape.
        return match status {
            404 => check_error(c, &format!("{method} {uri}"), body),
            _ => Err(format!("{method} {uri}: no such documented path")),
        };
    };
    let op = &paths[t][method.to_ascii_lowercase()];
    if !op.is_object() {
        // The router answers a method it does not route with 405 in the error shape.
        return match status {
            405 => check_error(c, &format!("{method} {t}"), body),
            _ => Err(format!("{method} {t}: operation not documented")),
        };
    }
    let responses = &op["responses"];
    let response = responses
        .get(status.to_string())
        .or_else(|| responses.get("default"))
        .ok_or_else(|| format!("{method} {t}: status {status} not documented"))?;
    let Some(schema) = response.pointer("/content/application~1json/schema") else {
        return Ok(()); // not JSON (text/plain metrics): nothing to validate
    };
    let key = format!("{method} {t} {status}");
    let validator = {
        let mut compiled = c.compiled.lock();
        match compiled.get(&key) {
            Some(v) => Arc::clone(v),
            None => {
                let v = Arc::new(compile(schema, &c.components)?);
                compiled.insert(key.clone(), Arc::clone(&v));
                v
            }
        }
    };
    validate(&validator, &key, body)
}

/// A body in the error shape (`#/components/schemas/Error`).
fn check_error(c: &Checker, key: &str, body: &[u8]) -> Result<(), String> {
    let schema = json!({"$ref": "#/components/schemas/Error"});
    let v = compile(&schema, &c.components)?;
    validate(&v, key, body)
}

fn validate(validator: &jsonschema::Validator, key: &str, body: &[u8]) -> Result<(), String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "{key}: body is not JSON ({e}): {}",
            String::from_utf8_lossy(body)
        )
    })?;
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{key}: {} for {value}", errors.join("; ")))
    }
}

fn compile(schema: &Value, components: &Value) -> Result<jsonschema::Validator, String> {
    let mut root = schema.clone();
    tighten(&mut root, false);
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "allOf": [root],
        "components": components,
    });
    jsonschema::options()
        .should_validate_formats(true)
        .build(&root)
        .map_err(|e| format!("the schema does not compile: {e}"))
}

/// [`check`], panicking with its reason.
pub fn assert_documented(method: &str, uri: &str, status: u16, body: &[u8]) {
    if let Err(why) = check(method, uri, status, body) {
        panic!("response not as documented in openapi.json: {why}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_held_to_the_document() {
        let error = br#"{"error":{"code":"not_found","message":"no such rollout"}}"#;
        check("GET", "/api/v1/rollouts/r-1", 404, error).unwrap();
        // A status the operation does not list, an undocumented path or method.
        assert!(check("GET", "/api/v1/rollouts/r-1", 418, error).is_err());
        check("GET", "/api/v1/nowhere", 404, error).unwrap();
        assert!(check("GET", "/api/v1/nowhere", 200, error).is_err());
        check("PATCH", "/api/v1/rollouts/r-1", 405, error).unwrap();
        assert!(check("PATCH", "/api/v1/rollouts/r-1", 404, error).is_err());
        // A missing required field, a wrong type, an undocumented field, not JSON.
        let bad: [&[u8]; 4] = [
            br#"{"error":{"code":"x"}}"#,
            br#"{"error":{"code":1,"message":"m"}}"#,
            br#"{"error":{"code":"x","message":"m"},"extra":1}"#,
            b"not json",
        ];
        for body in bad {
            assert!(check("GET", "/api/v1/rollouts/r-1", 404, body).is_err());
        }
    }

    #[test]
    fn a_rejected_decision_is_a_decision_plus_its_error() {
        let c = checker();
        assert!(c.doc["components"]["schemas"]["RejectedDecision"].is_object());
        let live = br#"{"status":"live"}"#;
        check("GET", "/health/live", 200, live).unwrap();
        assert!(check("GET", "/health/live", 200, br#"{"status":"live","x":1}"#).is_err());
    }
}
