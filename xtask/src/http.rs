//! A tiny HTTP/1.0 client for loopback checks (`/health`), so checking the running app needs
//! neither curl nor an HTTP crate.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub struct Response {
    pub status: u16,
    /// Header lines as `(lowercase name, value)`.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub fn get(port: u16, path: &str) -> Result<Response> {
    get_at(LOOPBACK, port, path)
}

const LOOPBACK: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// GET `http://addr:port/path` (loopback, or a test machine's address).
pub fn get_at(addr: std::net::IpAddr, port: u16, path: &str) -> Result<Response> {
    let mut stream = TcpStream::connect((addr, port))
        .with_context(|| format!("cannot connect to {addr}:{port}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("not an HTTP response")?;
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: body.to_string(),
    })
}

/// Polls `path` until it answers 200, or fails after `limit` with the last answer.
pub fn wait_for_ok(port: u16, path: &str, limit: Duration) -> Result<Response> {
    let start = Instant::now();
    loop {
        crate::interrupt::check()?;
        let last = match get(port, path) {
            Ok(response) if response.status == 200 => return Ok(response),
            Ok(response) => format!("HTTP {}: {}", response.status, response.body.trim()),
            Err(err) => format!("{err:#}"),
        };
        if start.elapsed() > limit {
            bail!(
                "http://127.0.0.1:{port}{path} did not answer 200 within {}s (last: {last})",
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
