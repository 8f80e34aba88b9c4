//! A real Prometheus server (Debian's `prometheus`; `TRADESERVE_PROMETHEUS` overrides the
//! path) on a free loopback port, with its configuration, rule files and storage in a
//! temporary folder, stopped by its process group when dropped.

use std::path::PathBuf;
use std::process::Command;

use crate::{Managed, free_port, http_ok};

pub struct PrometheusServer {
    _process: Managed,
    pub port: u16,
    _tmp: tempfile::TempDir,
}

impl PrometheusServer {
    /// The `prometheus` executable: `TRADESERVE_PROMETHEUS` or the one on `PATH`.
    pub fn binary() -> PathBuf {
        std::env::var("TRADESERVE_PROMETHEUS")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from("prometheus"))
    }

    /// Start with `config` as `prometheus.yml`, and `files` (name, contents) beside it (rule
    /// files the configuration names); wait until it is ready.
    pub fn start(config: &str, files: &[(&str, &str)]) -> PrometheusServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join("prometheus.yml"), config).expect("prometheus.yml");
        for (name, contents) in files {
            std::fs::write(tmp.path().join(name), contents).expect("rule file");
        }
        let port = free_port();
        let mut process = Managed::spawn(
            "prometheus",
            tmp.path(),
            Command::new(PrometheusServer::binary()).args([
                "--config.file=prometheus.yml".to_owned(),
                "--storage.tsdb.path=data".to_owned(),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--log.level=warn".to_owned(),
            ]),
        );
        process.wait_until(|| http_ok(port, "/-/ready"));
        PrometheusServer {
            _process: process,
            port,
            _tmp: tmp,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Alert rules `rules` (a rule file's text) with every `for:` shortened to 1 s: a test cannot
/// wait minutes for an alert to fire.
pub fn quick_rules(rules: &str) -> String {
    rules
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: 1s", &l[..l.len() - l.trim_start().len()]),
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
