//! A cached check through each cache backend, against a bare GET of the same key with the same
//! client (the floor a shared backend cannot go under).
//!
//! Needs `redis-server` and `memcached` on the PATH (started here on free loopback ports).
//! Run: `cargo bench --bench backends` (add `-- --quick` for a fast pass).

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use fake_globus::{fixtures, FakeGlobus};
use serde_json::{json, Value};
use tokenchecker::cache::{self, sealing, CacheKey, Entry, KeyHasher, Kind, Source};
use tokenchecker::{runtime, Checker, Config};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(bin: &str, args: &[&str], port: u16) -> Server {
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start `{bin}` ({e}): `apt-get install -y redis-server memcached`")
        });
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{bin} did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    Server(child)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn checker(fake: &FakeGlobus, cache: Value) -> Checker {
    let config = json!({
        "client_id": fixtures::CLIENT_ID,
        "client_secret": fixtures::CLIENT_SECRET,
        "expected_scopes": ["urn:globus:auth:scope:test:all"],
        "auth_url": fake.url(),
        "groups_url": fake.url(),
        "verify_credentials": false,
        "cache_config": cache,
    });
    Checker::new(Config::from_value(&config).unwrap()).unwrap()
}

fn bench(c: &mut Criterion) {
    let fake = FakeGlobus::start();
    let (rp, mp) = (free_port(), free_port());
    let rps = rp.to_string();
    let mps = mp.to_string();
    let _redis = start(
        "redis-server",
        &[
            "--port",
            &rps,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        rp,
    );
    let mut margs = vec!["-p", &mps, "-l", "127.0.0.1", "-U", "0"];
    if unsafe { libc::geteuid() } == 0 {
        margs.extend(["-u", "root"]);
    }
    let _memcached = start("memcached", &margs, mp);
    let redis = json!({"backend": "redis", "url": format!("redis://127.0.0.1:{rp}/0")});
    let memcached = json!({"backend": "memcached", "url": format!("127.0.0.1:{mp}")});
    let near = json!({"near_cache_ttl": 60});
    let with = |base: &Value, extra: &Value| {
        let mut v = base.clone();
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let cases = [
        ("memory", json!({"backend": "memory"}), Source::Memory),
        ("redis", redis.clone(), Source::Redis),
        ("redis+near", with(&redis, &near), Source::Near),
        ("memcached", memcached.clone(), Source::Memcached),
        ("memcached+near", with(&memcached, &near), Source::Near),
    ];
    let token = fixtures::TOK_VALID;
    let key = CacheKey::new(
        Kind::Introspection,
        KeyHasher::new(fixtures::CLIENT_ID, fixtures::CLIENT_SECRET, &fake.url()).token_id(token),
    );

    let mut group = c.benchmark_group("cached_check");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for (name, cache, source) in &cases {
        let checker = checker(&fake, cache.clone());
        checker.check(token).unwrap();
        assert_eq!(checker.check(token).unwrap().source, *source, "{name}");
        group.bench_function(*name, |b| b.iter(|| checker.check(token).unwrap()));
        if matches!(source, Source::Redis | Source::Memcached) {
            let store = cache::current_arc();
            let get = || runtime::block_on(store.backend_raw_get_len(&key)).unwrap();
            assert!(get().is_some(), "{name}: the entry is in the backend");
            group.bench_function(format!("{name} bare GET"), |b| b.iter(|| get().unwrap()));
        }
    }
    group.finish();

    // The CPU part of a backend hit: opening (decrypting, parsing) one sealed introspection.
    let checker = checker(&fake, json!({"backend": "memory"}));
    checker.check(token).unwrap();
    let cached = cache::current_arc().get_local(&key).unwrap().0;
    let entry = Entry::new(
        cached.value.clone(),
        Duration::from_secs(3600),
        cached.identities.clone(),
    );
    let text = key.to_text("tc:");
    let sealed = sealing::seal(&key, &text, &entry, Duration::from_secs(30));
    c.bench_function("seal introspection", |b| {
        b.iter(|| sealing::seal(&key, &text, &entry, Duration::from_secs(30)))
    });
    c.bench_function("open introspection", |b| {
        b.iter(|| sealing::open(&key, &text, &sealed).unwrap().unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
