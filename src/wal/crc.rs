//! CRC-32 (IEEE): whole buffers, seeded, and the range checks of old-format
//! segments.
//!
//! [`shift`] advances a CRC over `n` bytes it does not read: with it, the
//! checksum of any range `a..b` follows from the checksums of the prefixes
//! `..a` and `..b`, so a reader can test many candidate records in one pass
//! over the bytes instead of one pass per candidate (see `legacy`).

/// The reflected IEEE polynomial.
const POLY: u32 = 0xEDB8_8320;

/// Bytes a table step takes at once (slicing-by-8: eight lookups per eight
/// bytes instead of one per byte; recovery checksums every byte it reads).
const SLICE: usize = 8;

/// `TABLES[0]` is the classic byte table; `TABLES[k][b]` is the CRC of byte
/// `b` followed by `k` zero bytes.
const TABLES: [[u32; 256]; SLICE] = {
    let mut tables = [[0u32; 256]; SLICE];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        tables[0][i] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < SLICE {
        let mut i = 0;
        while i < 256 {
            let previous = tables[k - 1][i];
            tables[k][i] = (previous >> 8) ^ tables[0][(previous & 0xFF) as usize];
            i += 1;
        }
        k += 1;
    }
    tables
};

/// A CRC-32 computed piece by piece.
#[derive(Debug, Clone, Copy)]
pub struct Crc32(u32);

impl Default for Crc32 {
    fn default() -> Self {
        Crc32(!0)
    }
}

impl Crc32 {
    pub fn update(&mut self, bytes: &[u8]) {
        let t = &TABLES;
        let mut crc = self.0;
        let mut slices = bytes.chunks_exact(SLICE);
        for slice in &mut slices {
            let lo = crc ^ u32::from_le_bytes([slice[0], slice[1], slice[2], slice[3]]);
            let hi = u32::from_le_bytes([slice[4], slice[5], slice[6], slice[7]]);
            let byte = |word: u32, at: u32| ((word >> at) & 0xFF) as usize;
            crc = t[7][byte(lo, 0)]
                ^ t[6][byte(lo, 8)]
                ^ t[5][byte(lo, 16)]
                ^ t[4][byte(lo, 24)]
                ^ t[3][byte(hi, 0)]
                ^ t[2][byte(hi, 8)]
                ^ t[1][byte(hi, 16)]
                ^ t[0][byte(hi, 24)];
        }
        for &byte in slices.remainder() {
            crc = t[0][((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8);
        }
        self.0 = crc;
    }

    /// The checksum of every byte given so far.
    pub fn value(self) -> u32 {
        !self.0
    }
}

/// The CRC-32 of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = Crc32::default();
    crc.update(bytes);
    crc.value()
}

/// The CRC-32 of `seed` (little-endian) followed by `bytes`: a record's
/// checksum in format 2, where the seed is a random number in the file's
/// header, so bytes a client chose cannot carry a checksum that matches.
pub fn seeded(seed: u64, bytes: &[u8]) -> u32 {
    let mut crc = Crc32::default();
    crc.update(&seed.to_le_bytes());
    crc.update(bytes);
    crc.value()
}

/// `a * b` modulo the polynomial (bit-reflected: bit 31 is x^0).
const fn multiply(a: u32, mut b: u32) -> u32 {
    let mut m = 1u32 << 31;
    let mut product = 0;
    loop {
        if a & m != 0 {
            product ^= b;
            if a & (m - 1) == 0 {
                return product;
            }
        }
        m >>= 1;
        b = if b & 1 == 1 { (b >> 1) ^ POLY } else { b >> 1 };
    }
}

/// `x^(2^k)` modulo the polynomial, for k in 0..32. The order of x divides
/// 2^32 - 1, so `x^(2^32) = x` and the table repeats with period 32.
const POWERS: [u32; 32] = {
    let mut powers = [0u32; 32];
    let mut p = 1u32 << 30; // x^1
    let mut k = 0;
    while k < 32 {
        powers[k] = p;
        p = multiply(p, p);
        k += 1;
    }
    powers
};

/// `x^(8 * bytes)` modulo the polynomial.
fn power_of_bytes(bytes: u64) -> u32 {
    let mut n = bytes;
    let mut k = 3; // 8 = 2^3 bits per byte
    let mut p = 1u32 << 31; // x^0
    while n != 0 {
        if n & 1 == 1 {
            p = multiply(POWERS[k & 31], p);
        }
        n >>= 1;
        k += 1;
    }
    p
}

/// Given `crc` = the CRC-32 of some bytes `A`, returns what XORed with the
/// CRC-32 of any `B` of `len` bytes gives the CRC-32 of `A ++ B` (zlib's
/// `crc32_combine`). So `crc32(B) = crc32(A ++ B) ^ shift(crc32(A), len)`.
pub fn shift(crc: u32, len: u64) -> u32 {
    multiply(power_of_bytes(len), crc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One table lookup per byte, as the textbook has it.
    fn crc32_bytewise(bytes: &[u8]) -> u32 {
        !bytes.iter().fold(!0u32, |crc, &byte| {
            TABLES[0][((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8)
        })
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn slicing_gives_what_one_byte_at_a_time_gives() {
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 256) as u8).collect();
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 999, 1000] {
            assert_eq!(
                crc32(&bytes[..len]),
                crc32_bytewise(&bytes[..len]),
                "{len} bytes"
            );
            let mut pieces = Crc32::default();
            pieces.update(&bytes[..len / 3]);
            pieces.update(&bytes[len / 3..len]);
            assert_eq!(
                pieces.value(),
                crc32_bytewise(&bytes[..len]),
                "{len} bytes in two pieces"
            );
        }
    }

    #[test]
    fn the_seed_changes_the_checksum() {
        assert_ne!(seeded(1, b"abc"), seeded(2, b"abc"));
        let mut prefixed = 7u64.to_le_bytes().to_vec();
        prefixed.extend_from_slice(b"abc");
        assert_eq!(seeded(7, b"abc"), crc32(&prefixed));
    }

    #[test]
    fn a_range_checksum_follows_from_prefix_checksums() {
        let bytes: Vec<u8> = (0..3000u32).map(|i| (i * 7919 % 251) as u8).collect();
        for (a, b) in [(0, 0), (0, 1), (5, 5), (3, 2999), (1000, 2048), (17, 3000)] {
            let (whole_a, whole_b) = (crc32(&bytes[..a]), crc32(&bytes[..b]));
            assert_eq!(
                crc32(&bytes[a..b]),
                whole_b ^ shift(whole_a, (b - a) as u64),
                "range {a}..{b}"
            );
        }
    }
}
