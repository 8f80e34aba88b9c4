//! Tests of the configuration's assembly: defaults, the file, the environment (every section
//! covered, a misspelled variable refused), the cross-section checks, and every range rule that
//! is a type (a zero duration or count is refused while reading, naming the key).

use super::*;
use tradeserve_core::types::Role;

/// An environment provider that sees nothing, so tests do not depend on the shell.
fn load(file: Option<&Path>, listen: Option<&str>) -> Result<Config, ConfigError> {
    Config::load_from(
        file,
        listen,
        Env::prefixed("TRADESERVE_TEST_NOTHING_"),
        None,
    )
}

#[test]
fn defaults_are_valid() {
    let c = load(None, None).unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(
        c.server.request_deadline,
        tradeserve_core::bounded::PositiveDuration::millis(40)
    );
}

#[test]
fn the_example_file_documents_exactly_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/tradeserve.example.toml");
    assert_eq!(load(Some(&path), None).unwrap(), Config::default());
}

#[test]
fn file_and_listen_override_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[server]\nrequest_deadline = \"25ms\"\n[risk]\nmax_daily_orders = 7\nrestricted_symbols = [\"GME\"]\n[models.versions]\nbull_specialist = \"2\"\n",
    )
    .unwrap();
    let c = load(Some(&path), Some("127.0.0.1:0")).unwrap();
    assert_eq!(
        c.server.request_deadline,
        tradeserve_core::bounded::PositiveDuration::millis(25)
    );
    assert_eq!(c.server.listen, "127.0.0.1:0");
    assert_eq!(c.risk.max_daily_orders, 7);
    assert_eq!(c.risk.restricted_symbols, vec!["GME".to_owned()]);
    assert_eq!(c.models.versions.bull_specialist, "2");
    assert_eq!(c.models.versions.bear_specialist, "1");
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail API fixes the error type
fn environment_overrides_the_file() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("c.toml", "[server]\nmax_in_flight = 10\n")?;
        jail.set_env("TRADESERVE_SERVER__MAX_IN_FLIGHT", "20");
        jail.set_env("TRADESERVE_SIZING__LOT_SIZE", "100");
        jail.set_env("TRADESERVE_LISTEN", "127.0.0.1:9999");
        jail.set_env("TRADESERVE_RISK__RESTRICTED_SYMBOLS", r#"["GME"]"#);
        jail.set_env("TRADESERVE_MODELS__VERSIONS__BULL_SPECIALIST", "2");
        jail.set_env("TRADESERVE_SERVER__REQUEST_DEADLINE", "25ms");
        // Exponent notation without a decimal point is a number too.
        jail.set_env("TRADESERVE_RISK__MAX_POSITION_NOTIONAL", "1e12");
        jail.set_env("TRADESERVE_RISK__MAX_ORDER_NOTIONAL", "2.5e6");
        jail.set_env("TRADESERVE_MODELS__BACKENDS__BULL_SPECIALIST", "torchserve");
        jail.set_env(
            "TRADESERVE_MODELS__BACKENDS__VERSIONS__BULL_SPECIALIST__1",
            "in_process",
        );
        let c = Config::load(Some(Path::new("c.toml")), None).map_err(|e| e.to_string())?;
        use tradeserve_models::remote::BackendKind;
        assert_eq!(
            c.models.backends.of(Role::BullSpecialist, "1"),
            BackendKind::InProcess
        );
        assert_eq!(
            c.models.backends.of(Role::BullSpecialist, "2"),
            BackendKind::Torchserve
        );
        assert_eq!(
            c.server.max_in_flight,
            std::num::NonZeroUsize::new(20).unwrap()
        );
        assert_eq!(c.sizing.lot_size, std::num::NonZeroU64::new(100).unwrap());
        assert_eq!(c.server.listen, "127.0.0.1:9999");
        assert_eq!(c.risk.max_position_notional, 1e12);
        assert_eq!(c.risk.max_order_notional, 2.5e6);
        assert_eq!(c.risk.restricted_symbols, vec!["GME".to_owned()]);
        assert_eq!(c.models.versions.bull_specialist, "2");
        assert_eq!(
            c.server.request_deadline,
            tradeserve_core::bounded::PositiveDuration::millis(25)
        );
        Ok(())
    });
}

