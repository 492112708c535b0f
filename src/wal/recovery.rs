//! Reading a data dir back: the snapshot, then the log segments after it.
//!
//! A bad record at the end of the newest segment, with no valid record after
//! it, is a torn write: it is dropped (and, at startup, cut off the file).
//! Anything else that is wrong — a bad record followed by valid ones, damage
//! in an older segment or in the snapshot — stops recovery with the file and
//! offset, so wrong counts are never served quietly.

use super::record::{self, Batch, Kind};
use super::{SNAPSHOT_FILE, SNAPSHOT_MAGIC, WalError};
use crate::store::{Entry, Store};
use crate::tenants::Tenants;
use crate::version::Version;
use std::path::{Path, PathBuf};

/// What a data dir holds: the items in a [`Store`] (last-writer-wins, like
/// a node's), their tenants interned in the [`Tenants`] given to the reader,
/// and the highest version seen.
pub struct Recovered {
    pub store: Store,
    pub max_version: Version,
}

impl Default for Recovered {
    fn default() -> Self {
        Recovered {
            store: Store::new(),
            max_version: Version::ZERO,
        }
    }
}

impl Recovered {
    /// Applies one batch record; its tenant names are interned once each.
    fn apply(&mut self, batch: &Batch<'_>, tenants: &Tenants) -> Result<usize, &'static str> {
        if batch.entries.iter().any(|e| !e.version.is_valid()) {
            // We never hand out such a version: the record was not written
            // by us, and new writes ordered after it would wrap around.
            return Err("a version is at or above 2^63, which is never handed out");
        }
        let ids = tenants.intern_all(batch.names.iter().copied());
        let entries: Vec<Entry> = batch
            .entries
            .iter()
            .map(|raw| Entry {
                id: raw.id,
                version: raw.version,
                tenant: ids[raw.tenant as usize],
            })
            .collect();
        if let Some(max) = entries.iter().map(|e| e.version).max() {
            self.max_version = self.max_version.max(max);
        }
        self.store.apply(&entries, |_, _| {});
        Ok(entries.len())
    }
}

/// How to treat a torn tail on the newest segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// At startup: cut it off the file.
    Truncate,
    /// While the writer may still be appending to it: just stop there.
    Leave,
}

/// The segment files of `dir`, oldest first, with their numbers.
pub fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let listing = std::fs::read_dir(dir).map_err(|e| WalError::io(dir, e))?;
    let mut found = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| WalError::io(dir, e))?;
        let name = entry.file_name();
        let number = name
            .to_str()
            .and_then(|n| n.strip_prefix("wal-"))
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(number) = number {
            found.push((number, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Reads the snapshot, if any, into `state`; returns the first segment
/// number it does not cover.
pub fn read_snapshot(
    dir: &Path,
    state: &mut Recovered,
    tenants: &Tenants,
) -> Result<u64, WalError> {
    let path = dir.join(SNAPSHOT_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(WalError::io(&path, e)),
    };
    let corrupt = |offset: usize, why: String| WalError::Corrupt {
        path: path.clone(),
        offset: offset as u64,
        why,
    };
    let header = SNAPSHOT_MAGIC.len() + 8;
    if bytes.len() < header || &bytes[..SNAPSHOT_MAGIC.len()] != SNAPSHOT_MAGIC {
        return Err(corrupt(0, "not a snapshot file".into()));
    }
    let mut next = [0u8; 8];
    next.copy_from_slice(&bytes[SNAPSHOT_MAGIC.len()..header]);
    let mut offset = header;
    let mut seen = 0u64;
    loop {
        let (payload, length) =
            record::read_record(&bytes[offset..]).map_err(|e| corrupt(offset, e.to_string()))?;
        match record::kind_of(payload).map_err(|e| corrupt(offset, e.to_string()))? {
            Kind::Batch => {
                let batch =
                    record::decode_batch(payload).map_err(|e| corrupt(offset, e.to_string()))?;
                seen += state
                    .apply(&batch, tenants)
                    .map_err(|why| corrupt(offset, why.to_string()))?
                    as u64;
            }
            Kind::End(count) if count == seen && offset + length == bytes.len() => break,
            Kind::End(_) => {
                return Err(corrupt(
                    offset,
                    "end record does not match the contents".into(),
                ));
            }
        }
        offset += length;
    }
    Ok(u64::from_le_bytes(next))
}

/// Applies one segment's records to `state`. Returns the number of valid
/// bytes (where a torn tail, if any, starts).
pub fn read_segment(
    path: &Path,
    newest: bool,
    tail: Tail,
    state: &mut Recovered,
    tenants: &Tenants,
) -> Result<u64, WalError> {
    let bytes = std::fs::read(path).map_err(|e| WalError::io(path, e))?;
    let mut offset = 0;
    while offset < bytes.len() {
        let corrupt = |why: String| WalError::Corrupt {
            path: path.to_path_buf(),
            offset: offset as u64,
            why,
        };
        match record::read_record(&bytes[offset..]) {
            Ok((payload, length)) => {
                // A record with a valid checksum that does not decode was
                // written wrong, not torn: never skipped.
                let batch = record::decode_batch(payload).map_err(|e| corrupt(e.to_string()))?;
                state
                    .apply(&batch, tenants)
                    .map_err(|why| corrupt(why.to_string()))?;
                offset += length;
            }
            Err(problem) => {
                let torn = newest && !record::any_valid_record(&bytes[offset + 1..]);
                if !torn {
                    return Err(corrupt(problem.to_string()));
                }
                if tail == Tail::Truncate {
                    cut_torn_tail(path, offset as u64, bytes.len() as u64)?;
                }
                break;
            }
        }
    }
    Ok(offset as u64)
}

fn cut_torn_tail(path: &Path, at: u64, length: u64) -> Result<(), WalError> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| WalError::io(path, e))?;
    file.set_len(at).map_err(|e| WalError::io(path, e))?;
    file.sync_all().map_err(|e| WalError::io(path, e))?;
    crate::log!(
        "recovery: dropped a torn record at the end of {} ({} bytes from offset {at})",
        path.display(),
        length - at
    );
    Ok(())
}

/// Everything in `dir`: the snapshot, then every segment from the first it
/// does not cover. Older segments left by an interrupted compaction are
/// skipped (the snapshot covers them).
pub fn read_all(dir: &Path, tail: Tail, tenants: &Tenants) -> Result<(Recovered, u64), WalError> {
    let mut state = Recovered::default();
    let first = read_snapshot(dir, &mut state, tenants)?;
    let segments = segments(dir)?;
    let live: Vec<&(u64, PathBuf)> = segments
        .iter()
        .filter(|(number, _)| *number >= first)
        .collect();
    for (position, (_, path)) in live.iter().enumerate() {
        read_segment(path, position + 1 == live.len(), tail, &mut state, tenants)?;
    }
    let next_segment = segments
        .last()
        .map_or(first, |(number, _)| number + 1)
        .max(first);
    Ok((state, next_segment))
}
