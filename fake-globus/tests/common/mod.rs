//! A tiny blocking HTTP/1.1 client for the tests (no extra dependencies).

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub const BASIC_TEST_CLIENT: &str = "Basic dGVzdC1jbGllbnQ6dGVzdC1zZWNyZXQ="; // test-client:test-secret

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request (`Connection: close`) and reads the whole answer.
pub fn request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Resp> {
    request_timeout(base, method, path, headers, body, Duration::from_secs(20))
}

pub fn request_timeout(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<Resp> {
    let raw = raw_request(base, method, path, headers, body, timeout)?;
    parse_response(&raw)
}

/// Sends one request (`Connection: close`) and returns the raw answer bytes.
pub fn raw_request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    let hostport = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(hostport)?;
    stream.set_read_timeout(Some(timeout))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    Ok(raw)
}

/// How many data chunks a raw chunked answer has (0 if it is not chunked).
pub fn chunk_count(raw: &[u8]) -> usize {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return 0;
    };
    let mut data = &raw[end + 4..];
    let mut n = 0;
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let Ok(size) = usize::from_str_radix(size_text.trim(), 16) else {
            return 0;
        };
        if size == 0 || data.len() < line_end + 2 + size + 2 {
            break;
        }
        n += 1;
        data = &data[line_end + 2 + size + 2..];
    }
    n
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

pub fn parse_response(raw: &[u8]) -> io::Result<Resp> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("incomplete head"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    let body = if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        dechunk(rest)?
    } else if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
        if rest.len() < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("body cut short: {} of {len} bytes", rest.len()),
            ));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Resp { body, ..resp })
}

fn dechunk(mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("bad chunk"))?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad("bad chunk size"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(bad("chunk cut short"));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// `POST /v2/oauth2/token/introspect` as test-client.
pub fn introspect(base: &str, token: &str) -> Resp {
    let body = format!("token={token}&include=identity_set");
    request(
        base,
        "POST",
        "/v2/oauth2/token/introspect",
        &[
            ("Authorization", BASIC_TEST_CLIENT),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        body.as_bytes(),
    )
    .expect("introspect request")
}

/// Dependent-token grant as test-client.
pub fn dependent(base: &str, token: &str) -> Resp {
    let body =
        format!("grant_type=urn%3Aglobus%3Aauth%3Agrant_type%3Adependent_token&token={token}");
    request(
        base,
        "POST",
        "/v2/oauth2/token",
        &[
            ("Authorization", BASIC_TEST_CLIENT),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        body.as_bytes(),
    )
    .expect("dependent token request")
}

/// `GET /v2/groups/my_groups` with a bearer token.
pub fn my_groups(base: &str, bearer: &str) -> Resp {
    my_groups_query(base, bearer, "")
}

/// `GET /v2/groups/my_groups?<query>` with a bearer token.
pub fn my_groups_query(base: &str, bearer: &str, query: &str) -> Resp {
    let auth = format!("Bearer {bearer}");
    let path = if query.is_empty() {
        "/v2/groups/my_groups".to_string()
    } else {
        format!("/v2/groups/my_groups?{query}")
    };
    request(base, "GET", &path, &[("Authorization", &auth)], b"").expect("my_groups request")
}

/// Dependent-token grant with the given `Authorization` header value.
pub fn dependent_as(base: &str, authorization: &str, token: &str) -> Resp {
    let body =
        format!("grant_type=urn%3Aglobus%3Aauth%3Agrant_type%3Adependent_token&token={token}");
    request(
        base,
        "POST",
        "/v2/oauth2/token",
        &[
            ("Authorization", authorization),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        body.as_bytes(),
    )
    .expect("dependent token request")
}

/// `Basic base64(id:secret)`.
pub fn basic(id: &str, secret: &str) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    format!("Basic {encoded}")
}

/// A JSON control request.
pub fn control(base: &str, method: &str, path: &str, body: &str) -> Resp {
    request(
        base,
        method,
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .expect("control request")
}
