//! The on-disk record, format 2: a payload with a seeded checksum, byte
//! stuffed so that 0x00 marks record ends and nothing else.
//!
//! ```text
//! segment  = "DCWAL002" | seed u64 | crc32(previous 16 bytes) u32 | record*
//! snapshot = "DCSNAP02" | seed u64 | next segment u64 | crc32(previous 24 bytes) u32
//!            | record* | end record
//! record   = cobs(payload | crc32(seed | payload) u32) | 0x00
//! payload  = kind u8, then for kind 1 (a batch):
//!            tenants u32 | tenants × (len u16, UTF-8 bytes)
//!            | entries u32 | entries × (id i64, version u64, tenant index u32)
//!            and for kind 2 (end of a snapshot): entries u64
//! ```
//!
//! All integers are little-endian. `cobs` is byte stuffing that stores the
//! bytes inverted (see `cobs.rs`). Each record names the tenants it uses, so
//! a record means the same thing whatever the in-memory tenant ids are.
//!
//! Why this framing: tenant names are client bytes and may hold anything,
//! including a whole record. After stuffing (`cobs.rs`) a record holds no
//! 0x00, so a reader looking for records only ever looks right after a 0x00
//! (or the header), never inside a payload, and reads each byte once. The
//! seed is random per process and stored in each file's header: even bytes
//! that do land at a record start (after a crash left zeros mid-record)
//! cannot carry a checksum a client computed. (A name cannot even hold a
//! whole stuffed record: every one holds 0xFF, which UTF-8 never does.)

use super::cobs;
use super::crc;
use crate::codec::{self, RawEntry, Reader};
use crate::store::Entry;
use crate::tenants::TenantId;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

/// Starts a format-2 segment.
pub const SEGMENT_MAGIC: &[u8; 8] = b"DCWAL002";
pub const SEGMENT_HEADER_BYTES: usize = 20;
/// Starts a format-2 snapshot.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"DCSNAP02";
pub const SNAPSHOT_HEADER_BYTES: usize = 28;
/// What every format's magic starts with: a file that starts with it and
/// is not a format we know was written by a newer version.
const FAMILY: &[u8] = b"DCWAL";
const SNAPSHOT_FAMILY: &[u8] = b"DCSNAP";
/// Ends every record; never occurs inside one.
pub const RECORD_END: u8 = 0;
/// Bytes of the checksum at the end of a stuffed record's content.
const CHECKSUM_BYTES: usize = 4;
/// Largest payload a record may have; a longer record is damage.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 30;
/// Most entries written as one record: even with a distinct 1 KiB tenant
/// per entry, a record stays under [`MAX_PAYLOAD_BYTES`].
pub const MAX_ENTRIES_PER_RECORD: usize = 1 << 18;
/// Highest segment number: segment names have 16 digits, and one more
/// segment can always be numbered.
pub const MAX_SEGMENT_NUMBER: u64 = 9_999_999_999_999_999;
const KIND_BATCH: u8 = 1;
const KIND_END: u8 = 2;

/// The seed of the files this process writes (drawn from the OS once).
pub fn process_seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(crate::keys::random_u64)
}

