//! Hash maps keyed by integers: the engine's own `u64` ids (submission slots, batch
//! numbers), and the `i64` keys of tables.
//!
//! The standard library's SipHash costs about 20 ns a key; these maps sit on a
//! request's path (the reply table, the batching and combine operators' state) or are
//! probed once per looked-up row (a table's index), so they hash by one 128-bit
//! multiplication folded to 64 bits, which spreads every input bit over the whole hash
//! (hashbrown picks buckets by the low bits and control bytes by the high ones). Table
//! keys come from users, so their hasher is seeded per process, as SipHash's is; the
//! same seeded hasher keys a learning node's kept predictions, text keys included
//! (eight bytes per multiplication).

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// A `HashMap` from an engine-assigned `u64` id.
pub type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// A `HashMap` from a user's `i64` key, seeded per process.
pub type KeyMap<V> = HashMap<i64, V, SeededKeys>;

const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

/// `x` times a large odd constant, the 128-bit product's halves xored.
pub(crate) fn fold(x: u64) -> u64 {
    let product = u128::from(x) * u128::from(MULTIPLIER);
    (product as u64) ^ ((product >> 64) as u64)
}

/// Hashes integers by [`fold`] (see the module docs).
#[derive(Default, Clone, Copy, Debug)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        fold(self.0)
    }

    fn write(&mut self, bytes: &[u8]) {
        // Integer keys call `write_u64`/`write_i64`; others (text) hash eight bytes per
        // multiplication, the last word marked with how many bytes it holds.
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            self.0 = fold(self.0 ^ u64::from_le_bytes(w));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.0 = fold(self.0 ^ u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 ^= id;
    }

    fn write_i64(&mut self, id: i64) {
        self.0 ^= id as u64;
    }
}

/// Builds [`IdHasher`]s starting from one random seed per process.
#[derive(Clone, Copy, Debug)]
pub struct SeededKeys(u64);

impl Default for SeededKeys {
    fn default() -> Self {
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        SeededKeys(*SEED.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0u64)))
    }
}

impl BuildHasher for SeededKeys {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(id: u64) -> u64 {
        let mut h = IdHasher::default();
        h.write_u64(id);
        h.finish()
    }

    #[test]
    fn ids_spread_over_the_low_and_the_high_bits() {
        // Consecutive ids, and ids that differ only in high bits (multiples of 2^32).
        for ids in [(0..1024u64).collect::<Vec<_>>(), (0..1024u64).map(|i| i << 32).collect()] {
            let low: std::collections::HashSet<u64> = ids.iter().map(|&i| hash(i) & 1023).collect();
            let high: std::collections::HashSet<u64> = ids.iter().map(|&i| hash(i) >> 57).collect();
            assert!(low.len() > 550, "{} distinct low 10 bits of 1024", low.len());
            assert_eq!(high.len(), 128, "every top-7-bit value");
        }
        let mut map: IdMap<u64> = IdMap::default();
        let mut keys: KeyMap<u64> = KeyMap::default();
        for id in 0..10_000 {
            map.insert(id, id * 2);
            keys.insert(-(id as i64) << 20, id);
        }
        assert!((0..10_000).all(|id| map[&id] == id * 2 && keys[&(-(id as i64) << 20)] == id));
    }

    #[test]
    fn byte_strings_hash_by_every_byte_and_their_length() {
        let hash = |b: &[u8]| {
            let mut h = IdHasher::default();
            h.write(b);
            h.finish()
        };
        assert_ne!(hash(b"ab"), hash(b"ab\0"), "a trailing zero byte counts");
        assert_ne!(hash(b"key-0001"), hash(b"key-0002"));
        assert_ne!(hash(b"0123456789abcdef-a"), hash(b"0123456789abcdef-b"), "the last partial word counts");
        let low: std::collections::HashSet<u64> =
            (0..1024).map(|i| hash(format!("user-{i}").as_bytes()) & 1023).collect();
        assert!(low.len() > 550, "{} distinct low 10 bits of 1024", low.len());
    }
}
