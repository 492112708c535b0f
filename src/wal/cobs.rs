//! Consistent overhead byte stuffing (COBS): rewrites bytes so that 0x00
//! never occurs in them, for one byte per 254.
//!
//! The encoding is a run of blocks, each a code byte `n` (1 to 255) and
//! `n - 1` data bytes. A block with a code below 255 stands for its bytes
//! followed by a break (except the last block); a 255 block stands for its
//! 254 bytes alone. The log ends every stuffed record with a 0x00, so
//! whatever bytes a record carries, a reader finds record starts by looking
//! for 0x00 alone.
//!
//! Data bytes are stored inverted (XOR 0xFF), so the byte that breaks a
//! block is 0xFF, and 0x00 (inverted) can still never occur. Why: log
//! payloads are mostly small little-endian integers, so 0x00 is their most
//! common byte and 0xFF one of their rarest (UTF-8 names never hold it).
//! Breaking on 0x00 made blocks of a byte or two and stuffing cost a step
//! per byte; breaking on 0xFF makes blocks of up to 254 bytes, and stuffing
//! is a copy. Bytes made of 0xFF (IDs of -1) cost what 0x00 did.

/// Longest run of bytes one block carries.
const MAX_RUN: usize = 254;
/// The code of a block that carries [`MAX_RUN`] bytes and no break.
const FULL_BLOCK: u8 = 0xFF;
/// The data byte that breaks blocks; stored bytes are data bytes XOR it.
const BREAK: u8 = 0xFF;

/// Bytes that [`encode`] writes for `len` bytes, at most.
pub fn max_encoded_len(len: usize) -> usize {
    len + len / MAX_RUN + 1
}

/// Appends `run` inverted to `out`: no byte of a run is [`BREAK`], so none
/// is written as 0x00.
fn put_run(out: &mut Vec<u8>, run: &[u8]) {
    out.extend(run.iter().map(|byte| byte ^ BREAK));
}

/// Appends the stuffed form of `data` to `out`; it holds no 0x00.
pub fn encode(data: &[u8], out: &mut Vec<u8>) {
    out.reserve(max_encoded_len(data.len()));
    let mut rest = data;
    loop {
        let window = &rest[..rest.len().min(MAX_RUN)];
        match window.iter().position(|&byte| byte == BREAK) {
            Some(run) => {
                out.push(run as u8 + 1);
                put_run(out, &window[..run]);
                rest = &rest[run + 1..];
            }
            None if window.len() == MAX_RUN => {
                out.push(FULL_BLOCK);
                put_run(out, window);
                rest = &rest[MAX_RUN..];
            }
            None => {
                out.push(window.len() as u8 + 1);
                put_run(out, window);
                return;
            }
        }
    }
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
        put_run(out, run);
        at = end;
        if code != FULL_BLOCK && at < stuffed.len() {
            out.push(BREAK);
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
        assert_eq!(round_trip(&[0xFF]), [1, 1]);
        assert_eq!(round_trip(&[0xFF, 0xFF]), [1, 1, 1]);
        assert_eq!(round_trip(&[0, 0]), [3, 0xFF, 0xFF]);
        assert_eq!(
            round_trip(&[0x11, 0x22, 0xFF, 0x33]),
            [3, 0xEE, 0xDD, 2, 0xCC]
        );
        assert_eq!(round_trip(&[0x11, 0xFF, 0xFF]), [2, 0xEE, 1, 1]);
    }

    #[test]
    fn runs_around_the_block_size_round_trip() {
        for len in [253, 254, 255, 508, 509, 1000] {
            for break_at in [None, Some(0), Some(253), Some(254), Some(len - 1)] {
                for fill in [0u8, 7] {
                    let mut data: Vec<u8> = (0..len).map(|i| (i % 200) as u8 + fill).collect();
                    if let Some(at) = break_at.filter(|&at| at < len) {
                        data[at] = BREAK;
                    }
                    round_trip(&data);
                }
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
            // From mostly breaks or zeros to none at all.
            let special_every = next() % 300 + 1;
            let data: Vec<u8> = (0..len)
                .map(|_| match next() % special_every {
                    0 if next() % 2 == 0 => BREAK,
                    0 => 0,
                    _ => (next() % 254 + 1) as u8,
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
