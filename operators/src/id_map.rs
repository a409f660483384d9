//! Hash maps keyed by the engine's own `u64` ids (submission slots, batch numbers).
//!
//! The standard library's SipHash resists keys an attacker picks, at about 20 ns a key;
//! these keys are counters the engine hands out, so one multiplication spreads them
//! well enough, and the maps on a request's path (the reply table, the batching and
//! combine operators' state) each probe a few times per request.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` from an engine-assigned `u64` id.
pub type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Hashes one `u64` by a multiplication with a large odd constant (Fibonacci hashing):
/// consecutive ids differ in the high bits, which hashbrown's control bytes use.
#[derive(Default, Clone, Copy, Debug)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used for `u64` keys; any other key still hashes, byte by byte.
        for &b in bytes {
            self.write_u64(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = (self.0 ^ id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_ids_spread_over_the_high_bits() {
        let tops: std::collections::HashSet<u64> = (0..128u64)
            .map(|id| {
                let mut h = IdHasher::default();
                h.write_u64(id);
                h.finish() >> 57
            })
            .collect();
        assert!(tops.len() > 64, "only {} of 128 top-7-bit values", tops.len());
        let mut map: IdMap<u64> = IdMap::default();
        for id in 0..10_000 {
            map.insert(id, id * 2);
        }
        assert!((0..10_000).all(|id| map[&id] == id * 2));
    }
}