#[test]
fn a_single_underscore_between_section_and_key_is_refused() {
    let err = misspelled_env(["TRADESERVE_SERVER_REQUEST_DEADLINE".to_owned()].into_iter())
        .unwrap_err()
        .to_string();
    assert!(err.contains("TRADESERVE_SERVER__REQUEST_DEADLINE"), "{err}");
    // The right spelling, the listen shortcut and the test harness's variables pass.
    let fine = [
        "TRADESERVE_SERVER__REQUEST_DEADLINE",
        "TRADESERVE_LISTEN",
        "TRADESERVE_MLFLOW",
        "TRADESERVE_CACHE",
        "PATH",
    ];
    misspelled_env(fine.iter().map(|s| s.to_string())).unwrap();
}

#[test]
fn every_section_refuses_a_single_underscore() {
    // The sections of the example file (which documents every key) are exactly the ones
    // the check knows.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/tradeserve.example.toml");
    let example: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
    let mut documented: Vec<String> = example.keys().map(|k| k.to_uppercase()).collect();
    let mut known = sections();
    documented.sort();
    known.sort();
    assert_eq!(known, documented);
    assert_eq!(known.len(), 13);
    for section in known {
        let name = format!("TRADESERVE_{section}_SOME_KEY");
        let err = misspelled_env([name.clone()].into_iter())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("TRADESERVE_{section}__SOME_KEY")),
            "{name}: {err}"
        );
    }
}

#[test]
fn kafka_alone_needs_the_shared_ledger() {
    let mut c = Config::default();
    c.events.sink = SinkKind::Kafka;
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("ledger.store = \"redis\""), "{err}");
    c.ledger.store = crate::ledger::LedgerStore::Redis;
    c.validate().unwrap();
    c.ledger.store = crate::ledger::LedgerStore::Memory;
    c.events.sink = SinkKind::Both;
    c.validate().unwrap();
}

#[test]
fn the_operator_lane_listens_only_on_a_loopback_or_private_address() {
    let mut c = Config::default();
    for ok in [
        "127.0.0.1:9091",
        "10.1.2.3:9091",
        "192.168.0.9:0",
        "[::1]:9091",
        "[fd00::7]:9091",
    ] {
        c.server.admin_listen = Some(ok.into());
        c.validate().unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for (bad, why) in [
        ("0.0.0.0:9091", "not a loopback or private address"),
        ("8.8.8.8:9091", "not a loopback or private address"),
        ("[::]:9091", "not a loopback or private address"),
        ("localhost:9091", "not an IP:PORT address"),
        ("127.0.0.1:8080", "server.listen's address"),
    ] {
        c.server.admin_listen = Some(bad.into());
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("server.admin_listen") && err.contains(why),
            "{bad}: {err}"
        );
    }
}

#[test]
fn bad_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[server]\nlisten = \"nowhere\"\n", "server.listen"),
        ("[server]\nbogus = 1\n", "bogus"),
        ("[risk]\nmax_concentration = 2.0\n", "max_concentration"),
        ("[sizing]\nlot_size = 0\n", "lot_size"),
        (
            "[server]\nrequest_deadline = \"soon\"\n",
            "request_deadline",
        ),
        (
            "[models.versions]\nregime_detector = \"\"\n",
            "regime_detector",
        ),
        (
            "[models]\nsource = \"mlflow\"\n[models.mlflow]\ntracking_uri = \"ftp://x\"\n",
            "tracking_uri",
        ),
        (
            "[models]\nsource = \"mlflow\"\n[models.mlflow.roles.trend]\nname = \"x\"\n",
            "roles.trend",
        ),
        ("[models]\nsource = \"s3\"\n", "source"),
        (
            "[models.backends]\nbull_specialist = \"triton\"\n",
            "bull_specialist",
        ),
        (
            "[models.backends]\nbull_specialist = \"kserve_v2\"\n[models.kserve_v2]\nurl = \"ftp://x\"\n",
            "models.kserve_v2.url",
        ),
        (
            "[models.backends.versions.bull_specialist]\n\"2\" = \"triton\"\n",
            "triton",
        ),
    ];
    for (text, key) in cases {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        let err = load(Some(&path), None).unwrap_err().to_string();
        assert!(err.contains(key), "{text:?} → {err}");
    }
    let missing = load(Some(Path::new("/nonexistent.toml")), None);
    assert!(missing.unwrap_err().to_string().contains("does not exist"));
}