/// Why bytes are not a valid record or file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// The bytes end before the record (or header) does.
    CutShort,
    /// Two record ends with nothing between: zero bytes, as a crash leaves.
    Zeros,
    BadStuffing,
    TooShort,
    TooLong,
    ChecksumMismatch,
    /// Format 1: no record marker where a record starts.
    NoRecordMarker,
    UnknownKind,
    BadEndRecord,
    PayloadTooShort,
    TenantNotUtf8,
    EntryCountMismatch,
    TenantIndexOutOfRange,
    /// A version at or above 2^63: never handed out.
    VersionTooHigh,
    EndCountMismatch,
    NoEndRecord,
    BadHeader,
    /// A magic of our family we do not know: a newer version wrote it.
    UnknownFormat,
    NotASnapshot,
    NotABatch,
    SegmentNumberTooHigh,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Damage::CutShort => "record is cut short",
            Damage::Zeros => "zero bytes where a record should start",
            Damage::BadStuffing => "record bytes do not decode",
            Damage::TooShort => "record is too short to hold a checksum",
            Damage::TooLong => "record length is impossible",
            Damage::ChecksumMismatch => "checksum mismatch",
            Damage::NoRecordMarker => "no record marker",
            Damage::UnknownKind => "unknown record kind",
            Damage::BadEndRecord => "bad end record",
            Damage::PayloadTooShort => "payload ends too early",
            Damage::TenantNotUtf8 => "tenant is not UTF-8",
            Damage::EntryCountMismatch => "entry count does not match the record length",
            Damage::TenantIndexOutOfRange => "tenant index out of range",
            Damage::VersionTooHigh => "a version is at or above 2^63, which is never handed out",
            Damage::EndCountMismatch => "end record does not match the contents",
            Damage::NoEndRecord => "the snapshot has no end record",
            Damage::BadHeader => "file header checksum mismatch",
            Damage::UnknownFormat => {
                "unknown file format (written by a newer version of distributed-counter?)"
            }
            Damage::NotASnapshot => "not a snapshot file",
            Damage::NotABatch => "not a batch record",
            Damage::SegmentNumberTooHigh => "segment number out of range",
        })
    }
}

impl std::error::Error for Damage {}

/// Encodes records of one seed, reusing its buffer between records.
pub struct Encoder {
    seed: u64,
    payload: Vec<u8>,
}

impl Encoder {
    pub fn new(seed: u64) -> Self {
        Encoder {
            seed,
            payload: Vec::new(),
        }
    }

    /// Appends one record holding `entries` to `out`; `name_of` gives the
    /// name of an entry's tenant key, once per distinct key.
    pub fn batch(
        &mut self,
        out: &mut Vec<u8>,
        entries: &[Entry],
        name_of: impl FnMut(TenantId) -> Arc<str>,
    ) {
        self.payload.clear();
        batch_payload(&mut self.payload, entries, name_of);
        self.seal(out);
    }

    /// Appends the record that closes a snapshot of `entries` items.
    pub fn end(&mut self, out: &mut Vec<u8>, entries: u64) {
        self.payload.clear();
        self.payload.push(KIND_END);
        self.payload.extend_from_slice(&entries.to_le_bytes());
        self.seal(out);
    }

    /// Appends a record with this payload as it is, for tests that need
    /// records no writer would make.
    pub fn raw(&mut self, out: &mut Vec<u8>, payload: &[u8]) {
        self.payload.clear();
        self.payload.extend_from_slice(payload);
        self.seal(out);
    }

    fn seal(&mut self, out: &mut Vec<u8>) {
        let checksum = crc::seeded(self.seed, &self.payload);
        self.payload.extend_from_slice(&checksum.to_le_bytes());
        cobs::encode(&self.payload, out);
        out.push(RECORD_END);
    }
}

/// Appends one record holding `entries` to `out`, with this process's seed.
pub fn encode_batch(
    out: &mut Vec<u8>,
    entries: &[Entry],
    name_of: impl FnMut(TenantId) -> Arc<str>,
) {
    Encoder::new(process_seed()).batch(out, entries, name_of);
}

/// Appends the payload of a batch record (no framing) to `out`.
pub fn batch_payload(
    out: &mut Vec<u8>,
    entries: &[Entry],
    mut name_of: impl FnMut(TenantId) -> Arc<str>,
) {
    out.push(KIND_BATCH);
    let mut local: HashMap<TenantId, u32> = HashMap::new();
    let mut names = Vec::new();
    for entry in entries {
        local.entry(entry.tenant).or_insert_with(|| {
            names.push(name_of(entry.tenant));
            (names.len() - 1) as u32
        });
    }
    out.extend_from_slice(&(names.len() as u32).to_le_bytes());
    for name in &names {
        // Tenants are at most 1024 bytes (batch::MAX_TENANT_BYTES).
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
    }
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    out.reserve(entries.len() * codec::ENTRY_BYTES);
    for entry in entries {
        codec::put_entry(
            out,
            RawEntry {
                tenant: local[&entry.tenant],
                ..entry.raw()
            },
        );
    }
}

