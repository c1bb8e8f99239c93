//! Which identities a cache entry belongs to, in eight bytes: a 64-bit Bloom filter.
//!
//! `tc_purge_identity` drops the entries of every token of one identity. Keeping each entry's
//! identity list for that costs ≈180 bytes per token; this filter costs 8. It never misses an
//! identity an entry belongs to; it may, rarely, match one it does not belong to (≈0.1% of tokens
//! with two identities), which only makes a purge drop an entry that is then fetched again.
//!
//! The hash is fixed (FNV-1a, then a 64-bit finalizer), not seeded per process: the filter travels
//! inside sealed entries to every process of a fleet, which must agree on it.

/// The identities of one token, as a filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdentityFilter(pub u64);

/// Three of the filter's 64 bits for one identity id.
fn bits(identity: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in identity.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finalizer: FNV's low bits alone are poorly mixed.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (1 << (h & 63)) | (1 << ((h >> 6) & 63)) | (1 << ((h >> 12) & 63))
}

impl IdentityFilter {
    pub fn of<S: AsRef<str>>(identities: impl IntoIterator<Item = S>) -> Self {
        IdentityFilter(
            identities
                .into_iter()
                .fold(0, |f, id| f | bits(id.as_ref())),
        )
    }

    /// False: the entry certainly does not belong to `identity`. True: it probably does.
    #[inline]
    pub fn may_contain(self, identity: &str) -> bool {
        let b = bits(identity);
        self.0 & b == b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_misses_and_rarely_matches_a_stranger() {
        // Deterministic (a fixed hash): smaller under Miri, which runs it ~1,000× slower.
        let n = if cfg!(miri) { 60 } else { 2_000 };
        let ids: Vec<String> = (0..n)
            .map(|i| format!("a11ce000-0000-4000-8000-{i:012}"))
            .collect();
        let mut false_matches = 0;
        for pair in ids.chunks(2) {
            let f = IdentityFilter::of(pair.iter().map(String::as_str));
            assert!(pair.iter().all(|id| f.may_contain(id)));
            false_matches += ids.iter().filter(|id| f.may_contain(id)).count() - 2;
        }
        // Expected ≈ (6/64)^3 ≈ 0.08% of the (n/2) × n comparisons.
        let rate = false_matches as f64 / (n as f64 / 2.0 * n as f64);
        assert!(rate < 0.005, "false match rate {rate}");
        assert!(!IdentityFilter::default().may_contain(&ids[0]));
        // Fixed across processes and versions (it travels in sealed entries).
        assert_eq!(
            IdentityFilter::of(["a11ce000-0000-4000-8000-000000000001"]),
            IdentityFilter(0x0002_0000_0110_0000)
        );
    }
}
