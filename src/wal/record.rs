//! The on-disk record: framing with a checksum, and the batch payload.
//!
//! ```text
//! record  = magic u32 | length u32 | crc32(payload) u32 | payload
//! payload = kind u8, then for kind 1 (a batch):
//!           tenants u32 | tenants × (len u16, UTF-8 bytes)
//!           | entries u32 | entries × (id i64, version u64, tenant index u32)
//!           and for kind 2 (end of a snapshot): entries u64
//! ```
//!
//! All integers are little-endian. Each record names the tenants it uses, so
//! a record means the same thing whatever the in-memory tenant ids are.

use crate::codec::{self, RawEntry, Reader};
use crate::store::Entry;
use crate::tenants::TenantId;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Marks the start of every record, so a reader can tell a torn tail from
/// damage in the middle by looking for valid records after a bad one.
pub const MAGIC: u32 = 0x5257_4344; // "DCWR"
pub const HEADER_BYTES: usize = 12;
/// Largest payload a record may have; a larger length field is damage.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 30;
/// Most entries written as one record: even with a distinct 1 KiB tenant
/// per entry, a record stays under [`MAX_PAYLOAD_BYTES`].
pub const MAX_ENTRIES_PER_RECORD: usize = 1 << 18;
const KIND_BATCH: u8 = 1;
const KIND_END: u8 = 2;

/// CRC-32 (IEEE), table-driven.
pub fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = i as u32;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    !bytes.iter().fold(!0u32, |crc, &byte| {
        TABLE[((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8)
    })
}

/// Appends one framed record holding `entries` to `out`; `name_of` gives the
/// name of an entry's tenant key, once per distinct key.
pub fn encode_batch(
    out: &mut Vec<u8>,
    entries: &[Entry],
    mut name_of: impl FnMut(TenantId) -> Arc<str>,
) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_BYTES]);
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
    seal(out, start);
}

/// Appends the record that closes a snapshot of `entries` items.
pub fn encode_end(out: &mut Vec<u8>, entries: u64) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_BYTES]);
    out.push(KIND_END);
    out.extend_from_slice(&entries.to_le_bytes());
    seal(out, start);
}

/// What a record holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    Batch,
    /// The end of a snapshot of this many items.
    End(u64),
}

/// The kind of a payload; for a batch, decode it with [`decode_batch`].
pub fn kind_of(payload: &[u8]) -> Result<Kind, RecordError> {
    match payload.split_first() {
        Some((&KIND_BATCH, _)) => Ok(Kind::Batch),
        Some((&KIND_END, rest)) => {
            let count: [u8; 8] = rest
                .try_into()
                .map_err(|_| RecordError::Damaged("bad end record"))?;
            Ok(Kind::End(u64::from_le_bytes(count)))
        }
        _ => Err(RecordError::Damaged("unknown record kind")),
    }
}

/// Fills in the header of the record that starts at `start` and runs to the end.
pub fn seal(out: &mut [u8], start: usize) {
    let payload_len = out.len() - start - HEADER_BYTES;
    let crc = crc32(&out[start + HEADER_BYTES..]);
    out[start..start + 4].copy_from_slice(&MAGIC.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

/// A batch record as read back: its tenant names, and entries whose tenant
/// is an index into `names`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<'a> {
    pub names: Vec<&'a str>,
    pub entries: Vec<RawEntry>,
}

/// Why bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// The bytes end before the record does (a torn write, at the tail).
    Incomplete,
    /// The bytes are there but wrong.
    Damaged(&'static str),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Incomplete => f.write_str("record is cut short"),
            RecordError::Damaged(why) => f.write_str(why),
        }
    }
}

/// Reads the record at the start of `bytes`: its payload and total length.
pub fn read_record(bytes: &[u8]) -> Result<(&[u8], usize), RecordError> {
    let Some(header) = bytes.get(..HEADER_BYTES) else {
        return Err(RecordError::Incomplete);
    };
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    if word(0) != MAGIC {
        return Err(RecordError::Damaged("no record marker"));
    }
    let length = word(4) as usize;
    if length > MAX_PAYLOAD_BYTES {
        return Err(RecordError::Damaged("record length is impossible"));
    }
    let Some(payload) = bytes.get(HEADER_BYTES..HEADER_BYTES + length) else {
        return Err(RecordError::Incomplete);
    };
    if crc32(payload) != word(8) {
        return Err(RecordError::Damaged("checksum mismatch"));
    }
    Ok((payload, HEADER_BYTES + length))
}

