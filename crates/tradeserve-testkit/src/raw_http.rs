//! HTTP/1.1 over a bare socket, for tests that need what a client library hides: writing
//! headers and body apart, reading exactly one response and seeing its `Connection` header,
//! noticing that the server closed the connection.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::HANG;

/// A connection to `addr` whose reads give up after [`HANG`].
pub fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(HANG)).expect("read timeout");
    s
}

/// A whole `POST path` with a JSON body.
pub fn post_bytes(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One response read from `s`: status, lower-cased head, body. Panics when the connection
/// closes before a whole response.
pub fn read_response(s: &mut TcpStream) -> (u16, String, String) {
    try_read_response(s).unwrap_or_else(|e| panic!("no response: {e}"))
}

/// One response read from `s`, or why there was none (closed, reset, timed out).
pub fn try_read_response(s: &mut TcpStream) -> Result<(u16, String, String), String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(0) => {
                return Err(format!(
                    "connection closed before a response: {:?}",
                    String::from_utf8_lossy(&buf)
                ));
            }
            Ok(_) => buf.push(byte[0]),
            Err(e) => return Err(format!("{e} after {:?}", String::from_utf8_lossy(&buf))),
        }
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not a status line: {head:?}"))?;
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(Ok(0), |v| v.trim().parse())
        .map_err(|e| format!("content-length: {e}"))?;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).map_err(|e| format!("body: {e}"))?;
    Ok((status, head, String::from_utf8_lossy(&body).into_owned()))
}

/// Write `bytes` and read one response.
pub fn exchange(s: &mut TcpStream, bytes: &[u8]) -> (u16, String, String) {
    s.write_all(bytes).expect("write");
    read_response(s)
}

/// Whether the server closed `s` (EOF or reset) within `within`: with [`HANG`], whether it
/// closes it at all; with less, a check that it is still open.
pub fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).expect("read timeout");
    let mut b = [0u8; 512];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Whether a response head (as [`read_response`] gives it) says `Connection: close`.
pub fn says_close(head: &str) -> bool {
    head.lines().any(|l| l.trim() == "connection: close")
}
