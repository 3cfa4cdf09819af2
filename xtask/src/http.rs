//! A tiny HTTP/1.0 client for loopback checks (`/health`), plain-HTTP registries (the
//! registry API of `build/registry_api.rs`) and the Docker engine's unix socket
//! (`docker_api.rs`), so none of them needs curl nor an HTTP crate.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub struct Response {
    pub status: u16,
    /// Header lines as `(lowercase name, value)`.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The body as received (a manifest is re-sent byte for byte: its digest depends on them).
    pub bytes: Vec<u8>,
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
    get_at(std::net::Ipv4Addr::LOCALHOST.into(), port, path)
}

/// GET `http://addr:port/path` (loopback, or a test machine's address).
pub fn get_at(addr: std::net::IpAddr, port: u16, path: &str) -> Result<Response> {
    request(&format!("{addr}:{port}"), &Request::get(path))
}

/// One HTTP request: method, path, extra header lines and a body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn get(path: &str) -> Request {
        Request {
            method: "GET",
            path: path.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The bytes on the wire for `host` (`HOST:PORT`): HTTP/1.0, one request per connection.
    pub fn encode(&self, host: &str) -> Vec<u8> {
        let mut head = format!("{} {} HTTP/1.0\r\nHost: {host}\r\n", self.method, self.path);
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !self.body.is_empty() || self.method == "PUT" {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str("Connection: close\r\n\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Sends `request` to `host` (`HOST:PORT`, plain HTTP) and reads the whole answer.
pub fn request(host: &str, request: &Request) -> Result<Response> {
    let stream = TcpStream::connect(host).with_context(|| format!("cannot connect to {host}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    exchange(stream, host, request)
}

/// Writes `request` on an open connection and reads the whole answer (the server closes it:
/// HTTP/1.0, `Connection: close`).
pub fn exchange(mut stream: impl Read + Write, host: &str, request: &Request) -> Result<Response> {
    stream.write_all(&request.encode(host))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse(&raw)
}

/// Status, headers and body of a raw HTTP answer.
pub fn parse(raw: &[u8]) -> Result<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or((raw, &raw[raw.len()..]), |at| (&raw[..at], &raw[at + 4..]));
    let head = String::from_utf8_lossy(split.0);
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
        body: String::from_utf8_lossy(split.1).into_owned(),
        bytes: split.1.to_vec(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_plain_http_1_0() {
        let get = Request::get("/v2/").header("Accept", "a/b");
        assert_eq!(
            String::from_utf8(get.encode("127.0.0.1:5000")).unwrap(),
            "GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1:5000\r\nAccept: a/b\r\nConnection: close\r\n\r\n"
        );
        let put = Request {
            method: "PUT",
            body: b"{}".to_vec(),
            ..Request::get("/m")
        };
        assert_eq!(
            String::from_utf8(put.encode("h:1")).unwrap(),
            "PUT /m HTTP/1.0\r\nHost: h:1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        );
    }

    #[test]
    fn answers_keep_their_bytes() {
        let answer =
            parse(b"HTTP/1.1 200 OK\r\nDocker-Content-Digest: sha256:ab\r\n\r\n{\"a\":1}\r\n")
                .unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("docker-content-digest"), Some("sha256:ab"));
        assert_eq!(answer.bytes, b"{\"a\":1}\r\n");
        assert!(parse(b"garbage").is_err());
    }
}
