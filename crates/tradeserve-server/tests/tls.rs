//! TLS through the built binary, with a CA made inside the test: decisions over HTTPS; a
//! plaintext client refused (counted); a renewed certificate served to new connections
//! without a restart; a broken renewal keeps the old certificate; with a client CA, only
//! clients holding a certificate it signed get in (mTLS).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tradeserve_testkit::grpc::python_client;
use tradeserve_testkit::{HANG, ServiceProcess};

const BIN: &str = env!("CARGO_BIN_EXE_tradeserve");

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn new_ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A leaf certificate for `names` signed by `ca`: (certificate PEM, key PEM, DER).
fn leaf(ca: &Ca, cn: &str, names: &[&str]) -> (String, String, Vec<u8>) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

/// Replace a file whole (written aside, renamed in), as a secret mount or certbot does.
fn replace(path: &Path, text: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

fn client(ca: &Ca, identity: Option<(&str, &str)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
        .timeout(HANG);
    if let Some((cert, key)) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
    }
    b.build().unwrap()
}

/// The certificate the server presents to a new connection.
async fn presented(addr: &str, ca: &Ca) -> Vec<u8> {
    let mut roots = RootCertStore::empty();
    let der = CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap();
    roots.add(der).unwrap();
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let ip = ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(ip, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn start(dir: &Path, extra: &[(&str, String)]) -> ServiceProcess {
    let mut env = vec![
        (
            "TRADESERVE_SERVER__TLS__CERT_FILE",
            dir.join("cert.pem").display().to_string(),
        ),
        (
            "TRADESERVE_SERVER__TLS__KEY_FILE",
            dir.join("key.pem").display().to_string(),
        ),
        (
            "TRADESERVE_SERVER__TLS__RELOAD_INTERVAL",
            "100ms".to_owned(),
        ),
        (
            "TRADESERVE_EVENTS__AUDIT_LOG",
            dir.join("audit.jsonl").display().to_string(),
        ),
        (
            "TRADESERVE_CONTROL__FILE",
            dir.join("control.json").display().to_string(),
        ),
    ];
    env.extend(extra.iter().cloned());
    ServiceProcess::start(BIN, &env)
}

#[tokio::test]
async fn decisions_over_tls_and_a_renewed_certificate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca("TradeServe test CA");
    let (cert, key, first) = leaf(&ca, "first", &["127.0.0.1", "localhost"]);
    std::fs::write(dir.path().join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), &key).unwrap();
    let server = start(dir.path(), &[]);
    let https = format!("https://{}", server.addr);
    let c = client(&ca, None);
    let r = c
        .post(format!("{https}/api/v1/predict"))
        .body(r#"{"symbol":"AAPL","risk_check":false}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let d: serde_json::Value = r.json().await.unwrap();
    assert_eq!(d["symbol"], "AAPL");
    assert_eq!(presented(&server.addr, &ca).await, first);

    // Plain HTTP on the TLS port: no answer, and the failed handshake is counted.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/health/live", server.addr))
        .timeout(HANG)
        .send()
        .await;
    assert!(plain.is_err());
    let metrics = c
        .get(format!("{https}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tradeserve_tls_handshake_failures_total 1"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("tls"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Renewal: new files, same names; new connections get the new certificate.
    let (cert2, key2, second) = leaf(&ca, "second", &["127.0.0.1"]);
    replace(&dir.path().join("key.pem"), &key2);
    replace(&dir.path().join("cert.pem"), &cert2);
    let deadline = Instant::now() + HANG;
    while presented(&server.addr, &ca).await != second {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = c.get(format!("{https}/health/ready")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // A broken renewal (a certificate without its key) keeps the one that works.
    replace(
        &dir.path().join("cert.pem"),
        &leaf(&ca, "third", &["127.0.0.1"]).0,
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(presented(&server.addr, &ca).await, second);
    let r = c.get(format!("{https}/health/live")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn with_a_client_ca_only_its_clients_get_in() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca("TradeServe test CA");
    let (cert, key, _) = leaf(&ca, "server", &["127.0.0.1"]);
    std::fs::write(dir.path().join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), &key).unwrap();
    let clients = new_ca("desk clients CA");
    std::fs::write(dir.path().join("clients.pem"), &clients.pem).unwrap();
    let server = start(
        dir.path(),
        &[(
            "TRADESERVE_SERVER__TLS__CLIENT_CA_FILE",
            dir.path().join("clients.pem").display().to_string(),
        )],
    );
    let url = format!("https://{}/health/live", server.addr);
    let (desk_cert, desk_key, _) = leaf(&clients, "desk-1", &["desk-1.example"]);
    let desk = client(&ca, Some((&desk_cert, &desk_key)));
    assert_eq!(desk.get(&url).send().await.unwrap().status(), 200);
    // No certificate, or one from another CA: the handshake fails, nothing is served.
    assert!(client(&ca, None).get(&url).send().await.is_err());
    let rogue = new_ca("rogue CA");
    let (rogue_cert, rogue_key, _) = leaf(&rogue, "desk-1", &["desk-1.example"]);
    assert!(
        client(&ca, Some((&rogue_cert, &rogue_key)))
            .get(&url)
            .send()
            .await
            .is_err()
    );
}

/// The gRPC listener serves the same certificates (ALPN h2) and the same client CA: the
/// Python client (grpcio) decides over TLS and, with the client CA, only with a certificate it
/// signed; plaintext HTTP/2 to the TLS port gets nothing.
#[test]
#[ignore = "needs grpcio (scripts/test.sh installs it in the KServe venv)"]
fn grpc_over_tls_and_mtls_with_the_same_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca("TradeServe test CA");
    let (cert, key, _) = leaf(&ca, "server", &["127.0.0.1"]);
    let clients = new_ca("desk clients CA");
    let (desk_cert, desk_key, _) = leaf(&clients, "desk-1", &["desk-1.example"]);
    for (name, text) in [
        ("cert.pem", &cert),
        ("key.pem", &key),
        ("ca.pem", &ca.pem),
        ("clients.pem", &clients.pem),
        ("desk.pem", &desk_cert),
        ("desk.key", &desk_key),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let path = |name: &str| dir.path().join(name).display().to_string();
    let grpc = ("TRADESERVE_SERVER__GRPC_LISTEN", "127.0.0.1:0".to_owned());
    let ask = ["--symbol", "AAPL", "--no-risk-check"];
    let ca_pem = path("ca.pem");
    let server = start(dir.path(), std::slice::from_ref(&grpc));
    let target = tradeserve_testkit::grpc::address(&server);
    let (ok, d) = python_client(&target, &[&ask[..], &["--ca", &ca_pem]].concat());
    assert!(ok, "{d}");
    assert_eq!(d["symbol"], "AAPL");
    let (ok, plain) = python_client(&target, &[&ask[..], &["--timeout", "2"]].concat());
    assert!(!ok);
    assert_eq!(plain["code"], "UNAVAILABLE", "{plain}");
    drop(server);

    let client_ca = (
        "TRADESERVE_SERVER__TLS__CLIENT_CA_FILE",
        path("clients.pem"),
    );
    let server = start(dir.path(), &[grpc, client_ca]);
    let target = tradeserve_testkit::grpc::address(&server);
    let (desk, desk_key) = (path("desk.pem"), path("desk.key"));
    let mtls = [
        "--ca",
        &ca_pem,
        "--client-cert",
        &desk,
        "--client-key",
        &desk_key,
    ];
    let (ok, d) = python_client(&target, &[&ask[..], &mtls].concat());
    assert!(ok, "{d}");
    let no_cert = [&ask[..], &["--ca", &ca_pem, "--timeout", "2"]].concat();
    let (ok, refused) = python_client(&target, &no_cert);
    assert!(!ok);
    assert_eq!(refused["code"], "UNAVAILABLE", "{refused}");
}

#[test]
fn a_missing_key_or_a_mismatched_pair_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca("TradeServe test CA");
    let (cert, _, _) = leaf(&ca, "a", &["127.0.0.1"]);
    let (_, other_key, _) = leaf(&ca, "b", &["127.0.0.1"]);
    std::fs::write(dir.path().join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), &other_key).unwrap();
    let run = |envs: &[(&str, String)]| {
        let mut c = std::process::Command::new(BIN);
        c.args(["check-config"]);
        for (k, v) in envs {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let cert_env = (
        "TRADESERVE_SERVER__TLS__CERT_FILE",
        dir.path().join("cert.pem").display().to_string(),
    );
    let err = run(std::slice::from_ref(&cert_env));
    assert!(err.contains("needs both cert_file and key_file"), "{err}");
    let err = run(&[
        cert_env,
        (
            "TRADESERVE_SERVER__TLS__KEY_FILE",
            dir.path().join("key.pem").display().to_string(),
        ),
    ]);
    assert!(err.contains("do not go together"), "{err}");
    assert!(!err.contains("PRIVATE KEY"), "{err}");
}

/// Over TLS too, the header timeout is a total from a request's first byte: a connection that
/// finished its handshake and then trickles its headers is cut after `header_read_timeout`
/// (1 s here), not after the idle timeout (10 min). The bound only tells the two apart.
#[tokio::test]
async fn trickling_headers_over_tls_are_cut_at_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca("trickle CA");
    let (cert, key, _) = leaf(&ca, "server", &["127.0.0.1"]);
    std::fs::write(dir.path().join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), &key).unwrap();
    let server = start(
        dir.path(),
        &[
            ("TRADESERVE_SERVER__HEADER_READ_TIMEOUT", "1s".to_owned()),
            ("TRADESERVE_SERVER__IDLE_TIMEOUT", "10m".to_owned()),
        ],
    );
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
        .unwrap();
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let ip = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(ip, tcp).await.unwrap();
    // Idle first (the watchdog asleep on the idle deadline), then the headers trickle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    tls.write_all(b"POST /api/v1/predict HTTP/1.1\r\nhost")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "trickling headers over TLS held the connection past the header timeout"
        );
        if tls.write_all(b"x").await.is_err() {
            break;
        }
        let read = tokio::time::timeout(Duration::from_millis(100), tls.read(&mut buf)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            break;
        }
    }
}
