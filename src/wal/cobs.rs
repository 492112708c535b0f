//! Consistent overhead byte stuffing (COBS): rewrites bytes so that 0x00
//! never occurs in them, for one byte per 254.
//!
//! The encoding is a run of blocks, each a code byte `n` (1 to 255) and
//! `n - 1` bytes copied as they are. A block with a code below 255 stands
//! for its bytes followed by a 0x00 (except the last block); a 255 block
//! stands for its 254 bytes alone. The log ends every stuffed record with a
//! 0x00, so whatever bytes a record carries, a reader finds record starts by
//! looking for 0x00 alone.

/// Longest run of bytes one block carries.
const MAX_RUN: usize = 254;
/// The code of a block that carries [`MAX_RUN`] bytes and no zero.
const FULL_BLOCK: u8 = 0xFF;

/// Bytes that [`encode`] writes for `len` bytes, at most.
pub fn max_encoded_len(len: usize) -> usize {
    len + len / MAX_RUN + 1
}

/// Appends the stuffed form of `data` to `out`; it holds no 0x00.
pub fn encode(data: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + max_encoded_len(data.len()), 0);
    let stuffed = &mut out[start..];
    // One pass; each block's code is filled in once its run is known.
    let mut code_at = 0;
    let mut written = 1;
    let mut run = 0u8;
    for &byte in data {
        if byte == 0 {
            stuffed[code_at] = run + 1;
            code_at = written;
            written += 1;
            run = 0;
            continue;
        }
        stuffed[written] = byte;
        written += 1;
        run += 1;
        if usize::from(run) == MAX_RUN {
            stuffed[code_at] = FULL_BLOCK;
            code_at = written;
            written += 1;
            run = 0;
        }
    }
    stuffed[code_at] = run + 1;
    out.truncate(start + written);
}

/// The stuffed bytes do not decode: a block runs past their end, or they
/// hold a 0x00.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadStuffing;

/// Decodes `stuffed` (one record, without its 0x00 end) into `out`, which
/// is cleared first.
pub fn decode(stuffed: &[u8], out: &mut Vec<u8>) -> Result<(), BadStuffing> {
    out.clear();
    out.reserve(stuffed.len());
    let mut at = 0;
    while at < stuffed.len() {
        let code = stuffed[at];
        if code == 0 {
            return Err(BadStuffing);
        }
        let end = at + usize::from(code);
        let run = stuffed.get(at + 1..end).ok_or(BadStuffing)?;
        out.extend_from_slice(run);
        at = end;
        if code != FULL_BLOCK && at < stuffed.len() {
            out.push(0);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(data: &[u8]) -> Vec<u8> {
        let mut stuffed = Vec::new();
        encode(data, &mut stuffed);
        assert!(
            !stuffed.contains(&0),
            "no zero in the stuffed form of {data:?}"
        );
        assert!(stuffed.len() <= max_encoded_len(data.len()));
        let mut back = Vec::new();
        decode(&stuffed, &mut back).unwrap();
        assert_eq!(back, data);
        stuffed
    }

    #[test]
    fn known_encodings() {
        assert_eq!(round_trip(&[]), [1]);
        assert_eq!(round_trip(&[0]), [1, 1]);
        assert_eq!(round_trip(&[0, 0]), [1, 1, 1]);
        assert_eq!(round_trip(&[0x11, 0x22, 0, 0x33]), [3, 0x11, 0x22, 2, 0x33]);
        assert_eq!(round_trip(&[0x11, 0, 0]), [2, 0x11, 1, 1]);
    }

    #[test]
    fn runs_around_the_block_size_round_trip() {
        for len in [253, 254, 255, 508, 509, 1000] {
            for zero_at in [None, Some(0), Some(253), Some(254), Some(len - 1)] {
                let mut data: Vec<u8> = (0..len).map(|i| (i % 255 + 1) as u8).collect();
                if let Some(at) = zero_at.filter(|&at| at < len) {
                    data[at] = 0;
                }
                round_trip(&data);
            }
        }
    }

    #[test]
    fn random_bytes_round_trip_within_the_bound() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 33) as usize
        };
        for _ in 0..2000 {
            let len = next() % 1200;
            // From mostly zeros to no zeros at all.
            let zero_every = next() % 300 + 1;
            let data: Vec<u8> = (0..len)
                .map(|_| match next() % zero_every {
                    0 => 0,
                    _ => (next() % 255 + 1) as u8,
                })
                .collect();
            round_trip(&data);
        }
    }

    #[test]
    fn bad_stuffing_is_refused() {
        let mut out = Vec::new();
        assert_eq!(decode(&[5, 1, 2], &mut out), Err(BadStuffing));
        assert_eq!(decode(&[2, 1, 0, 1], &mut out), Err(BadStuffing));
        assert_eq!(decode(&[0], &mut out), Err(BadStuffing));
    }
}
