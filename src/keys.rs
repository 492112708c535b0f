//! Per-process secrets: the key that proves a node connection comes from this
//! process, and the keys of the ID hash.
//!
//! Both are drawn from the OS at first use and never leave the process: a
//! node sends a random challenge and the peer answers with a MAC of it
//! ([`Secret::tag`]); the secret itself never crosses a socket.
//!
//! The MAC is SipHash-2-4 (a keyed PRF) run under two independent 128-bit
//! keys, giving a 128-bit tag.

use std::sync::OnceLock;

/// Bytes of a challenge a node sends.
pub const NONCE_BYTES: usize = 16;
/// Bytes of the answer to a challenge.
pub const TAG_BYTES: usize = 16;

/// Fills `out` with random bytes from the OS.
pub fn random_bytes(out: &mut [u8]) {
    let mut filled = 0;
    while filled < out.len() {
        let rest = &mut out[filled..];
        // SAFETY: `rest` is a valid, writable buffer of `rest.len()` bytes.
        let got = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if got > 0 {
            filled += got as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            fill_from_urandom(rest);
            return;
        }
    }
}

/// The fallback for kernels without getrandom(2).
fn fill_from_urandom(out: &mut [u8]) {
    use std::io::Read;
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(out));
    if read.is_err() {
        // No randomness from the OS at all: RandomState's keys are the
        // best std offers. Hashing distinct counters under them gives
        // unpredictable bytes to anyone who cannot read our memory.
        use std::hash::{BuildHasher, Hasher};
        let state = std::collections::hash_map::RandomState::new();
        for (index, chunk) in out.chunks_mut(8).enumerate() {
            let mut hasher = state.build_hasher();
            hasher.write_usize(index);
            let bytes = hasher.finish().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// A random `u64` from the OS.
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    random_bytes(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// The secret a node connection must prove it knows.
pub struct Secret {
    keys: [(u64, u64); 2],
}

impl Secret {
    /// A fresh random secret.
    pub fn generate() -> Secret {
        Secret {
            keys: [(random_u64(), random_u64()), (random_u64(), random_u64())],
        }
    }

    /// The process's secret, drawn at first use.
    pub fn of_process() -> &'static Secret {
        static SECRET: OnceLock<Secret> = OnceLock::new();
        SECRET.get_or_init(Secret::generate)
    }

    /// The answer to challenge `nonce`: a MAC only a holder of the secret
    /// can compute.
    pub fn tag(&self, nonce: &[u8; NONCE_BYTES]) -> [u8; TAG_BYTES] {
        let mut tag = [0u8; TAG_BYTES];
        for (half, &(k0, k1)) in tag.chunks_mut(8).zip(&self.keys) {
            half.copy_from_slice(&siphash24(k0, k1, nonce).to_le_bytes());
        }
        tag
    }

    /// Whether `tag` answers `nonce`, compared in constant time so the time
    /// taken says nothing about how much of a guess was right.
    pub fn verify(&self, nonce: &[u8; NONCE_BYTES], tag: &[u8; TAG_BYTES]) -> bool {
        let expected = self.tag(nonce);
        expected
            .iter()
            .zip(tag)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
    }
}

/// A fresh random challenge.
pub fn nonce() -> [u8; NONCE_BYTES] {
    let mut nonce = [0u8; NONCE_BYTES];
    random_bytes(&mut nonce);
    nonce
}

/// Keys of the ID hash, drawn once per process so that nobody outside it
/// can choose IDs that collide (hash flooding).
#[derive(Debug, Clone, Copy)]
pub struct HashKeys {
    /// Keys of the hash inside a shard's table.
    pub table: (u64, u64),
    /// Keys of the hash that picks a shard.
    pub shard: (u64, u64),
}

impl HashKeys {
    pub fn of_process() -> &'static HashKeys {
        static KEYS: OnceLock<HashKeys> = OnceLock::new();
        KEYS.get_or_init(|| HashKeys {
            // A multiplier is never zero: that would send every ID to
            // one bucket.
            table: (random_u64(), random_u64() | 1),
            shard: (random_u64(), random_u64() | 1),
        })
    }
}

/// SipHash-2-4 of `message` under the key `(k0, k1)`.
pub(crate) fn siphash24(k0: u64, k1: u64, message: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut chunks = message.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        compress(&mut v, u64::from_le_bytes(word), 2);
    }
    let mut last = [0u8; 8];
    let rest = chunks.remainder();
    last[..rest.len()].copy_from_slice(rest);
    last[7] = message.len() as u8;
    compress(&mut v, u64::from_le_bytes(last), 2);
    v[2] ^= 0xff;
    for _ in 0..4 {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

fn compress(v: &mut [u64; 4], word: u64, rounds: usize) {
    v[3] ^= word;
    for _ in 0..rounds {
        sip_round(v);
    }
    v[0] ^= word;
}

fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siphash_matches_the_reference_vectors() {
        // From the SipHash paper (Aumasson & Bernstein), appendix A: key
        // 00 01 .. 0f, messages 00 01 .. (n-1).
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let message: Vec<u8> = (0..15).collect();
        assert_eq!(siphash24(k0, k1, &message), 0xa129_ca61_49be_45e5);
        assert_eq!(siphash24(k0, k1, &[]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(k0, k1, &message[..8]), 0x93f5_f579_9a93_2462);
    }

    #[test]
    fn only_the_secret_answers_a_challenge() {
        let secret = Secret::generate();
        let other = Secret::generate();
        let challenge = nonce();
        let tag = secret.tag(&challenge);
        assert!(secret.verify(&challenge, &tag));
        assert!(!other.verify(&challenge, &tag));
        assert!(
            !secret.verify(&nonce(), &tag),
            "a tag answers one challenge"
        );
        let mut flipped = tag;
        flipped[15] ^= 1;
        assert!(!secret.verify(&challenge, &flipped));
    }

    #[test]
    fn random_bytes_are_not_constant() {
        assert_ne!(nonce(), nonce());
        assert_ne!(random_u64(), random_u64());
    }
}
