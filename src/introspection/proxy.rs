//! Which proxy a request to Globus takes: none for loopback, else the environment's.
//!
//! A plain-http `auth_url` is allowed only to loopback because the credentials and tokens then
//! stay on the host; sending them through `HTTP_PROXY` would break that promise. So loopback is
//! never proxied, whatever the environment says. Other hosts honour the usual variables, read
//! once when the client is built: `HTTPS_PROXY` (or `https_proxy`) for https URLs, `HTTP_PROXY`
//! (or `http_proxy`) for http ones, `ALL_PROXY` (or `all_proxy`) for both, and `NO_PROXY` (or
//! `no_proxy`) for exceptions. As in curl and reqwest, `HTTP_PROXY` is ignored when
//! `REQUEST_METHOD` is set (a CGI environment, where a client's `Proxy:` header becomes
//! `HTTP_PROXY`: "httpoxy").

use reqwest::{Proxy, Url};

use crate::config::is_loopback;

/// The proxies named by the environment.
#[derive(Clone, Default)]
struct FromEnv {
    https: Option<Url>,
    http: Option<Url>,
    /// `NO_PROXY`'s entries, lowercased, without leading dots.
    no_proxy: Vec<String>,
}

fn var(names: &[&str]) -> Option<Url> {
    names.iter().find_map(|n| {
        let v = std::env::var(n).ok()?;
        let v = v.trim();
        if v.is_empty() {
            return None;
        }
        // `host:port` means an http proxy, as curl reads it.
        let text = if v.contains("://") {
            v.to_string()
        } else {
            format!("http://{v}")
        };
        Url::parse(&text).ok()
    })
}

impl FromEnv {
    fn read() -> FromEnv {
        let all = var(&["ALL_PROXY", "all_proxy"]);
        let cgi = std::env::var_os("REQUEST_METHOD").is_some();
        FromEnv {
            https: var(&["HTTPS_PROXY", "https_proxy"]).or_else(|| all.clone()),
            http: if cgi {
                None
            } else {
                var(&["HTTP_PROXY", "http_proxy"])
            }
            .or(all),
            no_proxy: ["NO_PROXY", "no_proxy"]
                .iter()
                .find_map(|n| std::env::var(n).ok())
                .unwrap_or_default()
                .split(',')
                .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|e| !e.is_empty())
                .collect(),
        }
    }

    /// Whether `NO_PROXY` exempts `host`: `*`, the host itself, or a domain it is under (an
    /// entry with or without a leading dot, as curl reads it).
    fn exempts(&self, host: &str) -> bool {
        let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
        self.no_proxy.iter().any(|e| {
            e == "*"
                || *e == host
                || (host.ends_with(e.as_str()) && host[..host.len() - e.len()].ends_with('.'))
        })
    }
}

/// The proxy rule for a client: a [`Proxy`] to give the client builder (after `no_proxy()`,
/// which turns reqwest's own reading of the environment off).
pub fn rule() -> Proxy {
    let env = FromEnv::read();
    Proxy::custom(move |url| {
        if is_loopback(url.as_str()) || url.host_str().is_some_and(|h| env.exempts(h)) {
            return None;
        }
        match url.scheme() {
            "https" => env.https.clone(),
            "http" => env.http.clone(),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_entries() {
        let env = FromEnv {
            no_proxy: vec!["example.org".into(), "10.0.0.1".into()],
            ..Default::default()
        };
        assert!(env.exempts("example.org"));
        assert!(env.exempts("Auth.Example.org"));
        assert!(!env.exempts("badexample.org"));
        assert!(env.exempts("10.0.0.1"));
        assert!(!env.exempts("10.0.0.10"));
        let all = FromEnv {
            no_proxy: vec!["*".into()],
            ..Default::default()
        };
        assert!(all.exempts("anything"));
    }
}