/// The header of a format-2 segment.
pub fn segment_header(seed: u64) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    header[..8].copy_from_slice(SEGMENT_MAGIC);
    header[8..16].copy_from_slice(&seed.to_le_bytes());
    let checksum = crc::crc32(&header[..16]);
    header[16..].copy_from_slice(&checksum.to_le_bytes());
    header
}

/// The header of a format-2 snapshot covering segments below `next_segment`.
pub fn snapshot_header(seed: u64, next_segment: u64) -> [u8; SNAPSHOT_HEADER_BYTES] {
    let mut header = [0u8; SNAPSHOT_HEADER_BYTES];
    header[..8].copy_from_slice(SNAPSHOT_MAGIC);
    header[8..16].copy_from_slice(&seed.to_le_bytes());
    header[16..24].copy_from_slice(&next_segment.to_le_bytes());
    let checksum = crc::crc32(&header[..24]);
    header[24..].copy_from_slice(&checksum.to_le_bytes());
    header
}

/// How a segment file is laid out, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentFormat {
    /// Format 1: records from offset 0.
    One,
    /// Format 2: stuffed records after the header, checksums seeded so.
    Two { seed: u64 },
    /// A format-2 header that a crash cut short: the segment holds nothing.
    TornHeader,
}

pub fn segment_format(bytes: &[u8]) -> Result<SegmentFormat, Damage> {
    let magic_part = &bytes[..bytes.len().min(SEGMENT_MAGIC.len())];
    if !bytes.is_empty()
        && bytes.len() < SEGMENT_HEADER_BYTES
        && SEGMENT_MAGIC.starts_with(magic_part)
    {
        return Ok(SegmentFormat::TornHeader);
    }
    if magic_part == SEGMENT_MAGIC {
        let header = &bytes[..SEGMENT_HEADER_BYTES];
        if crc::crc32(&header[..16]) != u32_at(header, 16) {
            return Err(Damage::BadHeader);
        }
        return Ok(SegmentFormat::Two {
            seed: u64_at(header, 8),
        });
    }
    if bytes.starts_with(FAMILY) {
        return Err(Damage::UnknownFormat);
    }
    Ok(SegmentFormat::One)
}

/// How a snapshot file is laid out, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotFormat {
    /// Format 1: records from offset 16.
    One { next_segment: u64 },
    /// Format 2: stuffed records from offset [`SNAPSHOT_HEADER_BYTES`].
    Two { seed: u64, next_segment: u64 },
}

pub fn snapshot_format(bytes: &[u8]) -> Result<SnapshotFormat, Damage> {
    let format = if bytes.starts_with(SNAPSHOT_MAGIC) {
        let header = bytes
            .get(..SNAPSHOT_HEADER_BYTES)
            .ok_or(Damage::NotASnapshot)?;
        if crc::crc32(&header[..24]) != u32_at(header, 24) {
            return Err(Damage::BadHeader);
        }
        SnapshotFormat::Two {
            seed: u64_at(header, 8),
            next_segment: u64_at(header, 16),
        }
    } else if bytes.starts_with(super::legacy::SNAPSHOT_MAGIC) {
        let header = bytes.get(..16).ok_or(Damage::NotASnapshot)?;
        SnapshotFormat::One {
            next_segment: u64_at(header, 8),
        }
    } else if bytes.starts_with(SNAPSHOT_FAMILY) {
        return Err(Damage::UnknownFormat);
    } else {
        return Err(Damage::NotASnapshot);
    };
    let (SnapshotFormat::One { next_segment } | SnapshotFormat::Two { next_segment, .. }) = format;
    if next_segment > MAX_SEGMENT_NUMBER {
        return Err(Damage::SegmentNumberTooHigh);
    }
    Ok(format)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// The bytes between two record ends: a record, if nothing went wrong.
#[derive(Debug, Clone, Copy)]
pub struct Chunk<'a> {
    /// Where the chunk starts in the region given to [`chunks`].
    pub offset: usize,
    pub bytes: &'a [u8],
    /// Whether a record end follows (the last chunk of a torn write has none).
    pub ended: bool,
}

