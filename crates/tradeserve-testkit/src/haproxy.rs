//! A real HAProxy (Debian's package) on a free loopback port in front of a fleet of replicas:
//! health checks on `/health/ready`, and retries of a request that failed before any answer
//! (connection refused or reset, an empty response) on another replica — safe for a decision
//! only because a retried order carries its idempotency key. Stopped by its process group.

use std::path::PathBuf;
use std::process::Command;

use crate::{Managed, free_port, http_ok};

/// HAProxy balancing `127.0.0.1:PORT` over replicas.
pub struct Haproxy {
    _process: Managed,
    /// The address clients use.
    pub addr: String,
    /// Its statistics page (`/stats;csv`).
    stats_port: u16,
    _tmp: tempfile::TempDir,
}

/// What HAProxy counted for the fleet's backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct BackendStats {
    /// Requests sent again after a failure with no answer (`wretr`).
    pub retries: u64,
    /// Of them, sent to another replica (`wredis`).
    pub redispatches: u64,
    /// Requests that got no answer from any replica (`eresp` + `econ`).
    pub errors: u64,
}

impl Haproxy {
    /// The `haproxy` executable: `TRADESERVE_HAPROXY`, or Debian's.
    pub fn binary() -> PathBuf {
        std::env::var("TRADESERVE_HAPROXY")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from("/usr/sbin/haproxy"))
    }

    /// The configuration for `replicas` (`HOST:PORT` each).
    pub fn config(port: u16, stats_port: u16, replicas: &[String]) -> String {
        let servers: String = replicas
            .iter()
            .enumerate()
            .map(|(i, addr)| format!("    server r{i} {addr} check\n"))
            .collect();
        format!(
            "global
    maxconn 4096
defaults
    mode http
    timeout connect 500ms
    timeout client 30s
    timeout server 10s
    timeout queue 5s
    # A request that got no answer (refused, reset, empty) goes to another replica, up to 3
    # times: a decision carries its idempotency key, so a retried order is not booked twice.
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
frontend trading
    bind 127.0.0.1:{port}
    default_backend replicas
frontend stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats
backend replicas
    balance roundrobin
    option httpchk GET /health/ready
    http-check expect status 200
    default-server inter 200ms fastinter 100ms downinter 200ms fall 1 rise 2
{servers}"
        )
    }

    /// Start in front of `replicas`; returns once it listens.
    pub fn start(replicas: &[String]) -> Haproxy {
        let bin = Haproxy::binary();
        assert!(
            bin.is_file(),
            "{} not found: run scripts/test.sh, which installs Debian's haproxy",
            bin.display()
        );
        let tmp = tempfile::tempdir().expect("tempdir");
        let (port, stats_port) = (free_port(), free_port());
        let config = tmp.path().join("haproxy.cfg");
        std::fs::write(&config, Haproxy::config(port, stats_port, replicas)).expect("config");
        let mut process = Managed::spawn(
            "haproxy",
            tmp.path(),
            Command::new(bin).arg("-db").arg("-f").arg(&config),
        );
        process.wait_until(|| http_ok(stats_port, "/stats"));
        Haproxy {
            _process: process,
            addr: format!("127.0.0.1:{port}"),
            stats_port,
            _tmp: tmp,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The backend's counters, from the statistics page.
    pub fn backend_stats(&self) -> BackendStats {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.stats_port)).expect("stats");
        s.write_all(b"GET /stats;csv HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .expect("stats request");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("stats response");
        let csv = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or("")
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let column = |row: &[&str], name: &str| -> u64 {
            header
                .iter()
                .position(|h| *h == name)
                .and_then(|i| row.get(i)?.parse().ok())
                .unwrap_or(0)
        };
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|row| row.first() == Some(&"replicas") && row.get(1) == Some(&"BACKEND"))
            .map(|row| BackendStats {
                retries: column(&row, "wretr"),
                redispatches: column(&row, "wredis"),
                errors: column(&row, "eresp") + column(&row, "econ"),
            })
            .unwrap_or_default()
    }
}
