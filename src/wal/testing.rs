//! Helpers for the WAL's unit tests: scratch dirs and hand-made files of
//! either format.

use super::record::{self, Encoder};
use super::{Recovered, crc, legacy};
use crate::store::Entry;
use crate::tenants::{TenantId, Tenants};
use crate::version::Version;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const SEED: u64 = 0x0123_4567_89AB_CDEF;

/// A fresh directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("dc-unit-{}-{name}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Items as (id, version, tenant), encoded with tenants as given.
fn entries(items: &[(i64, u64, &str)]) -> (Vec<Entry>, Vec<Arc<str>>) {
    let names: Vec<Arc<str>> = items.iter().map(|(_, _, t)| Arc::from(*t)).collect();
    let entries = items
        .iter()
        .enumerate()
        .map(|(i, (id, version, _))| Entry {
            id: *id,
            version: Version::new(*version),
            tenant: TenantId::new(i as u32),
        })
        .collect();
    (entries, names)
}

/// A format-2 batch record under `seed`.
pub fn record(seed: u64, items: &[(i64, u64, &str)]) -> Vec<u8> {
    let (entries, names) = entries(items);
    let mut out = Vec::new();
    Encoder::new(seed).batch(&mut out, &entries, |id| names[id.index()].clone());
    out
}

/// The payload of a batch record (either format).
pub fn payload(items: &[(i64, u64, &str)]) -> Vec<u8> {
    let (entries, names) = entries(items);
    let mut out = Vec::new();
    record::batch_payload(&mut out, &entries, |id| names[id.index()].clone());
    out
}

/// A format-1 record around `payload`.
pub fn legacy_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = legacy::MAGIC.to_le_bytes().to_vec();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc::crc32(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// A format-2 segment: header and `records`.
pub fn segment(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = record::segment_header(SEED).to_vec();
    records.iter().for_each(|r| out.extend_from_slice(r));
    out
}

/// A format-2 snapshot of `items` covering segments below `next`.
pub fn snapshot(next: u64, items: &[(i64, u64, &str)]) -> Vec<u8> {
    let mut out = record::snapshot_header(SEED, next).to_vec();
    out.extend_from_slice(&record(SEED, items));
    Encoder::new(SEED).end(&mut out, items.len() as u64);
    out
}

/// A format-1 snapshot of `items` covering segments below `next`.
pub fn legacy_snapshot(next: u64, items: &[(i64, u64, &str)]) -> Vec<u8> {
    let mut out = legacy::SNAPSHOT_MAGIC.to_vec();
    out.extend_from_slice(&next.to_le_bytes());
    out.extend_from_slice(&legacy_frame(&payload(items)));
    let mut end = vec![2u8];
    end.extend_from_slice(&(items.len() as u64).to_le_bytes());
    out.extend_from_slice(&legacy_frame(&end));
    out
}

/// The first of `make(1)`, `make(2)`, ... that is valid UTF-8, as a
/// client could send it in a tenant name.
pub fn utf8_record(make: impl Fn(i64) -> Vec<u8>) -> String {
    (1..100_000)
        .find_map(|id| String::from_utf8(make(id)).ok())
        .expect("one in about 16 has a checksum of valid UTF-8")
}

/// The closest a tenant name comes to holding a format-2 record under
/// `seed`: a stuffed record always holds 0xFF (see
/// `record::tests::no_record_is_valid_utf8`), so a name can carry it with
/// those bytes replaced, then the record's content (payload and checksum,
/// what a reader would accept once unstuffed) and a record end.
pub fn closest_to_a_record(seed: u64) -> String {
    let stuffed = record(seed, &[(666, 7, "evil")]);
    let content = utf8_record(|id| {
        let mut content = payload(&[(id, 7, "evil")]);
        let checksum = crc::seeded(seed, &content);
        content.extend_from_slice(&checksum.to_le_bytes());
        content
    });
    format!("{}{content}\0", String::from_utf8_lossy(&stuffed))
}

pub fn segment_name(number: u64) -> String {
    format!("wal-{number:016}.log")
}

/// How many items `tenant` has in what was recovered.
pub fn count(recovered: &Recovered, tenants: &Tenants, tenant: &str) -> u64 {
    tenants.lookup(tenant).map_or(0, |tag| {
        recovered
            .store
            .tenant_counts()
            .get(tag.id.index())
            .copied()
            .unwrap_or(0)
    })
}