/// Cuts `region` at every record end. Each byte is looked at once.
pub fn chunks(region: &[u8]) -> impl Iterator<Item = Chunk<'_>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let rest = region.get(at..).filter(|rest| !rest.is_empty())?;
        let chunk = match rest.iter().position(|&byte| byte == RECORD_END) {
            Some(end) => Chunk {
                offset: at,
                bytes: &rest[..end],
                ended: true,
            },
            None => Chunk {
                offset: at,
                bytes: rest,
                ended: false,
            },
        };
        at += chunk.bytes.len() + 1;
        Some(chunk)
    })
}

/// Unstuffs a chunk into `scratch` and checks its checksum under `seed`;
/// returns the payload.
pub fn open<'s>(
    seed: u64,
    chunk: &Chunk<'_>,
    scratch: &'s mut Vec<u8>,
) -> Result<&'s [u8], Damage> {
    if !chunk.ended {
        return Err(Damage::CutShort);
    }
    if chunk.bytes.is_empty() {
        return Err(Damage::Zeros);
    }
    if chunk.bytes.len() > cobs::max_encoded_len(MAX_PAYLOAD_BYTES + CHECKSUM_BYTES) {
        return Err(Damage::TooLong);
    }
    cobs::decode(chunk.bytes, scratch).map_err(|_| Damage::BadStuffing)?;
    let Some(payload_len) = scratch.len().checked_sub(CHECKSUM_BYTES).filter(|&n| n > 0) else {
        return Err(Damage::TooShort);
    };
    let (payload, checksum) = scratch.split_at(payload_len);
    if crc::seeded(seed, payload) != u32_at(checksum, 0) {
        return Err(Damage::ChecksumMismatch);
    }
    Ok(payload)
}

/// What a record holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    Batch,
    /// The end of a snapshot of this many items.
    End(u64),
}

/// The kind of a payload; for a batch, decode it with [`decode_batch`].
pub fn kind_of(payload: &[u8]) -> Result<Kind, Damage> {
    match payload.split_first() {
        Some((&KIND_BATCH, _)) => Ok(Kind::Batch),
        Some((&KIND_END, rest)) => {
            let count: [u8; 8] = rest.try_into().map_err(|_| Damage::BadEndRecord)?;
            Ok(Kind::End(u64::from_le_bytes(count)))
        }
        _ => Err(Damage::UnknownKind),
    }
}

/// A batch record as read back: its tenant names, and entries whose tenant
/// is an index into `names`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<'a> {
    pub names: Vec<&'a str>,
    pub entries: Vec<RawEntry>,
}

