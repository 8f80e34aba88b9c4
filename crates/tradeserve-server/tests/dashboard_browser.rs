//! The built-in dashboard in a real headless Chromium (Debian's `chromium`;
//! `TRADESERVE_CHROMIUM` overrides the path) against the real binary under load: the page
//! draws its charts, and the figures it shows are the ones `/metrics` holds (decisions,
//! statuses, latency percentiles interpolated from the same buckets). A screenshot is saved
//! (to `TRADESERVE_SCREENSHOT` when set: that is how `docs/dashboard.png` was made).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use tradeserve_testkit::ServiceProcess;

mod load_common;
use load_common::{Api, assert_no_failures, serial};

const BIN: &str = env!("CARGO_BIN_EXE_tradeserve");

fn chromium() -> PathBuf {
    std::env::var("TRADESERVE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("chromium"))
}

/// Run headless Chromium on `url` with `args`; its stdout.
fn browse(profile: &Path, url: &str, args: &[&str]) -> String {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--hide-scrollbars",
            "--window-size=1440,1010",
            // Let the page poll a few times before the DOM is taken.
            "--virtual-time-budget=4000",
            &format!("--user-data-dir={}", profile.display()),
        ])
        .args(args)
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", chromium().display()));
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `data-value` of the element with `id`.
fn value_of(dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    attr(&dom[at..], "data-value")
}

/// The first `name="…"` attribute value in `html`.
fn attr(html: &str, name: &str) -> String {
    let start = html.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
    html[start..][..html[start..].find('"').unwrap()].to_owned()
}

/// `data-<key>="<v>" data-value="<n>"` rows of a table.
fn rows(dom: &str, key: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let needle = format!("data-{key}=\"");
    let mut rest = dom;
    while let Some(i) = rest.find(&needle) {
        let tail = &rest[i..];
        out.insert(attr(tail, &format!("data-{key}")), attr(tail, "data-value"));
        rest = &tail[needle.len()..];
    }
    out
}

/// A series' value in the Prometheus text exposition.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} not in /metrics"))
        .parse()
        .unwrap()
}

/// Prometheus's `histogram_quantile` over the decision route's buckets in `/metrics`.
fn quantile_from_metrics(text: &str, q: f64) -> f64 {
    let prefix =
        "tradeserve_request_duration_seconds_bucket{protocol=\"http\",route=\"predict\",le=\"";
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(|l| {
            let (le, rest) = l.split_once('"').unwrap();
            let count: f64 = rest.rsplit(' ').next().unwrap().parse().unwrap();
            (le.parse().unwrap_or(f64::INFINITY), count)
        })
        .collect();
    let total = buckets.last().unwrap().1;
    let rank = q * total;
    let i = buckets.iter().position(|(_, c)| *c >= rank).unwrap();
    if buckets[i].0.is_infinite() {
        return buckets[i - 1].0;
    }
    let (start, below) = if i == 0 { (0.0, 0.0) } else { buckets[i - 1] };
    start + (buckets[i].0 - start) * (rank - below) / (buckets[i].1 - below)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1e-9)
}

#[test]
#[ignore = "needs chromium (scripts/test.sh installs it)"]
fn the_dashboard_shows_what_metrics_hold_in_a_real_browser() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = |p: &str| dir.path().join(p).display().to_string();
    let started = Instant::now();
    let server = ServiceProcess::start(
        BIN,
        &[
            ("TRADESERVE_EVENTS__AUDIT_LOG", path("audit.jsonl")),
            ("TRADESERVE_CONTROL__FILE", path("control.json")),
            // A window longer than the test on any machine, so the page's figures since the
            // start must equal the /metrics totals.
            ("TRADESERVE_TELEMETRY__STATS_WINDOW", "1h".into()),
        ],
    );
    let api = Api::new(&server.url());
    let spec = json!({"experiment_id": "bull-v2", "role": "bull_specialist", "control_model_version": "1",
        "treatment_model_version": "2", "traffic_split": 0.5, "bucketing": "decision"});
    let (s, e) = api.call("POST", "/api/v1/experiments", spec);
    assert_eq!(s, 201, "{e}");
    let url = format!("{}/dashboard", server.url());
    let profile = dir.path().join("chromium");

    // Under load: the screenshot, charts and all.
    let loader = api.load_in_background(300.0, 4_500);
    std::thread::sleep(Duration::from_secs(12));
    for _ in 0..15 {
        let (s, _) = api.call("POST", "/api/v1/predict", json!({"symbol": "NOPE"}));
        assert_eq!(s, 404);
    }
    let shot = std::env::var("TRADESERVE_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("dashboard.png"));
    browse(
        &profile,
        &url,
        &[&format!("--screenshot={}", shot.display())],
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    assert_no_failures(&loader.join().unwrap());

    // Load over: the counters stand still, so the page and /metrics must agree exactly.
    let dom = browse(&profile, &url, &["--dump-dom"]);
    let text = api.text("/metrics");
    assert!(
        started.elapsed() < Duration::from_secs(3600),
        "the window (an hour) must cover the whole test"
    );
    assert!(
        attr(&dom[dom.find("<body").unwrap()..], "data-updates")
            .parse::<u32>()
            .unwrap()
            >= 1
    );
    for chart in ["latency-chart", "rate-chart"] {
        let at = dom.find(&format!("id=\"{chart}\"")).unwrap();
        let points: u32 = attr(&dom[at..], "data-points").parse().unwrap();
        assert!(points >= 5, "{chart}: {points} points drawn");
    }
    assert_eq!(value_of(&dom, "ready"), "true");
    let decided: f64 = ["BUY", "SELL", "HOLD"]
        .iter()
        .flat_map(|a| ["approved", "rejected"].map(|o| (*a, o)))
        .map(|(a, o)| {
            metric(
                &text,
                &format!("tradeserve_decisions_total{{action=\"{a}\",outcome=\"{o}\"}}"),
            )
        })
        .sum();
    let window = rows(&dom, "name");
    assert_eq!(window["decisions"].parse::<f64>().unwrap(), decided);
    let statuses = rows(&dom, "status");
    for (status, shown) in &statuses {
        let series = format!(
            "tradeserve_http_responses_total{{protocol=\"http\",route=\"predict\",status=\"{status}\"}}"
        );
        assert_eq!(
            shown.parse::<f64>().unwrap(),
            metric(&text, &series),
            "{status}"
        );
    }
    assert_eq!(statuses.get("404").map(String::as_str), Some("15"));
    for (id, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
        let shown: f64 = value_of(&dom, id).parse().unwrap();
        let want = quantile_from_metrics(&text, q) * 1e3;
        assert!(
            close(shown, want),
            "{id}: page {shown} ms, /metrics {want} ms"
        );
    }
    let arms = rows(&dom, "arms");
    assert!(arms.contains_key("experiment"), "the experiment is shown");
    eprintln!(
        "dashboard: {decided} decisions, p99 {} ms, screenshot {} ({} bytes)",
        value_of(&dom, "p99"),
        shot.display(),
        png.len()
    );
}
