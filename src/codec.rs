//! The one binary encoding of an item write, shared by the node protocol and
//! the write-ahead log, and the reader both decode it with.
//!
//! An entry is 20 bytes, all little-endian:
//!
//! ```text
//!   id i64 | version u64 | tenant u32
//! ```
//!
//! The tenant is a number whose meaning the container gives: an interned
//! [`TenantId`](crate::tenants::TenantId) on the node protocol, an index into
//! the record's own list of names in the log.

use crate::version::Version;
use std::fmt;

/// Bytes of one encoded entry.
pub const ENTRY_BYTES: usize = 20;

/// One write as encoded: the tenant is a number the container interprets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEntry {
    pub id: i64,
    pub version: Version,
    pub tenant: u32,
}

/// Appends one entry to `out`.
pub fn put_entry(out: &mut Vec<u8>, entry: RawEntry) {
    out.extend_from_slice(&entry.id.to_le_bytes());
    out.extend_from_slice(&entry.version.get().to_le_bytes());
    out.extend_from_slice(&entry.tenant.to_le_bytes());
}

/// The bytes end before what they announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated;

impl fmt::Display for Truncated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ends too early")
    }
}

impl std::error::Error for Truncated {}

/// Reads fixed-size little-endian fields off a byte slice, front to back.
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader(bytes)
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.0
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        if self.0.len() < n {
            return Err(Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Truncated> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or(Truncated)?;
        self.0 = rest;
        Ok(*head)
    }

    pub fn u8(&mut self) -> Result<u8, Truncated> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, Truncated> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, Truncated> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, Truncated> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> Result<i64, Truncated> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub fn entry(&mut self) -> Result<RawEntry, Truncated> {
        Ok(RawEntry {
            id: self.i64()?,
            version: Version::new(self.u64()?),
            tenant: self.u32()?,
        })
    }

    /// Reads `count` entries, after checking that exactly that many bytes
    /// are left: a count that does not match the length is an error before
    /// anything is allocated for it.
    pub fn entries_to_end(&mut self, count: usize) -> Result<Vec<RawEntry>, CountMismatch> {
        if self.0.len() != count.saturating_mul(ENTRY_BYTES) {
            return Err(CountMismatch);
        }
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            entries.push(self.entry().map_err(|_| CountMismatch)?);
        }
        Ok(entries)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An entry count that does not match the bytes left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountMismatch;

impl fmt::Display for CountMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("entry count does not match the length")
    }
}

impl std::error::Error for CountMismatch {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_at_the_extremes() {
        let entries = [
            RawEntry {
                id: i64::MIN,
                version: Version::new(u64::MAX),
                tenant: u32::MAX,
            },
            RawEntry {
                id: 42,
                version: Version::new(1),
                tenant: 0,
            },
        ];
        let mut out = Vec::new();
        for entry in entries {
            put_entry(&mut out, entry);
        }
        assert_eq!(out.len(), 2 * ENTRY_BYTES);
        let mut reader = Reader::new(&out);
        assert_eq!(reader.entries_to_end(2).unwrap(), entries);
        assert!(reader.is_empty());
    }

    #[test]
    fn short_input_is_an_error_not_a_panic() {
        let mut reader = Reader::new(&[1, 2, 3]);
        assert_eq!(reader.u32(), Err(Truncated));
        assert_eq!(reader.take(4), Err(Truncated));
        assert_eq!(reader.u16(), Ok(0x0201));
        assert_eq!(Reader::new(&[0; 21]).entries_to_end(1), Err(CountMismatch));
        assert_eq!(
            Reader::new(&[0; 20]).entries_to_end(usize::MAX),
            Err(CountMismatch)
        );
    }
}
