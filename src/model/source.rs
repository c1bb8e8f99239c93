//! Where an answer came from, as reported with every result.

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Fetched by this call.
    Network,
    /// Fetched by a concurrent call this one waited for.
    Coalesced,
    /// The embedded in-memory cache.
    Memory,
    /// The near cache in front of a shared backend.
    Near,
    Redis,
    Memcached,
    /// A recent answer served past its cache lifetime because the authorization server was
    /// unavailable (`stale_if_error_s`).
    Stale,
}

impl Source {
    /// Every source, in the order of the documentation.
    pub const ALL: [Source; 7] = [
        Source::Network,
        Source::Coalesced,
        Source::Memory,
        Source::Near,
        Source::Redis,
        Source::Memcached,
        Source::Stale,
    ];

    /// The source's name as a static C string: the one list of names.
    pub fn c_name(self) -> &'static std::ffi::CStr {
        match self {
            Source::Network => c"network",
            Source::Coalesced => c"coalesced",
            Source::Memory => c"memory",
            Source::Near => c"near",
            Source::Redis => c"redis",
            Source::Memcached => c"memcached",
            Source::Stale => c"stale",
        }
    }

    /// The source's name, as reported in results ("network", "memory", …).
    pub fn name(self) -> &'static str {
        // The names are ASCII.
        self.c_name().to_str().unwrap_or("unknown")
    }
}
