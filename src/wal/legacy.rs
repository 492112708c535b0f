//! Format 1, read only: segments and snapshots written before file headers
//! and byte stuffing, so an upgraded process still recovers an old data dir.
//!
//! ```text
//! segment  = record*                      (no header)
//! snapshot = "DCSNAP01" | next segment u64 | record* | end record
//! record   = magic u32 | length u32 | crc32(payload) u32 | payload
//! ```
//!
//! The payload is the same as in format 2 (see `record`). A record's bytes
//! may contain anything, a client's tenant name included, so a reader that
//! looks for records after a bad one cannot tell a real record from one a
//! client wrote inside a name. [`first_valid_record`] still answers in
//! linear time, whatever the bytes claim.

use super::crc::{self, Crc32};
use super::record::Damage;

/// Starts every format-1 record.
pub const MAGIC: u32 = 0x5257_4344; // "DCWR"
pub const HEADER_BYTES: usize = 12;
/// Starts a format-1 snapshot, followed by the first segment it does not cover.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"DCSNAP01";
/// Largest payload a format-1 record may claim; a larger length is damage.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 30;

/// Why the bytes at an offset are not a format-1 record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The bytes end before the record does.
    CutShort,
    Damaged(Damage),
}

impl From<Problem> for Damage {
    fn from(problem: Problem) -> Damage {
        match problem {
            Problem::CutShort => Damage::CutShort,
            Problem::Damaged(damage) => damage,
        }
    }
}

/// Reads the record at the start of `bytes`: its payload and total length.
pub fn read_record(bytes: &[u8]) -> Result<(&[u8], usize), Problem> {
    let Some(header) = bytes.first_chunk::<HEADER_BYTES>() else {
        return Err(Problem::CutShort);
    };
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    if word(0) != MAGIC {
        return Err(Problem::Damaged(Damage::NoRecordMarker));
    }
    let length = word(4) as usize;
    if length > MAX_PAYLOAD_BYTES {
        return Err(Problem::Damaged(Damage::TooLong));
    }
    let Some(payload) = bytes.get(HEADER_BYTES..HEADER_BYTES + length) else {
        return Err(Problem::CutShort);
    };
    if crc::crc32(payload) != word(8) {
        return Err(Problem::Damaged(Damage::ChecksumMismatch));
    }
    Ok((payload, HEADER_BYTES + length))
}

/// A place where a record could start: where its payload runs, and the
/// checksum its header claims.
struct Candidate {
    payload_end: usize,
    /// What the checksum of `..payload_end` must be for the record to be valid.
    expected: u32,
}

/// The offset in `bytes` of a valid record, if one starts anywhere in them.
///
/// Testing each marker by checksumming the payload it claims costs the sum
/// of the claimed lengths, which bytes written to fool this scan make
/// quadratic. Instead one pass takes the checksum of every prefix that
/// starts a candidate payload, and a second pass that of every prefix that
/// ends one: `crc(a..b) = crc(..b) ^ shift(crc(..a), b - a)` (see
/// [`crc::shift`]). Work: two passes over `bytes`, plus a sort of the
/// candidates, of which there are at most `bytes.len() / 4` (each held in
/// memory until the second pass).
pub fn first_valid_record(bytes: &[u8]) -> Option<usize> {
    let mut candidates = collect_candidates(bytes);
    candidates.sort_by_key(|(_, candidate)| candidate.payload_end);
    let mut crc = Crc32::default();
    let mut at = 0;
    let mut found: Option<usize> = None;
    for (start, candidate) in &candidates {
        crc.update(&bytes[at..candidate.payload_end]);
        at = candidate.payload_end;
        if crc.value() == candidate.expected {
            found = Some(found.map_or(*start, |first| first.min(*start)));
        }
    }
    found
}

/// Every record marker in `bytes` whose claimed payload fits in them, with
/// its start, in order of start.
fn collect_candidates(bytes: &[u8]) -> Vec<(usize, Candidate)> {
    let magic = MAGIC.to_le_bytes();
    let mut candidates = Vec::new();
    let mut crc = Crc32::default();
    let mut at = 0;
    let starts = bytes
        .windows(4)
        .enumerate()
        .filter(|(_, window)| *window == magic)
        .map(|(start, _)| start);
    for start in starts {
        let Some(header) = bytes[start..].first_chunk::<HEADER_BYTES>() else {
            break;
        };
        let field =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let length = field(4) as usize;
        let payload_start = start + HEADER_BYTES;
        let payload_end = payload_start + length;
        if length > MAX_PAYLOAD_BYTES || payload_end > bytes.len() {
            continue;
        }
        // Starts are increasing, so the prefix checksum only moves forward.
        crc.update(&bytes[at..payload_start]);
        at = payload_start;
        let expected = field(8) ^ crc::shift(crc.value(), length as u64);
        candidates.push((
            start,
            Candidate {
                payload_end,
                expected,
            },
        ));
    }
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::testing::legacy_frame as frame;

    /// The scan format 1 had: checksum every candidate's payload.
    fn first_valid_naively(bytes: &[u8]) -> Option<usize> {
        (0..bytes.len()).find(|&at| read_record(&bytes[at..]).is_ok())
    }

    #[test]
    fn torn_and_damaged_records_are_told_apart() {
        let record = frame(b"\x02payload!");
        for cut in [0, 5, HEADER_BYTES, record.len() - 1] {
            assert_eq!(
                read_record(&record[..cut]),
                Err(Problem::CutShort),
                "cut at {cut}"
            );
        }
        let mut flipped = record.clone();
        flipped[HEADER_BYTES + 3] ^= 1;
        assert_eq!(
            read_record(&flipped),
            Err(Problem::Damaged(Damage::ChecksumMismatch))
        );
        let mut no_magic = record.clone();
        no_magic[0] ^= 1;
        assert_eq!(
            read_record(&no_magic),
            Err(Problem::Damaged(Damage::NoRecordMarker))
        );
    }

    #[test]
    fn the_scan_finds_what_checksumming_every_candidate_finds() {
        let record = frame(b"\x01some payload");
        let mut fake = MAGIC.to_le_bytes().to_vec();
        fake.extend_from_slice(&5u32.to_le_bytes());
        fake.extend_from_slice(&[0xAB; 9]);
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0xAB; 37],
            [vec![0xAB; 37], record.clone()].concat(),
            [fake.clone(), record.clone(), fake.clone()].concat(),
            [fake.clone(), fake.clone()].concat(),
            [record.clone(), record.clone()].concat(),
            record[..record.len() - 1].to_vec(),
            [vec![7; 3], record[..HEADER_BYTES].to_vec(), record.clone()].concat(),
        ];
        for bytes in cases {
            assert_eq!(
                first_valid_record(&bytes),
                first_valid_naively(&bytes),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn markers_claiming_huge_payloads_cost_linear_work() {
        // 4 MiB of markers whose lengths all fit in the bytes: checksumming
        // each claim would read about 2^40 bytes.
        let mut bytes = Vec::with_capacity(4 << 20);
        while bytes.len() < 4 << 20 {
            bytes.extend_from_slice(&MAGIC.to_le_bytes());
            bytes.extend_from_slice(&(1u32 << 20).to_le_bytes());
            bytes.extend_from_slice(b"CRC!");
        }
        let started = std::time::Instant::now();
        assert_eq!(first_valid_record(&bytes), None);
        // Two passes over 4 MiB and 300,000 candidates take milliseconds;
        // the bound is generous for a loaded machine.
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
}
