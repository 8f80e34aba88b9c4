//! A real `redis-server` on a free loopback port (no persistence unless asked), stopped by
//! its process group.

use std::path::PathBuf;
use std::process::Command;

use crate::{Managed, free_port};

/// A real Redis server on a free loopback port, with nothing persisted (a fresh state per test).
pub struct RedisServer {
    _process: Managed,
    pub port: u16,
    _tmp: tempfile::TempDir,
}

impl RedisServer {
    /// The `redis-server` executable: `TRADESERVE_REDIS` or the one on `PATH`.
    pub fn binary() -> PathBuf {
        std::env::var("TRADESERVE_REDIS")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from("redis-server"))
    }

    pub fn start() -> RedisServer {
        RedisServer::start_on(free_port())
    }

    /// A fresh, empty server on `port` (e.g. to restart one after killing it).
    pub fn start_on(port: u16) -> RedisServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut process = Managed::spawn(
            "redis",
            tmp.path(),
            Command::new(RedisServer::binary()).args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ]),
        );
        process.wait_until(|| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        RedisServer {
            _process: process,
            port,
            _tmp: tmp,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}
