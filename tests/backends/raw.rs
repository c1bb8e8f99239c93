//! Raw access to a backend, as an operator with a dump tool would have it: Redis through the
//! `redis` crate's plain commands, memcached through its text protocol over TCP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::cache::redis_set_px;
use crate::server::{Backend, Server};

impl Server {
    pub fn raw_get(&self, key: &str) -> Option<Vec<u8>> {
        match self.backend {
            Backend::Redis => {
                let mut conn = self.redis();
                let kind: String = redis::cmd("TYPE").arg(key).query(&mut conn).unwrap();
                if kind == "set" {
                    // The identity indexes: their members, one per line.
                    let members: Vec<String> =
                        redis::cmd("SMEMBERS").arg(key).query(&mut conn).unwrap();
                    return Some(members.join("\n").into_bytes());
                }
                redis::cmd("GET").arg(key).query(&mut conn).unwrap()
            }
            Backend::Memcached => mc_get(self.port, key),
        }
    }

    pub fn raw_set(&self, key: &str, value: &[u8]) {
        match self.backend {
            Backend::Redis => redis_set_px(&mut self.redis(), key, value, 30_000),
            Backend::Memcached => mc_set(self.port, key, value, 30),
        }
    }

    /// Every key and value in the server.
    pub fn dump(&self) -> Vec<(String, Vec<u8>)> {
        let keys: Vec<String> = match self.backend {
            Backend::Redis => redis::cmd("KEYS")
                .arg("*")
                .query(&mut self.redis())
                .unwrap(),
            Backend::Memcached => mc_keys(self.port),
        };
        keys.into_iter()
            .filter_map(|k| self.raw_get(&k).map(|v| (k, v)))
            .collect()
    }

    pub fn redis(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/0", self.port))
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

// A raw memcached text-protocol client for the dump/tamper checks (the library uses
// async-memcached; this deliberately shares nothing with it).

fn mc_conn(port: u16) -> BufReader<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    BufReader::new(s)
}

fn read_line(r: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    line.trim_end().to_string()
}

fn mc_get(port: u16, key: &str) -> Option<Vec<u8>> {
    let mut r = mc_conn(port);
    write!(r.get_mut(), "get {key}\r\n").unwrap();
    let header = read_line(&mut r);
    if header == "END" {
        return None;
    }
    let len: usize = header
        .split(' ')
        .nth(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected memcached answer {header:?}"));
    let mut data = vec![0; len + 2];
    r.read_exact(&mut data).unwrap();
    data.truncate(len);
    assert_eq!(read_line(&mut r), "END");
    Some(data)
}

pub fn mc_set(port: u16, key: &str, value: &[u8], ttl: u32) {
    let mut r = mc_conn(port);
    let s = r.get_mut();
    write!(s, "set {key} 0 {ttl} {}\r\n", value.len()).unwrap();
    s.write_all(value).unwrap();
    s.write_all(b"\r\n").unwrap();
    assert_eq!(read_line(&mut r), "STORED");
}

fn mc_keys(port: u16) -> Vec<String> {
    let mut r = mc_conn(port);
    write!(r.get_mut(), "lru_crawler metadump all\r\n").unwrap();
    let mut keys = Vec::new();
    loop {
        let line = read_line(&mut r);
        if line == "END" || line.is_empty() {
            break;
        }
        assert!(
            !line.starts_with("BUSY") && !line.starts_with("ERROR"),
            "{line}"
        );
        if let Some(k) = line.split(' ').find_map(|f| f.strip_prefix("key=")) {
            keys.push(urlencoding::decode(k).unwrap().into_owned());
        }
    }
    keys
}
