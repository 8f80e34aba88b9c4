//! Keep-alive connections, through the built binary: a refusal made before the body is read
//! keeps its connection or says `Connection: close` (never a silent close), and SIGTERM under
//! keep-alive load drops no request that was sent before the listener closed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod load_common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tradeserve_loadgen::run_until;
use tradeserve_testkit::raw_http::{
    closed_within, connect, exchange, says_close, try_read_response,
};
use tradeserve_testkit::service::new_api_key;
use tradeserve_testkit::{HANG, ServiceProcess, eventually, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_tradeserve");
const PREDICT: &str = r#"{"symbol":"AAPL","risk_check":false}"#;

fn start(dir: &tempfile::TempDir, extra: &[(&str, String)]) -> ServiceProcess {
    let mut envs = vec![
        (
            "TRADESERVE_EVENTS__AUDIT_LOG",
            dir.path().join("audit.jsonl").display().to_string(),
        ),
        (
            "TRADESERVE_CONTROL__FILE",
            dir.path().join("control.json").display().to_string(),
        ),
    ];
    envs.extend(extra.iter().cloned());
    ServiceProcess::start(BIN, &envs)
}

/// Write a predict's headers, then (after a pause, as a client that writes them apart does)
/// its body; read the response. Returns the status and whether it said `Connection: close`.
fn refused_apart(s: &mut TcpStream, auth: &str, extra: &str) -> (u16, bool) {
    let head = format!(
        "POST /api/v1/predict HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n{auth}{extra}content-length: {}\r\n\r\n",
        PREDICT.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // The body write itself must not fail: the server has not closed under it.
    s.write_all(PREDICT.as_bytes())
        .unwrap_or_else(|e| panic!("writing the body after the headers: {e}"));
    let (status, head, _) = try_read_response(s).unwrap_or_else(|e| panic!("{auth}: {e}"));
    (status, says_close(&head))
}

/// Each refusal made from the headers, on one keep-alive connection whose client writes the
/// headers and the body apart: the refusal arrives, and the connection serves the next
/// request (or the refusal said `Connection: close` and the server then closed it).
#[test]
fn refusals_before_the_body_keep_the_connection_or_say_close() {
    let dir = tempfile::tempdir().unwrap();
    let (viewer, viewer_entry) = new_api_key(BIN, "viewer-1", "viewer", "rate_per_minute = 600\n");
    let (limited, limited_entry) = new_api_key(BIN, "slow-1", "trader", "rate_per_minute = 1\n");
    let (trader, trader_entry) = new_api_key(BIN, "desk-1", "trader", "rate_per_minute = 600\n");
    let keys = dir.path().join("keys.toml");
    std::fs::write(
        &keys,
        format!("{viewer_entry}{limited_entry}{trader_entry}"),
    )
    .unwrap();
    let server = start(
        &dir,
        &[("TRADESERVE_AUTH__KEYS_FILE", keys.display().to_string())],
    );
    let bearer = |k: &str| format!("authorization: Bearer {k}\r\n");
    // Use up the limited key's burst first (one a minute): decisions until it is refused.
    let mut granted = 0;
    loop {
        let mut s = connect(&server.addr);
        match refused_apart(&mut s, &bearer(&limited), "") {
            (200, _) => granted += 1,
            (429, _) => break,
            other => panic!("{other:?}"),
        }
        assert!(
            granted <= 2,
            "a key of one a minute had {granted} decisions at once"
        );
    }
    assert!(granted >= 1);
    let cases = [
        ("no key", String::new(), "", 401),
        ("an unknown key", bearer("nobody.0000"), "", 401),
        ("a viewer's key", bearer(&viewer), "", 403),
        ("a key over its quota", bearer(&limited), "", 429),
    ];
    for (what, auth, extra, want) in cases {
        let mut s = connect(&server.addr);
        for round in 0..5 {
            let (status, close) = refused_apart(&mut s, &auth, extra);
            assert_eq!(status, want, "{what}, round {round}");
            if close {
                assert!(
                    closed_within(&mut s, HANG),
                    "{what}: said close, stayed open"
                );
                s = connect(&server.addr);
                continue;
            }
            // Kept open: the connection serves the next request.
            let (status, _, _) = exchange(&mut s, b"GET /health/live HTTP/1.1\r\nhost: t\r\n\r\n");
            assert_eq!(status, 200, "{what}, round {round}: the next request");
        }
    }
    // A client that waits for `100 Continue` is not asked for its body: the refusal says close.
    let mut s = connect(&server.addr);
    let head = format!(
        "POST /api/v1/predict HTTP/1.1\r\nhost: t\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\r\n",
        PREDICT.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let (status, head, _) = try_read_response(&mut s).unwrap();
    assert_eq!(status, 401);
    assert!(says_close(&head), "{head}");
    // A declared body far over the limit is not read: 413, and it says close.
    let mut s = connect(&server.addr);
    let head = format!(
        "POST /api/v1/predict HTTP/1.1\r\nhost: t\r\n{}content-length: 10000000\r\n\r\n",
        bearer(&trader)
    );
    s.write_all(head.as_bytes()).unwrap();
    let (status, head, _) = try_read_response(&mut s).unwrap();
    assert_eq!(status, 413);
    assert!(says_close(&head), "{head}");
}

/// 64 keep-alive clients at 1,000 decisions a second through a SIGTERM: from the signal on
/// every response says `Connection: close`, so clients reconnect while the listener still
/// accepts; no request sent before the listener closed fails at the transport (the load's
/// I/O errors and timeouts are 0; only connections attempted after the close are refused),
/// and every decision a client received is in the audit log.
#[test]
fn sigterm_under_keep_alive_load_drops_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&dir, &[("TRADESERVE_SERVER__DRAIN_DELAY", "2s".into())]);
    let pid = Pid::from_raw(server.child.id() as i32);
    let audit = dir.path().join("audit.jsonl");
    let logged = || {
        std::fs::read_to_string(&audit)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    // Load until the listener has been closed for a while (connections refused), counted by
    // what happened rather than by time.
    let stop = Arc::new(AtomicBool::new(false));
    let addr = server.addr.clone();
    let stopper = {
        let stop = Arc::clone(&stop);
        let audit = audit.clone();
        std::thread::spawn(move || {
            wait_for("500 decisions logged", || {
                std::fs::read_to_string(&audit).is_ok_and(|t| t.lines().count() >= 500)
            });
            kill(pid, Signal::SIGTERM).unwrap();
            wait_for("the listener closed", || TcpStream::connect(&addr).is_err());
            std::thread::sleep(Duration::from_millis(500));
            stop.store(true, Ordering::Relaxed);
        })
    };
    let mut load = load_common::load(&format!("http://{}", server.addr), 1000.0, 1_000_000);
    load.connections = 64;
    load.extra = Some(serde_json::from_str(r#"{"risk_check":false}"#).unwrap());
    let report = load_common::runtime()
        .block_on(run_until(load, stop))
        .unwrap();
    stopper.join().unwrap();
    let status = eventually("an exit after SIGTERM", || server.child.try_wait().unwrap());
    assert!(status.success(), "exit status {status}");
    let r = &report;
    let seen = format!(
        "{} requests, {} decisions, statuses {:?}, errors {:?}",
        r.requests, r.decisions, r.statuses, r.errors
    );
    assert_eq!(r.errors.io, 0, "requests sent and not answered: {seen}");
    assert_eq!(r.errors.timeout, 0, "{seen}");
    assert!(
        r.errors.connect > 0,
        "the load outlasted the listener: {seen}"
    );
    assert!(r.decisions > 500, "{seen}");
    assert_eq!(
        r.statuses.get("200").copied(),
        Some(r.decisions),
        "every answer a decision: {seen}"
    );
    assert_eq!(
        logged() as u64,
        r.decisions,
        "every decision a client received is in the audit log"
    );
}
