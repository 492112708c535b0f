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
const ENTRY_BYTES: usize = 20;
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
    out.reserve(entries.len() * ENTRY_BYTES);
    for entry in entries {
        out.extend_from_slice(&entry.id.to_le_bytes());
        out.extend_from_slice(&entry.version.to_le_bytes());
        out.extend_from_slice(&local[&entry.tenant].to_le_bytes());
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

/// One entry as read back: the tenant by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskEntry<'a> {
    pub id: i64,
    pub version: u64,
    pub tenant: &'a str,
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

/// Decodes a batch payload, calling `visit` for each entry.
pub fn decode_batch<'a>(
    payload: &'a [u8],
    mut visit: impl FnMut(DiskEntry<'a>),
) -> Result<(), RecordError> {
    let mut cursor = Cursor(payload);
    if cursor.array::<1>()? != [KIND_BATCH] {
        return Err(RecordError::Damaged("not a batch record"));
    }
    let tenant_count = cursor.u32()? as usize;
    let mut names = Vec::with_capacity(tenant_count.min(4096));
    for _ in 0..tenant_count {
        let len = cursor.u16()? as usize;
        let bytes = cursor.take(len)?;
        names.push(
            std::str::from_utf8(bytes).map_err(|_| RecordError::Damaged("tenant is not UTF-8"))?,
        );
    }
    let entry_count = cursor.u32()? as usize;
    if cursor.0.len() != entry_count.saturating_mul(ENTRY_BYTES) {
        return Err(RecordError::Damaged(
            "entry count does not match the record length",
        ));
    }
    for _ in 0..entry_count {
        let id = i64::from_le_bytes(cursor.array()?);
        let version = u64::from_le_bytes(cursor.array()?);
        let index = u32::from_le_bytes(cursor.array()?) as usize;
        let tenant = names
            .get(index)
            .ok_or(RecordError::Damaged("tenant index out of range"))?;
        visit(DiskEntry {
            id,
            version,
            tenant,
        });
    }
    Ok(())
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Damaged("payload ends too early"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, RecordError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    fn sample() -> (Vec<u8>, ()) {
        let names: [Arc<str>; 2] = [Arc::from("a"), Arc::from("日本")];
        let entries = [
            Entry {
                id: 1,
                version: 10,
                tenant: 0,
            },
            Entry {
                id: -5,
                version: 11,
                tenant: 1,
            },
            Entry {
                id: 7,
                version: 12,
                tenant: 0,
            },
        ];
        let mut out = Vec::new();
        let mut lookups = 0;
        encode_batch(&mut out, &entries, |key| {
            lookups += 1;
            names[key as usize].clone()
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
        let mut seen = Vec::new();
        decode_batch(payload, |e| {
            seen.push((e.id, e.version, e.tenant.to_string()))
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![
                (1, 10, "a".into()),
                (-5, 11, "日本".into()),
                (7, 12, "a".into())
            ]
        );
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