/// Decodes a batch payload (of either format). Every entry's tenant index
/// names one of the record's tenants, and every version is one we could
/// have handed out: checked here so that no reader (startup, compaction, a
/// node restarted from disk) can skip it.
pub fn decode_batch(payload: &[u8]) -> Result<Batch<'_>, Damage> {
    const SHORT: Damage = Damage::PayloadTooShort;
    let mut reader = Reader::new(payload);
    if reader.u8().map_err(|_| SHORT)? != KIND_BATCH {
        return Err(Damage::NotABatch);
    }
    let tenant_count = reader.u32().map_err(|_| SHORT)? as usize;
    let mut names = Vec::with_capacity(tenant_count.min(4096));
    for _ in 0..tenant_count {
        let len = reader.u16().map_err(|_| SHORT)? as usize;
        let bytes = reader.take(len).map_err(|_| SHORT)?;
        names.push(std::str::from_utf8(bytes).map_err(|_| Damage::TenantNotUtf8)?);
    }
    let entry_count = reader.u32().map_err(|_| SHORT)? as usize;
    let entries = reader
        .entries_to_end(entry_count)
        .map_err(|_| Damage::EntryCountMismatch)?;
    if entries.iter().any(|e| e.tenant as usize >= names.len()) {
        return Err(Damage::TenantIndexOutOfRange);
    }
    if entries.iter().any(|e| !e.version.is_valid()) {
        // We never hand out such a version: the record was not written by
        // us, and new writes ordered after it would wrap around.
        return Err(Damage::VersionTooHigh);
    }
    Ok(Batch { names, entries })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::Version;

    const SEED: u64 = 0x5EED;

    fn entry(id: i64, version: u64, tenant: u32) -> Entry {
        Entry {
            id,
            version: Version::new(version),
            tenant: TenantId::new(tenant),
        }
    }

    fn sample() -> Vec<u8> {
        let names: [Arc<str>; 2] = [Arc::from("a"), Arc::from("日本")];
        let entries = [entry(1, 10, 0), entry(-5, 11, 1), entry(7, 12, 0)];
        let mut out = Vec::new();
        let mut lookups = 0;
        Encoder::new(SEED).batch(&mut out, &entries, |key| {
            lookups += 1;
            names[key.index()].clone()
        });
        assert_eq!(lookups, 2, "one name lookup per distinct tenant");
        out
    }

    fn only_chunk(bytes: &[u8]) -> Chunk<'_> {
        let all: Vec<_> = chunks(bytes).collect();
        assert_eq!(all.len(), 1, "{bytes:?}");
        all[0]
    }

    #[test]
    fn a_batch_round_trips_with_tenant_names() {
        let bytes = sample();
        assert_eq!(bytes.iter().filter(|&&b| b == RECORD_END).count(), 1);
        assert_eq!(bytes.last(), Some(&RECORD_END));
        let mut scratch = Vec::new();
        let payload = open(SEED, &only_chunk(&bytes), &mut scratch).unwrap();
        assert_eq!(kind_of(payload), Ok(Kind::Batch));
        let batch = decode_batch(payload).unwrap();
        let seen: Vec<_> = batch
            .entries
            .iter()
            .map(|e| (e.id, e.version.get(), batch.names[e.tenant as usize]))
            .collect();
        assert_eq!(seen, vec![(1, 10, "a"), (-5, 11, "日本"), (7, 12, "a")]);
    }

    #[test]
    fn end_records_carry_the_count() {
        let mut out = Vec::new();
        Encoder::new(SEED).end(&mut out, 42);
        let mut scratch = Vec::new();
        let payload = open(SEED, &only_chunk(&out), &mut scratch).unwrap();
        assert_eq!(kind_of(payload), Ok(Kind::End(42)));
    }

    #[test]
    fn torn_zeroed_and_damaged_records_are_told_apart() {
        let bytes = sample();
        let mut scratch = Vec::new();
        let cut = &bytes[..bytes.len() - 1];
        assert_eq!(
            open(SEED, &only_chunk(cut), &mut scratch),
            Err(Damage::CutShort)
        );
        assert_eq!(
            open(SEED, &only_chunk(&[0]), &mut scratch),
            Err(Damage::Zeros)
        );
        for at in 0..bytes.len() - 1 {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x40;
            if flipped[at] != RECORD_END {
                assert!(
                    open(SEED, &only_chunk(&flipped), &mut scratch).is_err(),
                    "flip at {at}"
                );
            }
        }
        assert_eq!(
            open(SEED + 1, &only_chunk(&bytes), &mut scratch),
            Err(Damage::ChecksumMismatch),
            "a record checks only under the seed of its file"
        );
    }

    #[test]
    fn client_bytes_never_end_a_record() {
        // A tenant holding record ends and a whole stuffed record.
        let mut inner = Vec::new();
        Encoder::new(SEED).end(&mut inner, 1);
        let name = format!("\0{}\0", String::from_utf8_lossy(&inner));
        let names: [Arc<str>; 1] = [Arc::from(name.as_str())];
        let mut out = Vec::new();
        Encoder::new(SEED).batch(&mut out, &[entry(1, 1, 0)], |key| {
            names[key.index()].clone()
        });
        let chunk = only_chunk(&out);
        let mut scratch = Vec::new();
        let batch = decode_batch(open(SEED, &chunk, &mut scratch).unwrap())
            .unwrap()
            .names[0]
            .to_string();
        assert_eq!(batch, name);
    }

    #[test]
    fn no_record_is_valid_utf8() {
        // Payload counts are small little-endian numbers, so every payload
        // holds a 0x00, stored inverted as 0xFF, which UTF-8 never holds:
        // no tenant name can carry a stuffed record.
        let mut out = Vec::new();
        Encoder::new(SEED).end(&mut out, 0);
        assert!(std::str::from_utf8(&out).is_err());
        for id in 0..1000 {
            let names: [Arc<str>; 1] = [Arc::from("evil")];
            let mut out = Vec::new();
            Encoder::new(SEED).batch(&mut out, &[entry(id, 7, 0)], |k| names[k.index()].clone());
            assert!(
                out.contains(&0xFF) && std::str::from_utf8(&out).is_err(),
                "id {id}"
            );
        }
    }

    #[test]
    fn versions_from_2_63_up_are_damage() {
        let names: [Arc<str>; 1] = [Arc::from("t")];
        for (version, ok) in [(i64::MAX as u64, true), (1 << 63, false), (u64::MAX, false)] {
            let mut payload = Vec::new();
            batch_payload(&mut payload, &[entry(1, version, 0)], |k| {
                names[k.index()].clone()
            });
            let decoded = decode_batch(&payload);
            assert_eq!(decoded.is_ok(), ok, "version {version}");
            if !ok {
                assert_eq!(decoded, Err(Damage::VersionTooHigh));
            }
        }
    }

    #[test]
    fn chunks_cut_at_every_record_end() {
        let cut: Vec<_> = chunks(b"ab\0\0c")
            .map(|c| (c.offset, c.bytes.to_vec(), c.ended))
            .collect();
        assert_eq!(
            cut,
            vec![
                (0, b"ab".to_vec(), true),
                (3, vec![], true),
                (4, b"c".to_vec(), false)
            ]
        );
        assert_eq!(chunks(b"ab\0").count(), 1);
        assert_eq!(chunks(b"").count(), 0);
    }

    #[test]
    fn file_formats_are_recognized() {
        let header = segment_header(SEED);
        assert_eq!(
            segment_format(&header),
            Ok(SegmentFormat::Two { seed: SEED })
        );
        assert_eq!(segment_format(&header[..7]), Ok(SegmentFormat::TornHeader));
        assert_eq!(segment_format(&header[..19]), Ok(SegmentFormat::TornHeader));
        assert_eq!(segment_format(b""), Ok(SegmentFormat::One));
        assert_eq!(segment_format(b"DCWR\x09\0\0\0"), Ok(SegmentFormat::One));
        assert_eq!(
            segment_format(b"DCWAL003 and more bytes"),
            Err(Damage::UnknownFormat)
        );
        let mut bad = header;
        bad[9] ^= 1;
        assert_eq!(segment_format(&bad), Err(Damage::BadHeader));

        let snapshot = snapshot_header(SEED, 7);
        assert_eq!(
            snapshot_format(&snapshot),
            Ok(SnapshotFormat::Two {
                seed: SEED,
                next_segment: 7
            })
        );
        let mut old = b"DCSNAP01".to_vec();
        old.extend_from_slice(&3u64.to_le_bytes());
        assert_eq!(
            snapshot_format(&old),
            Ok(SnapshotFormat::One { next_segment: 3 })
        );
        old[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(snapshot_format(&old), Err(Damage::SegmentNumberTooHigh));
        assert_eq!(snapshot_format(b"garbage"), Err(Damage::NotASnapshot));
        assert_eq!(
            snapshot_format(b"DCSNAP03........"),
            Err(Damage::UnknownFormat)
        );
    }
}