#[test]
fn a_zero_duration_or_count_is_refused_while_reading_and_the_error_names_the_key() {
    let durations = [
        "server.request_deadline",
        "server.header_read_timeout",
        "server.body_read_timeout",
        "server.idle_timeout",
        "server.tls.reload_interval",
        "events.fsync_interval",
        "ledger.timeout",
        "control.store_timeout",
        "models.mlflow.request_timeout",
        "models.remote.status_interval",
        "models.remote.circuit_open_for",
        "features.live.max_bar_age",
        "models.torchserve.connect_timeout",
        "models.torchserve.register_timeout",
        "models.tfserving.connect_timeout",
        "models.kserve_v2.connect_timeout",
    ];
    let counts = [
        "server.max_in_flight",
        "server.max_connections",
        "risk.max_order_quantity",
        "risk.max_orders_per_second_symbol",
        "risk.max_orders_per_second_desk",
        "risk.repeated_execution_max",
        "sizing.lot_size",
        "idempotency.max_entries",
        "features.live.retain_bars",
        "models.remote.batch_max_rows",
        "models.remote.batch_in_flight",
        "models.remote.circuit_failures",
        "models.torchserve.max_in_flight",
        "models.torchserve.initial_workers",
        "models.torchserve.batch_size",
        "models.tfserving.max_in_flight",
        "models.kserve_v2.max_in_flight",
        "explain.max_in_flight",
    ];
    let cases = durations
        .map(|k| {
            (
                k,
                "\"0s\"",
                "\"250ms\"",
                "expected a duration greater than zero",
            )
        })
        .into_iter()
        .chain(counts.map(|k| (k, "0", "3", "expected a nonzero")));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    for (dotted, zero, fine, expected) in cases {
        let (section, key) = dotted.rsplit_once('.').unwrap();
        std::fs::write(&path, format!("[{section}]\n{key} = {zero}\n")).unwrap();
        let err = load(Some(&path), None).unwrap_err().to_string();
        assert!(
            err.contains(expected) && err.contains(dotted),
            "{dotted} → {err}"
        );
        std::fs::write(&path, format!("[{section}]\n{key} = {fine}\n")).unwrap();
        load(Some(&path), None).unwrap();
    }
}

#[test]
fn grpc_addresses_are_checked() {
    let mut c = Config::default();
    c.server.grpc_listen = Some("127.0.0.1:50051".into());
    c.validate().unwrap_or_else(|e| panic!("{e}"));
    for (bad, why) in [
        ("localhost:50051", "not an IP:PORT address"),
        ("127.0.0.1:8080", "an HTTP listener's address"),
    ] {
        c.server.grpc_listen = Some(bad.into());
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("server.grpc_listen") && err.contains(why),
            "{bad}: {err}"
        );
    }
    // Checked when a role uses the backend.
    let mut c = Config::default();
    c.models.backends.bull_specialist = tradeserve_models::remote::BackendKind::KserveV2;
    c.models.kserve_v2.protocol = tradeserve_models::remote::grpc::WireProtocol::Grpc;
    c.models.kserve_v2.grpc_url = "https://ks:8081".into();
    let err = c.validate().unwrap_err().to_string();
    assert!(
        err.contains("models.kserve_v2.grpc_url") && err.contains("TLS"),
        "{err}"
    );
    c.models.kserve_v2.grpc_url = "ks:8081".into();
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("must be http://HOST:PORT"), "{err}");
    let mut c = Config::default();
    c.models.backends.bear_specialist = tradeserve_models::remote::BackendKind::Torchserve;
    c.models.torchserve.protocol = tradeserve_models::remote::grpc::WireProtocol::Grpc;
    c.models.torchserve.grpc_url = "http://127.0.0.1:7070".into();
    c.validate().unwrap_or_else(|e| panic!("{e}"));
}
