//! The servers the scenarios run against (`redis-server`, `memcached`), the checkers that
//! install them as the process-wide cache, and tokens to check.

use std::time::Duration;

use crate::common;
use crate::common::cache::new_token;
use crate::common::merge;
use crate::common::servers::{free_port, redis_server_args, ServerProcess};
use fake_globus::FakeGlobus;
use serde_json::{json, Value};
use tokenchecker::Checker;
use tokenchecker::Source;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Backend {
    Redis,
    Memcached,
}

impl Backend {
    pub fn source(self) -> Source {
        match self {
            Backend::Redis => Source::Redis,
            Backend::Memcached => Source::Memcached,
        }
    }
}

/// A redis-server or memcached child process on its own port (killed when dropped).
pub struct Server {
    pub backend: Backend,
    pub port: u16,
    process: Option<ServerProcess>,
    /// Arguments given to the server besides the port (e.g. memcached's `-I`).
    extra_args: Vec<String>,
}

impl Server {
    pub fn start(backend: Backend) -> Server {
        Server::start_with(backend, &[])
    }

    /// A server started with `extra_args` too.
    pub fn start_with(backend: Backend, extra_args: &[&str]) -> Server {
        let mut s = Server {
            backend,
            port: free_port(),
            process: None,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        };
        s.spawn();
        s
    }

    pub fn spawn(&mut self) {
        let port = self.port.to_string();
        let (bin, mut args) = match self.backend {
            Backend::Redis => ("redis-server", redis_server_args(self.port)),
            Backend::Memcached => (
                "memcached",
                ["-p", &port, "-l", "127.0.0.1", "-U", "0"]
                    .map(String::from)
                    .to_vec(),
            ),
        };
        args.extend(self.extra_args.iter().cloned());
        // memcached refuses to run as root unless told which user to be.
        if self.backend == Backend::Memcached && unsafe { libc::geteuid() } == 0 {
            args.extend(["-u", "root"].map(String::from));
        }
        self.process = Some(ServerProcess::start(
            bin,
            &args,
            self.port,
            Duration::from_secs(10),
        ));
    }

    pub fn kill(&mut self) {
        self.process = None;
    }

    pub fn url(&self) -> Value {
        match self.backend {
            Backend::Redis => format!("redis://127.0.0.1:{}/0", self.port).into(),
            Backend::Memcached => format!("127.0.0.1:{}", self.port).into(),
        }
    }

    /// A `cache_config` for this server, with `extra` merged in.
    pub fn cache(&self, extra: Value) -> Value {
        let mut c = json!({
            "backend": match self.backend {
                Backend::Redis => "dogpile.cache.redis",
                Backend::Memcached => "dogpile.cache.memcached",
            },
            "url": self.url(),
        });
        merge(&mut c, extra);
        c
    }
}

/// A checker that uses whatever cache is current.
pub fn plain_checker(fake: &FakeGlobus) -> Checker {
    common::checker(fake, json!({}))
}

/// `n` tokens of one user (`spec`) that no other check uses, named `name0`, `name1`, ….
pub fn new_tokens(fake: &FakeGlobus, name: &str, n: usize, spec: Value) -> Vec<String> {
    (0..n)
        .map(|i| new_token(fake, &format!("{name}{i}"), spec.clone()))
        .collect()
}