/// True if a valid record starts anywhere in `bytes`.
pub fn any_valid_record(bytes: &[u8]) -> bool {
    let magic = MAGIC.to_le_bytes();
    bytes
        .windows(4)
        .enumerate()
        .filter(|(_, window)| *window == magic)
        .any(|(offset, _)| read_record(&bytes[offset..]).is_ok())
}

const TOO_SHORT: RecordError = RecordError::Damaged("payload ends too early");

/// Decodes a batch payload. Every entry's tenant index names one of the
/// record's tenants.
pub fn decode_batch(payload: &[u8]) -> Result<Batch<'_>, RecordError> {
    let mut reader = Reader::new(payload);
    if reader.u8().map_err(|_| TOO_SHORT)? != KIND_BATCH {
        return Err(RecordError::Damaged("not a batch record"));
    }
    let tenant_count = reader.u32().map_err(|_| TOO_SHORT)? as usize;
    let mut names = Vec::with_capacity(tenant_count.min(4096));
    for _ in 0..tenant_count {
        let len = reader.u16().map_err(|_| TOO_SHORT)? as usize;
        let bytes = reader.take(len).map_err(|_| TOO_SHORT)?;
        names.push(
            std::str::from_utf8(bytes).map_err(|_| RecordError::Damaged("tenant is not UTF-8"))?,
        );
    }
    let entry_count = reader.u32().map_err(|_| TOO_SHORT)? as usize;
    let entries = reader
        .entries_to_end(entry_count)
        .map_err(|_| RecordError::Damaged("entry count does not match the record length"))?;
    if entries.iter().any(|e| e.tenant as usize >= names.len()) {
        return Err(RecordError::Damaged("tenant index out of range"));
    }
    Ok(Batch { names, entries })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::Version;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    fn sample() -> (Vec<u8>, ()) {
        let names: [Arc<str>; 2] = [Arc::from("a"), Arc::from("日本")];
        let entry = |id, version, tenant| Entry {
            id,
            version: Version::new(version),
            tenant: TenantId::new(tenant),
        };
        let entries = [entry(1, 10, 0), entry(-5, 11, 1), entry(7, 12, 0)];
        let mut out = Vec::new();
        let mut lookups = 0;
        encode_batch(&mut out, &entries, |key| {
            lookups += 1;
            names[key.index()].clone()
        });
        assert_eq!(lookups, 2, "one name lookup per distinct tenant");
        (out, ())
    }

    #[test]
    fn end_records_carry_the_count() {
        let mut out = Vec::new();
        encode_end(&mut out, 42);
        let (payload, _) = read_record(&out).unwrap();
        assert_eq!(kind_of(payload), Ok(Kind::End(42)));
        let (batch, _) = sample();
        assert_eq!(kind_of(read_record(&batch).unwrap().0), Ok(Kind::Batch));
    }

    #[test]
    fn a_batch_round_trips_with_tenant_names() {
        let (bytes, _) = sample();
        let (payload, length) = read_record(&bytes).unwrap();
        assert_eq!(length, bytes.len());
        let batch = decode_batch(payload).unwrap();
        let seen: Vec<_> = batch
            .entries
            .iter()
            .map(|e| (e.id, e.version.get(), batch.names[e.tenant as usize]))
            .collect();
        assert_eq!(seen, vec![(1, 10, "a"), (-5, 11, "日本"), (7, 12, "a")]);
    }

    #[test]
    fn torn_and_damaged_records_are_told_apart() {
        let (bytes, _) = sample();
        for cut in [0, 5, HEADER_BYTES, bytes.len() - 1] {
            assert_eq!(
                read_record(&bytes[..cut]),
                Err(RecordError::Incomplete),
                "cut at {cut}"
            );
        }
        let mut flipped = bytes.clone();
        flipped[HEADER_BYTES + 3] ^= 1;
        assert_eq!(
            read_record(&flipped),
            Err(RecordError::Damaged("checksum mismatch"))
        );
        let mut no_magic = bytes.clone();
        no_magic[0] ^= 1;
        assert!(matches!(
            read_record(&no_magic),
            Err(RecordError::Damaged(_))
        ));
    }

    #[test]
    fn valid_records_are_found_after_garbage() {
        let (record, _) = sample();
        let mut bytes = vec![0xAB; 37];
        assert!(!any_valid_record(&bytes));
        bytes.extend_from_slice(&record);
        assert!(any_valid_record(&bytes));
    }
}
