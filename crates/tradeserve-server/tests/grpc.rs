//! The gRPC listener through the built binary, with clients generated from the same `.proto`
//! files (tonic): the native `Decisions/Predict` and the Open Inference Protocol's ensemble
//! answer exactly what REST answers for the same request; errors carry the REST code in a
//! `google.rpc.ErrorInfo`; keys and roles are REST's; the caller's `grpc-timeout` shortens the
//! deadline; an idempotency key replays; a role's model answers its raw probabilities; the
//! operator's halt stops gRPC decisions; health, reflection, the audit log and the response
//! metrics (`protocol="grpc"`) see every call.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt as _;
use tradeserve_grpc::inference as oip;
use tradeserve_grpc::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use tradeserve_grpc::inference::model_infer_request::InferInputTensor;
use tradeserve_grpc::tradeserve::v1 as pb;
use tradeserve_grpc::tradeserve::v1::control_client::ControlClient;
use tradeserve_grpc::tradeserve::v1::decisions_client::DecisionsClient;
use tradeserve_testkit::service::new_api_key;
use tradeserve_testkit::{HANG, ServiceProcess};

const BIN: &str = env!("CARGO_BIN_EXE_tradeserve");
const AT: &str = "2025-10-15T15:00:00Z";

struct Setup {
    server: ServiceProcess,
    channel: Channel,
    trader: String,
    viewer: String,
    operator: String,
    limited: String,
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT` of the gRPC listener.
    channel_uri: String,
}

async fn start() -> Setup {
    start_with(&[]).await
}

/// A service with keys (trader, viewer, operator, and `limited`: a trader allowed one
/// request a minute) and a gRPC listener, with `extra` settings.
async fn start_with(extra: &[(&'static str, String)]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (trader, t) = new_api_key(BIN, "desk-1", "trader", "");
    let (viewer, v) = new_api_key(BIN, "view-1", "viewer", "");
    let (operator, o) = new_api_key(BIN, "ops-1", "operator", "");
    let (limited, l) = new_api_key(BIN, "desk-2", "trader", "rate_per_minute = 1\n");
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, format!("{t}{v}{o}{l}")).unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let mut envs = vec![
        ("TRADESERVE_AUTH__KEYS_FILE", keys.display().to_string()),
        ("TRADESERVE_EVENTS__AUDIT_LOG", path("audit.jsonl")),
        ("TRADESERVE_CONTROL__FILE", path("control.json")),
        ("TRADESERVE_SERVER__GRPC_LISTEN", "127.0.0.1:0".into()),
    ];
    envs.extend(extra.iter().cloned());
    let server = ServiceProcess::start(BIN, &envs);
    let grpc = server
        .startup_logs
        .iter()
        .find(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("gRPC listening"))
        })
        .and_then(|v| v["fields"]["grpc"].as_str())
        .expect("the gRPC address in the start-up log")
        .to_owned();
    let channel_uri = format!("http://{grpc}");
    let channel = Channel::from_shared(channel_uri.clone())
        .unwrap()
        .timeout(HANG)
        .connect()
        .await
        .unwrap();
    Setup {
        server,
        channel,
        trader,
        viewer,
        operator,
        limited,
        dir,
        channel_uri,
    }
}

fn with_key<T>(message: T, key: &str) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    r
}

async fn rest(s: &Setup, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/predict", s.server.url()))
        .bearer_auth(&s.trader)
        .json(body)
        .timeout(HANG)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn predict_request(symbol: &str) -> pb::PredictRequest {
    pb::PredictRequest {
        symbol: symbol.into(),
        timestamp: Some(AT.into()),
        risk_check: Some(false),
        ..Default::default()
    }
}

/// The error's `ErrorInfo` reason and its `field`.
fn reason(status: &Status) -> (String, Option<String>) {
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .expect("ErrorInfo in the status");
    assert_eq!(info.domain, "tradeserve");
    (info.reason, info.metadata.get("field").cloned())
}

/// The decision fields every protocol must agree on.
fn same_decision(grpc: &pb::Decision, rest: &Value) {
    let action = pb::Action::try_from(grpc.action).unwrap().as_str_name();
    assert_eq!(action, rest["action"]);
    assert_eq!(grpc.confidence, rest["confidence"].as_f64().unwrap());
    assert_eq!(
        grpc.recommended_quantity,
        rest["recommended_quantity"].as_u64().unwrap()
    );
    let r = grpc.regime_probabilities.unwrap();
    let rr = &rest["regime_probabilities"];
    for (a, b) in [
        (r.bull, "bull"),
        (r.bear, "bear"),
        (r.sideways, "sideways"),
        (r.entropy, "entropy"),
    ] {
        assert_eq!(a, rr[b].as_f64().unwrap(), "{b}");
    }
    let w = grpc.strategy_weights.unwrap();
    let rw = &rest["strategy_weights"];
    assert_eq!(w.bull_specialist, rw["bull_specialist"].as_f64().unwrap());
    assert_eq!(w.bear_specialist, rw["bear_specialist"].as_f64().unwrap());
    assert_eq!(
        w.sideways_specialist,
        rw["sideways_specialist"].as_f64().unwrap()
    );
    let m = grpc.metadata.as_ref().unwrap();
    assert_eq!(m.model_version, rest["metadata"]["model_version"]);
    assert_eq!(m.features_as_of, rest["metadata"]["features_as_of"]);
    let versions: Value = serde_json::to_value(&m.model_versions).unwrap();
    assert_eq!(versions, rest["metadata"]["model_versions"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_predict_answers_what_rest_answers_with_the_same_errors_keys_and_records() {
    let s = start().await;
    let mut decisions = DecisionsClient::new(s.channel.clone());
    for symbol in ["AAPL", "MSFT", "QQQ"] {
        let grpc = decisions
            .predict(with_key(predict_request(symbol), &s.trader))
            .await
            .unwrap()
            .into_inner();
        let (status, rest) = rest(
            &s,
            &json!({"symbol": symbol, "timestamp": AT, "risk_check": false}),
        )
        .await;
        assert_eq!(status, 200, "{rest}");
        same_decision(&grpc, &rest);
        assert_ne!(grpc.decision_id, rest["decision_id"], "two decisions");
        assert!(grpc.risk_validation.is_none() && grpc.error.is_none() && !grpc.repeat);
    }

    // With the risk checks and an explanation: the same ten checks, the players in order.
    let mut checked = predict_request("AAPL");
    checked.risk_check = None;
    checked.explain = true;
    let d = decisions
        .predict(with_key(checked, &s.trader))
        .await
        .unwrap()
        .into_inner();
    let risk = d.risk_validation.expect("risk_validation");
    assert_eq!(risk.checks.len(), 10, "{:?}", risk.checks);
    assert!(
        risk.checks
            .values()
            .all(|v| v == "pass" || v == "fail" || v == "skip"),
        "{:?}",
        risk.checks
    );
    let e = d.explanation.expect("explanation");
    assert_eq!(e.method, "shap");
    let names: Vec<&str> = e.values.iter().map(|a| a.name.as_str()).collect();
    let players: Vec<&str> = tradeserve_core::explain::player_names().collect();
    assert_eq!(names, players);

    // Errors: the REST code in ErrorInfo, the field when there is one.
    let err = decisions
        .predict(with_key(predict_request("ZZZZ"), &s.trader))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(reason(&err).0, "unknown_symbol");
    let err = decisions
        .predict(with_key(predict_request("aapl!"), &s.trader))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        reason(&err),
        ("invalid_symbol".into(), Some("symbol".into()))
    );
    let mut bad = predict_request("AAPL");
    bad.strategy_override = Some("momentum".into());
    let err = decisions
        .predict(with_key(bad, &s.trader))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).1.as_deref()),
        (Code::InvalidArgument, Some("strategy_override"))
    );

    // Keys and roles.
    let err = decisions
        .predict(Request::new(predict_request("AAPL")))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).0.as_str()),
        (Code::Unauthenticated, "unauthorized")
    );
    let err = decisions
        .predict(with_key(predict_request("AAPL"), "ts_not_a_key"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = decisions
        .predict(with_key(predict_request("AAPL"), &s.viewer))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).0.as_str()),
        (Code::PermissionDenied, "forbidden")
    );

    // A key over its quota: RESOURCE_EXHAUSTED, with when to retry.
    let first = decisions
        .predict(with_key(predict_request("AAPL"), &s.limited))
        .await;
    assert!(first.is_ok(), "{first:?}");
    let err = decisions
        .predict(with_key(predict_request("AAPL"), &s.limited))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).0.as_str()),
        (Code::ResourceExhausted, "rate_limited")
    );
    let retry = err.get_details_retry_info().expect("RetryInfo");
    assert!(
        retry.retry_delay.is_some_and(|d| d > Duration::ZERO),
        "{retry:?}"
    );

    // The caller's grpc-timeout shortens the deadline (1 µs: past before inference ends).
    // (A client of its own: tonic's channel enforces the timeout itself and may end the call
    // first, without the server's answer.)
    let plain = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<tonic::body::Body>();
    let origin: tonic::codegen::http::Uri = s.channel_uri.parse().unwrap();
    let mut untimed = DecisionsClient::with_origin(plain, origin);
    let mut hurried = with_key(predict_request("AAPL"), &s.trader);
    hurried.set_timeout(Duration::from_micros(1));
    let err = untimed.predict(hurried).await.unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).0.as_str()),
        (Code::DeadlineExceeded, "deadline_exceeded")
    );

    // An idempotency key: the first decision again, marked repeat; another request with it: 409.
    let mut keyed = predict_request("MSFT");
    keyed.client_order_id = Some("order-1".into());
    let first = decisions
        .predict(with_key(keyed.clone(), &s.trader))
        .await
        .unwrap()
        .into_inner();
    let again = decisions
        .predict(with_key(keyed.clone(), &s.trader))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.repeat && again.repeat);
    assert_eq!(first.decision_id, again.decision_id);
    assert_eq!(first.confidence, again.confidence);
    keyed.symbol = "AAPL".into();
    let err = decisions
        .predict(with_key(keyed, &s.trader))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).0.as_str()),
        (Code::AlreadyExists, "idempotency_conflict")
    );

    // Every decision answered over gRPC is in the audit log.
    let audit = std::fs::read_to_string(s.dir.path().join("audit.jsonl")).unwrap();
    for id in [&d.decision_id, &first.decision_id] {
        assert_eq!(
            audit.matches(id.as_str()).count(),
            1,
            "{id} once in the audit log"
        );
    }
    assert!(!audit.contains(&format!(
        "\"decision_id\":\"{}\",\"repeat\"",
        again.decision_id
    )));

    // The response metrics count them as grpc, under REST's statuses.
    let metrics = reqwest::get(format!("{}/metrics", s.server.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |status: &str| -> f64 {
        let labels = [
            "route=\"predict\"".to_owned(),
            format!("status=\"{status}\""),
            "protocol=\"grpc\"".to_owned(),
        ];
        metrics
            .lines()
            .filter(|l| l.starts_with("tradeserve_http_responses_total{"))
            .find(|l| labels.iter().all(|p| l.contains(p.as_str())))
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0.0, |v| v.parse().unwrap())
    };
    assert_eq!(
        count("200"),
        7.0,
        "3 compared, 1 explained, 1 within quota, 2 keyed"
    );
    assert_eq!(count("404"), 1.0);
    assert_eq!(count("422"), 2.0);
    assert_eq!(count("401"), 2.0);
    assert_eq!(count("403"), 1.0);
    assert_eq!(count("504"), 1.0);
    assert_eq!(count("409"), 1.0);
    assert_eq!(count("429"), 1.0);
}

fn bytes_input(name: &str, value: &str) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: "BYTES".into(),
        shape: vec![1],
        contents: Some(oip::InferTensorContents {
            bytes_contents: vec![value.as_bytes().to_vec()],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn risk_off() -> std::collections::HashMap<String, oip::InferParameter> {
    use oip::infer_parameter::ParameterChoice;
    [(
        "risk_check".to_owned(),
        oip::InferParameter {
            parameter_choice: Some(ParameterChoice::BoolParam(false)),
        },
    )]
    .into()
}

fn output<'a>(r: &'a oip::ModelInferResponse, name: &str) -> &'a oip::InferTensorContents {
    let o = r
        .outputs
        .iter()
        .find(|o| o.name == name)
        .unwrap_or_else(|| panic!("no output {name}"));
    o.contents.as_ref().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_inference_protocol_serves_the_ensemble_and_each_role() {
    let s = start().await;
    let mut oip_client = GrpcInferenceServiceClient::new(s.channel.clone());
    let live = oip_client
        .server_live(oip::ServerLiveRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(live.live);
    let ready = oip_client
        .server_ready(with_key(oip::ServerReadyRequest {}, &s.viewer))
        .await
        .unwrap()
        .into_inner();
    assert!(ready.ready);
    let meta = oip_client
        .model_metadata(with_key(
            oip::ModelMetadataRequest {
                name: "tradeserve".into(),
                version: String::new(),
            },
            &s.viewer,
        ))
        .await
        .unwrap()
        .into_inner();
    let inputs: Vec<(&str, &str)> = meta
        .inputs
        .iter()
        .map(|t| (t.name.as_str(), t.datatype.as_str()))
        .collect();
    assert_eq!(inputs, [("symbol", "BYTES"), ("timestamp", "BYTES")]);
    assert_eq!(meta.outputs.len(), 7);
    assert_eq!(meta.versions.len(), 1);
    let err = oip_client
        .model_ready(with_key(
            oip::ModelReadyRequest {
                name: "nope".into(),
                version: String::new(),
            },
            &s.viewer,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // The ensemble decides as REST does.
    let request = oip::ModelInferRequest {
        model_name: "tradeserve".into(),
        id: "req-1".into(),
        inputs: vec![bytes_input("symbol", "AAPL"), bytes_input("timestamp", AT)],
        parameters: risk_off(),
        ..Default::default()
    };
    let answer = oip_client
        .model_infer(with_key(request.clone(), &s.trader))
        .await
        .unwrap()
        .into_inner();
    let (_, rest) = rest(
        &s,
        &json!({"symbol": "AAPL", "timestamp": AT, "risk_check": false}),
    )
    .await;
    assert_eq!(answer.id, "req-1");
    assert_eq!(answer.model_version, rest["metadata"]["model_version"]);
    assert_eq!(
        output(&answer, "action").bytes_contents,
        [rest["action"].as_str().unwrap().as_bytes()]
    );
    assert_eq!(
        output(&answer, "confidence").fp64_contents,
        [rest["confidence"].as_f64().unwrap()]
    );
    assert_eq!(
        output(&answer, "quantity").uint64_contents,
        [rest["recommended_quantity"].as_u64().unwrap()]
    );
    assert_eq!(output(&answer, "approved").bool_contents, [true]);
    let rp = &rest["regime_probabilities"];
    let regime: Vec<f64> = ["bull", "bear", "sideways"]
        .iter()
        .map(|k| rp[*k].as_f64().unwrap())
        .collect();
    assert_eq!(
        output(&answer, "regime_probabilities").fp64_contents,
        regime
    );

    // Only the outputs asked for; bad tensors and parameters are INVALID_ARGUMENT.
    let mut some = request.clone();
    some.outputs = vec![oip::model_infer_request::InferRequestedOutputTensor {
        name: "action".into(),
        ..Default::default()
    }];
    let answer = oip_client
        .model_infer(with_key(some, &s.trader))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.outputs.len(), 1);
    let mut no_symbol = request.clone();
    no_symbol.inputs.remove(0);
    let err = oip_client
        .model_infer(with_key(no_symbol, &s.trader))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).1.as_deref()),
        (Code::InvalidArgument, Some("symbol"))
    );
    let mut odd = request.clone();
    odd.parameters
        .insert("turbo".into(), oip::InferParameter::default());
    assert_eq!(
        oip_client
            .model_infer(with_key(odd, &s.trader))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let err = oip_client
        .model_infer(with_key(request.clone(), &s.viewer))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "deciding needs the trader role"
    );

    // A role's model on its own: rows of its input width in, three probabilities per row out.
    let meta = oip_client
        .model_metadata(with_key(
            oip::ModelMetadataRequest {
                name: "regime_detector".into(),
                version: String::new(),
            },
            &s.viewer,
        ))
        .await
        .unwrap()
        .into_inner();
    let width = usize::try_from(meta.inputs[0].shape[1]).unwrap();
    let row: Vec<f32> = (0..width).map(|i| i as f32 / 10.0).collect();
    let rows: Vec<f32> = row.iter().chain(&row).copied().collect();
    let raw = oip::ModelInferRequest {
        model_name: "regime_detector".into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![2, i64::try_from(width).unwrap()],
            ..Default::default()
        }],
        raw_input_contents: vec![rows.iter().flat_map(|v| v.to_le_bytes()).collect()],
        ..Default::default()
    };
    let answer = oip_client
        .model_infer(with_key(raw.clone(), &s.viewer))
        .await
        .unwrap()
        .into_inner();
    let p = &output(&answer, "probabilities").fp32_contents;
    assert_eq!(p.len(), 6);
    assert_eq!(p[..3], p[3..], "the same row, the same answer");
    assert!((p[..3].iter().sum::<f32>() - 1.0).abs() < 1e-4, "{p:?}");
    let mut narrow = raw;
    narrow.inputs[0].shape = vec![1, 2];
    narrow.raw_input_contents = vec![[0f32, 1.0].iter().flat_map(|v| v.to_le_bytes()).collect()];
    assert_eq!(
        oip_client
            .model_infer(with_key(narrow, &s.viewer))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_halts_over_grpc_and_health_and_reflection_answer() {
    let s = start().await;
    let mut control = ControlClient::new(s.channel.clone());
    let mut decisions = DecisionsClient::new(s.channel.clone());
    // A request on which the bundled models trade shares (an order the halt can withhold).
    let mut trades = None;
    'search: for symbol in ["AAPL", "MSFT", "NVDA", "AMZN", "SPY", "TSLA"] {
        for hour in 14..=20 {
            let mut r = predict_request(symbol);
            r.timestamp = Some(format!("2025-10-20T{hour}:30:00Z"));
            let d = decisions
                .predict(with_key(r.clone(), &s.trader))
                .await
                .unwrap()
                .into_inner();
            if d.recommended_quantity > 0 {
                trades = Some(r);
                break 'search;
            }
        }
    }
    let mut checked = trades.expect("a request that trades");
    let halt = pb::CreateHaltRequest {
        scope: Some(pb::HaltScope {
            r#type: "symbol".into(),
            symbol: checked.symbol.clone(),
            ..Default::default()
        }),
        reason: "desk review".into(),
    };
    let err = control
        .create_halt(with_key(halt.clone(), &s.trader))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "halting needs the operator role"
    );
    let halted = control
        .create_halt(with_key(halt, &s.operator))
        .await
        .unwrap()
        .into_inner();
    assert!(halted.halt_id.starts_with("halt-"));
    assert_eq!(halted.status, "active");
    let json: Value = serde_json::from_str(&halted.json).unwrap();
    assert_eq!(json["created"]["by"], "ops-1");

    // The halt withholds a gRPC decision: answered, refused, with the halt named.
    checked.risk_check = None;
    let d = decisions
        .predict(with_key(checked, &s.trader))
        .await
        .unwrap()
        .into_inner();
    let risk = d.risk_validation.clone().unwrap();
    assert!(!risk.approved, "{d:?}");
    assert_eq!(risk.checks["kill_switch"], "fail");
    assert_eq!(d.error.unwrap().code, "risk_rejected");
    assert!(
        risk.warnings.iter().any(|w| w.contains(&halted.halt_id)),
        "{:?}",
        risk.warnings
    );

    let released = control
        .release_halt(with_key(
            pb::ReleaseHaltRequest {
                halt_id: halted.halt_id.clone(),
                reason: String::new(),
            },
            &s.operator,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(released.status, "released");
    let bad = pb::CreateHaltRequest {
        scope: Some(pb::HaltScope {
            r#type: "planet".into(),
            ..Default::default()
        }),
        reason: "x".into(),
    };
    let err = control
        .create_halt(with_key(bad, &s.operator))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).1.as_deref()),
        (Code::InvalidArgument, Some("scope"))
    );
    let err = control
        .roll_back_rollout(with_key(
            pb::RollBackRolloutRequest {
                rollout_id: "ro-missing".into(),
                reason: String::new(),
            },
            &s.operator,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let killed = control
        .kill_switch(with_key(
            pb::KillSwitchRequest {
                reason: "drill".into(),
            },
            &s.operator,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(killed.persisted && killed.revision > 0);

    // Health: SERVING for the server and its services; reflection lists the services.
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let mut health = HealthClient::new(s.channel.clone());
    for service in [
        "",
        "tradeserve.v1.Decisions",
        "inference.GRPCInferenceService",
    ] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service:?}");
    }
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(s.channel.clone());
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([ask]))
        .await
        .unwrap()
        .into_inner();
    let Some(Ok(answer)) = tokio_stream::StreamExt::next(&mut answers).await else {
        panic!("no reflection answer");
    };
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a service list");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "inference.GRPCInferenceService",
            "tradeserve.v1.Control",
            "tradeserve.v1.Decisions"
        ]
    );
}

/// The load generator over gRPC: every scheduled decision answered over the shared HTTP/2
/// channel, each acknowledged decision in the audit log once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_decides_over_grpc() {
    let s = start().await;
    let load = tradeserve_loadgen::LoadConfig {
        url: s.channel_uri.clone(),
        rate: 400.0,
        requests: 300,
        warmup: 20,
        connections: 8,
        symbols: vec!["AAPL".into(), "MSFT".into(), "SPY".into()],
        extra: Some(json!({"risk_check": false}).as_object().unwrap().clone()),
        timeout: HANG,
        path: "/api/v1/predict".into(),
        headers: vec![("Authorization".into(), format!("Bearer {}", s.trader))],
        order_ids: Some("load".into()),
        grpc: Some(tradeserve_loadgen::GrpcLoad { channels: 1 }),
    };
    let report = tradeserve_loadgen::run(load).await.unwrap();
    assert_eq!(report.requests, 300);
    assert_eq!(
        report.statuses.get("200"),
        Some(&300),
        "{:?}",
        report.statuses
    );
    assert_eq!(report.decisions, 300);
    assert_eq!(
        (
            report.errors.connect,
            report.errors.io,
            report.errors.timeout
        ),
        (0, 0, 0)
    );
    assert!(report.server_latency_ms.p50 > 0.0);
    let audit = std::fs::read_to_string(s.dir.path().join("audit.jsonl")).unwrap();
    assert_eq!(report.acknowledged.len(), 320, "warm-up included");
    for a in &report.acknowledged {
        assert_eq!(audit.matches(a.decision_id.as_str()).count(), 1);
    }
    let bad = tradeserve_loadgen::LoadConfig {
        extra: Some(json!({"foo": 1}).as_object().unwrap().clone()),
        ..tradeserve_loadgen::LoadConfig {
            url: s.channel_uri.clone(),
            rate: 1.0,
            requests: 1,
            warmup: 0,
            connections: 1,
            symbols: vec!["AAPL".into()],
            extra: None,
            timeout: HANG,
            path: "/api/v1/predict".into(),
            headers: Vec::new(),
            order_ids: None,
            grpc: Some(tradeserve_loadgen::GrpcLoad { channels: 1 }),
        }
    };
    let err = tradeserve_loadgen::run(bad).await.unwrap_err();
    assert!(err.to_string().contains("foo"), "{err}");
}

/// SIGTERM drains the gRPC listener as it does the HTTP ones: the health service says
/// NOT_SERVING from the moment the drain begins, and a client that connects during the drain
/// delay is still answered (until the listener closes); a call that fails meanwhile fails as
/// not answered (UNAVAILABLE;
/// CANCELLED or tonic's UNKNOWN "transport error" for one sent as its connection went away) —
/// never another error — every decision answered is in the audit log and none is there
/// unanswered, and the process exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_drains_the_grpc_listener() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let mut s = start_with(&[("TRADESERVE_SERVER__DRAIN_DELAY", "3s".into())]).await;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(s.server.child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let (mut answered, mut not_serving) = (0, false);
    // Fresh connections until both were seen; bounded by rounds, and each call by a bound that
    // only catches a hang.
    for _ in 0..2_000 {
        if (not_serving && answered > 0) || s.server.child.try_wait().unwrap().is_some() {
            break;
        }
        let endpoint = Channel::from_shared(s.channel_uri.clone()).unwrap();
        let connect = endpoint.connect();
        let Ok(Ok(channel)) = tokio::time::timeout(HANG, connect).await else {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let mut health = HealthClient::new(channel.clone());
        let check = health.check(HealthCheckRequest {
            service: String::new(),
        });
        if let Ok(Ok(r)) = tokio::time::timeout(HANG, check).await {
            not_serving |= r.into_inner().status() == ServingStatus::NotServing;
        }
        let mut decisions = DecisionsClient::new(channel);
        let call = decisions.predict(with_key(predict_request("AAPL"), &s.trader));
        match tokio::time::timeout(HANG, call).await.expect("a call hung") {
            Ok(_) => answered += 1,
            Err(e)
                if matches!(e.code(), Code::Cancelled | Code::Unavailable)
                    || (e.code() == Code::Unknown && e.message() == "transport error") => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(
        not_serving,
        "health never said NOT_SERVING during the drain"
    );
    assert!(answered > 0, "no client answered during the drain delay");
    let audit = s.dir.path().join("audit.jsonl");
    let status = s.server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let recorded = std::fs::read_to_string(audit)
        .unwrap()
        .matches("\"event_type\":\"trading_decision\"")
        .count();
    assert_eq!(recorded, answered, "answered decisions and recorded ones");
}

/// The gRPC listener's connection cap and slow clients: a connection over
/// `server.grpc_max_connections` is closed at once and counted; one that never sends the
/// HTTP/2 preface is closed after `server.header_read_timeout` (it would hold a slot forever),
/// after which a client gets in again; a message over `server.body_limit_bytes` is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_and_silent_connections_do_not_lock_clients_out() {
    use std::io::Read;
    let s = start_with(&[
        ("TRADESERVE_SERVER__GRPC_MAX_CONNECTIONS", "2".into()),
        ("TRADESERVE_SERVER__HEADER_READ_TIMEOUT", "1s".into()),
    ])
    .await;
    let addr = s.channel_uri.trim_start_matches("http://").to_owned();
    let refused =
        || tradeserve_testkit::metric_sum(&s.server.addr, "tradeserve_connections_refused_total");
    let before = refused();
    // `s.channel` holds one slot; a silent connection takes the other.
    let mut silent = std::net::TcpStream::connect(&addr).unwrap();
    silent.set_read_timeout(Some(HANG)).unwrap();
    // Give the server the time to accept it, bounded by rounds: a third connection is closed
    // at once (EOF, nothing answered) once the cap is full.
    let mut over = false;
    for _ in 0..100 {
        let mut third = std::net::TcpStream::connect(&addr).unwrap();
        third.set_read_timeout(Some(HANG)).unwrap();
        let mut buf = [0u8; 64];
        if matches!(third.read(&mut buf), Ok(0)) {
            over = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(over, "a connection over the cap was not closed");
    assert!(refused() > before, "the refusal was not counted");
    // The silent one is closed by the server: read its SETTINGS, then EOF.
    let mut seen = Vec::new();
    let read = silent.read_to_end(&mut seen);
    assert!(
        read.is_ok(),
        "{read:?}: the silent connection was not closed"
    );
    // Its slot is free again: a new client decides (the slots of the probes above free as
    // the server sees them close: a few rounds at most).
    let mut decided = None;
    for _ in 0..100 {
        let endpoint = Channel::from_shared(s.channel_uri.clone()).unwrap();
        if let Ok(channel) = endpoint.connect().await {
            let mut decisions = DecisionsClient::new(channel);
            if let Ok(d) = decisions
                .predict(with_key(predict_request("AAPL"), &s.trader))
                .await
            {
                decided = Some((decisions, d.into_inner()));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut decisions, d) = decided.expect("no client got in after the silent one was closed");
    assert_eq!(d.symbol, "AAPL");
    // Over the body limit (16 KiB by default), as REST's 413.
    let big = predict_request(&"A".repeat(20_000));
    let err = decisions
        .predict(with_key(big, &s.trader))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
}
