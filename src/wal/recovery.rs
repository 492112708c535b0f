//! Reading a data dir back: the snapshot, then the log segments after it.
//!
//! A bad record at the end of the newest segment, with no valid record after
//! it, is a torn write: it is dropped (and, at startup, cut off the file).
//! Anything else that is wrong — a bad record followed by valid ones, damage
//! in an older segment or in the snapshot — stops recovery with the file and
//! offset, so wrong counts are never served quietly.

use super::record::{self, DiskEntry, Kind};
use super::{SNAPSHOT_FILE, SNAPSHOT_MAGIC, WalError};
use crate::store::{Entry, IdHasher};
use crate::tenants::Tenants;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The recovered map: per ID the latest version and its tenant (by index
/// into `names`), last-writer-wins like a node's store.
#[derive(Default)]
pub struct State {
    items: HashMap<i64, (u64, u32), BuildHasherDefault<IdHasher>>,
    names: Vec<Arc<str>>,
    index: HashMap<Arc<str>, u32>,
    pub max_version: u64,
}

impl State {
    fn apply(&mut self, entry: DiskEntry<'_>) {
        self.max_version = self.max_version.max(entry.version);
        let name = match self.index.get(entry.tenant) {
            Some(&name) => name,
            None => {
                let name: Arc<str> = Arc::from(entry.tenant);
                self.names.push(name.clone());
                let index = (self.names.len() - 1) as u32;
                self.index.insert(name, index);
                index
            }
        };
        let slot = self.items.entry(entry.id).or_insert((0, name));
        if entry.version >= slot.0 {
            *slot = (entry.version, name);
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The items as entries whose tenant is an index into [`State::name`].
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.items.iter().map(|(&id, &(version, tenant))| Entry {
            id,
            version,
            tenant,
        })
    }

    pub fn name(&self, index: u32) -> Arc<str> {
        self.names[index as usize].clone()
    }

    /// The items as entries for the nodes, interning the tenant names.
    pub fn into_entries(self, tenants: &Tenants) -> Vec<Entry> {
        let ids: Vec<u32> = self.names.iter().map(|name| tenants.intern(name)).collect();
        self.items
            .into_iter()
            .map(|(id, (version, name))| Entry {
                id,
                version,
                tenant: ids[name as usize],
            })
            .collect()
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
pub fn read_snapshot(dir: &Path, state: &mut State) -> Result<u64, WalError> {
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
                record::decode_batch(payload, |entry| {
                    seen += 1;
                    state.apply(entry);
                })
                .map_err(|e| corrupt(offset, e.to_string()))?;
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
    state: &mut State,
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
                record::decode_batch(payload, |entry| state.apply(entry))
                    .map_err(|e| corrupt(e.to_string()))?;
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
    eprintln!(
        "recovery: dropped a torn record at the end of {} ({} bytes from offset {at})",
        path.display(),
        length - at
    );
    Ok(())
}

/// Everything in `dir`: the snapshot, then every segment from the first it
/// does not cover. Older segments left by an interrupted compaction are
/// skipped (the snapshot covers them).
pub fn read_all(dir: &Path, tail: Tail) -> Result<(State, u64), WalError> {
    let mut state = State::default();
    let first = read_snapshot(dir, &mut state)?;
    let segments = segments(dir)?;
    let live: Vec<&(u64, PathBuf)> = segments
        .iter()
        .filter(|(number, _)| *number >= first)
        .collect();
    for (position, (_, path)) in live.iter().enumerate() {
        read_segment(path, position + 1 == live.len(), tail, &mut state)?;
    }
    let next_segment = segments
        .last()
        .map_or(first, |(number, _)| number + 1)
        .max(first);
    Ok((state, next_segment))
}
