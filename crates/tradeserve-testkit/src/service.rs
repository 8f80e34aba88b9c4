//! The `tradeserve` binary as a child process on a free port (stopped when dropped), a
//! keep-alive load of clients against it, and `tradeserve risk rebuild-shared` as a tool.

use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::HANG;

/// The `tradeserve` binary running as a child process on `127.0.0.1:0`, with JSON logs read
/// from its stderr. Killed (SIGKILL) and reaped when dropped, unless it already exited.
pub struct ServiceProcess {
    pub child: Child,
    /// `127.0.0.1:PORT` it listens on (from its `listening` log line).
    pub addr: String,
    /// Every JSON log line after `listening`, in order.
    pub logs: std::sync::mpsc::Receiver<serde_json::Value>,
    /// The log lines up to and including `listening`.
    pub startup_logs: Vec<serde_json::Value>,
}

impl ServiceProcess {
    /// Start `bin serve --listen 127.0.0.1:0` with `envs` (plus JSON logs at info level) and
    /// wait for it to listen.
    pub fn start(bin: &str, envs: &[(&str, String)]) -> ServiceProcess {
        ServiceProcess::start_with(bin, &[], envs)
    }

    /// [`Self::start`] with more arguments after `serve --listen 127.0.0.1:0` (e.g.
    /// `--config FILE`).
    pub fn start_with(bin: &str, args: &[&str], envs: &[(&str, String)]) -> ServiceProcess {
        ServiceProcess::start_at(bin, "127.0.0.1:0", args, envs)
    }

    /// [`Self::start_with`] on a given address (a replica that restarts where a load balancer
    /// expects it).
    pub fn start_at(
        bin: &str,
        listen: &str,
        args: &[&str],
        envs: &[(&str, String)],
    ) -> ServiceProcess {
        use std::io::{BufRead, BufReader};
        let mut command = Command::new(bin);
        command
            .args(["serve", "--listen", listen])
            .args(args)
            .env("TRADESERVE_SERVER__LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            // A deadline that only catches a hang (the 40 ms default is about a release build
            // on a quiet machine, these are debug builds on any machine); a test about the
            // deadline passes its own in `envs`.
            .env(
                "TRADESERVE_SERVER__REQUEST_DEADLINE",
                format!("{}s", HANG.as_secs()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start tradeserve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        // From here on the child is owned by `ServiceProcess`, whose Drop kills and reaps it.
        let mut service = ServiceProcess {
            child,
            addr: String::new(),
            logs: rx,
            startup_logs: Vec::new(),
        };
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let deadline = Instant::now() + HANG;
        loop {
            let v = service
                .logs
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("no 'listening' log line");
            service.startup_logs.push(v.clone());
            if v["fields"]["message"] == "listening" {
                let addr = v["fields"]["addr"].as_str().expect("addr").to_owned();
                assert!(
                    addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
                    "{addr}"
                );
                service.addr = addr;
                return service;
            }
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        // Stop by PID if a test failed before its planned shutdown.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Decision ids that `clients` keep-alive clients, each sending predictions back to back over
/// raw HTTP/1.1, received (200 or 403) until the server went away (for kill -9 tests).
pub fn hammer(addr: &str, clients: usize) -> Vec<std::thread::JoinHandle<Vec<String>>> {
    use std::io::{Read, Write};
    (0..clients)
        .map(|i| {
            let addr = addr.to_owned();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let Ok(mut s) = std::net::TcpStream::connect(&addr) else {
                    return got;
                };
                let body = format!(r#"{{"symbol":"{}"}}"#, ["AAPL", "MSFT", "NVDA"][i % 3]);
                let bytes = format!(
                    "POST /api/v1/predict HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes();
                loop {
                    if s.write_all(&bytes).is_err() {
                        return got;
                    }
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Read one response (head + content-length body), or stop at EOF.
                    let complete = loop {
                        match s.read(&mut chunk) {
                            Ok(0) | Err(_) => break None,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        let text = String::from_utf8_lossy(&buf).into_owned();
                        if let Some((head, body)) = text.split_once("\r\n\r\n") {
                            let len: usize = head
                                .to_ascii_lowercase()
                                .lines()
                                .find_map(|l| {
                                    l.strip_prefix("content-length: ")
                                        .map(|v| v.trim().parse().expect("content-length"))
                                })
                                .expect("a content-length header");
                            if body.len() >= len {
                                break Some((head[9..12].to_owned(), body[..len].to_owned()));
                            }
                        }
                    };
                    let Some((status, body)) = complete else {
                        return got;
                    };
                    if status == "200" || status == "403" {
                        let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON decision");
                        got.push(v["decision_id"].as_str().expect("decision_id").to_owned());
                    }
                }
            })
        })
        .collect()
}

/// `BIN risk rebuild-shared ARGS --by ci --reason test --write` on the shared risk ledger at
/// `redis_url` under `prefix` (`--flat`: a new, empty ledger, which every replica needs before
/// it approves an order); its JSON output. Fails the test when the command fails.
pub fn rebuild_shared_ledger(
    bin: &str,
    redis_url: &str,
    prefix: &str,
    args: &[&str],
) -> serde_json::Value {
    rebuild_shared_ledger_with(bin, redis_url, prefix, args, &[])
}

/// [`rebuild_shared_ledger`] with more settings in the environment (`TRADESERVE_…` pairs).
pub fn rebuild_shared_ledger_with(
    bin: &str,
    redis_url: &str,
    prefix: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> serde_json::Value {
    let out = Command::new(bin)
        .envs(env.iter().copied())
        .args(["risk", "rebuild-shared"])
        .args(args)
        .args(["--by", "ci", "--reason", "test", "--write"])
        .env("TRADESERVE_LEDGER__STORE", "redis")
        .env("TRADESERVE_LEDGER__REDIS_URL", redis_url)
        .env("TRADESERVE_LEDGER__REDIS_PREFIX", prefix)
        .output()
        .expect("run rebuild-shared");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).expect("rebuild-shared prints JSON")
}

/// A new API key from `bin auth new-key`: (the key, its `[[keys]]` entry for a keys file, with
/// `roles` (comma separated) and the `extra` lines, e.g. `"rate_per_minute = 1\n"`).
pub fn new_api_key(bin: &str, id: &str, roles: &str, extra: &str) -> (String, String) {
    let out = crate::run_ok(
        Command::new(bin).args(["auth", "new-key", "--id", id, "--role", roles, "--json"]),
    );
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).expect("new-key JSON");
    let field = |name: &str| made[name].as_str().expect("new-key field").to_owned();
    let roles: Vec<String> = roles.split(',').map(|r| format!("{r:?}")).collect();
    let entry = format!(
        "[[keys]]\nid = {id:?}\nhash = {:?}\nroles = [{}]\n{extra}",
        field("hash"),
        roles.join(", ")
    );
    (field("key"), entry)
}
