//! Reading a data dir back: the snapshot, then the log segments after it,
//! in format 2 (see `record`) or format 1 (see `legacy`).
//!
//! A bad record at the end of the newest segment, with no valid record after
//! it, is a torn write: it is dropped (and, at startup, cut off the file).
//! That covers a record cut short, zeros where records should be (a crash
//! after the file grew but before its blocks were written), and a header cut
//! short. Anything else that is wrong — a bad record followed by a valid
//! one, damage in an older segment or in the snapshot, a record with a valid
//! checksum that does not decode — stops recovery with the file and offset,
//! so wrong counts are never served quietly.
//!
//! Every reader does work linear in the bytes: in format 2 records are
//! found at record ends only; in format 1 the search for a valid record
//! after a bad one is done in two passes (`legacy::first_valid_record`).

use super::legacy;
use super::record::{self, Batch, Damage, Kind, SegmentFormat, SnapshotFormat};
use super::{SNAPSHOT_FILE, WalError, file_len};
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
    /// Bytes run through a checksum: the work reading took, which stays
    /// linear in the size of the files whatever they hold.
    pub checked_bytes: u64,
}

impl Default for Recovered {
    fn default() -> Self {
        Recovered {
            store: Store::new(),
            max_version: Version::ZERO,
            checked_bytes: 0,
        }
    }
}

impl Recovered {
    /// Applies one batch record; its tenant names are interned once each.
    fn apply(&mut self, batch: &Batch<'_>, tenants: &Tenants) -> usize {
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
        entries.len()
    }

    /// Decodes and applies a batch payload; returns its number of entries.
    fn apply_payload(&mut self, payload: &[u8], tenants: &Tenants) -> Result<usize, Damage> {
        let batch = record::decode_batch(payload)?;
        Ok(self.apply(&batch, tenants))
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

/// The first bad record of a file, as offsets into the bytes read.
#[derive(Debug, Clone, Copy)]
struct Bad {
    offset: usize,
    why: Damage,
    /// Where a valid record starts after it, if one does.
    valid_after: Option<usize>,
}

impl Bad {
    fn shifted(self, by: usize) -> Bad {
        Bad {
            offset: self.offset + by,
            valid_after: self.valid_after.map(|at| at + by),
            ..self
        }
    }

    fn into_error(self, path: &Path) -> WalError {
        WalError::Corrupt {
            path: path.to_path_buf(),
            offset: self.offset as u64,
            why: self.why,
            valid_after: self.valid_after.map(|at| at as u64),
        }
    }
}

/// A bad record (or header) at `offset`, with no valid record known after
/// it. Whether it may be a torn tail is the caller's to say: an error
/// returned from a reader is damage wherever it is (e.g. a valid checksum
/// over contents that do not decode: written wrong, not torn).
fn bad_at(offset: usize, why: Damage) -> Bad {
    Bad {
        offset,
        why,
        valid_after: None,
    }
}

/// The segment files of `dir`, oldest first, with their numbers.
pub fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let listing = std::fs::read_dir(dir).map_err(|e| WalError::io(dir, e))?;
    let mut found = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| WalError::io(dir, e))?;
        let name = entry.file_name();
        let Some(digits) = name
            .to_str()
            .and_then(|n| n.strip_prefix("wal-"))
            .and_then(|n| n.strip_suffix(".log"))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        match digits.parse::<u64>() {
            Ok(number) if number <= record::MAX_SEGMENT_NUMBER => {
                found.push((number, entry.path()))
            }
            // One more segment could not be numbered after it.
            _ => return Err(bad_at(0, Damage::SegmentNumberTooHigh).into_error(&entry.path())),
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
    let format = record::snapshot_format(&bytes).map_err(|why| bad_at(0, why).into_error(&path))?;
    let (read, next_segment) = match format {
        SnapshotFormat::One { next_segment } => {
            (read_legacy_snapshot(&bytes, state, tenants), next_segment)
        }
        SnapshotFormat::Two { seed, next_segment } => {
            let start = record::SNAPSHOT_HEADER_BYTES;
            let read = read_stuffed_snapshot(&bytes[start..], seed, state, tenants)
                .map_err(|bad| bad.shifted(start));
            (read, next_segment)
        }
    };
    read.map_err(|bad| bad.into_error(&path))?;
    Ok(next_segment)
}

/// Counts a snapshot's items and checks its end record against them.
#[derive(Default)]
struct SnapshotCount {
    seen: u64,
    closed: bool,
}

impl SnapshotCount {
    /// Applies one snapshot record; `last` says no byte follows it.
    fn take(
        &mut self,
        payload: &[u8],
        last: bool,
        state: &mut Recovered,
        tenants: &Tenants,
    ) -> Result<(), Damage> {
        match record::kind_of(payload)? {
            Kind::Batch => self.seen += state.apply_payload(payload, tenants)? as u64,
            Kind::End(count) if count == self.seen && last => self.closed = true,
            Kind::End(_) => return Err(Damage::EndCountMismatch),
        }
        Ok(())
    }
}

fn read_stuffed_snapshot(
    region: &[u8],
    seed: u64,
    state: &mut Recovered,
    tenants: &Tenants,
) -> Result<(), Bad> {
    let mut count = SnapshotCount::default();
    let mut scratch = Vec::new();
    for chunk in record::chunks(region) {
        state.checked_bytes += chunk.bytes.len() as u64;
        let last = chunk.offset + chunk.bytes.len() + 1 == region.len();
        record::open(seed, &chunk, &mut scratch)
            .and_then(|payload| count.take(payload, last, state, tenants))
            .map_err(|why| bad_at(chunk.offset, why))?;
    }
    match count.closed {
        true => Ok(()),
        false => Err(bad_at(region.len(), Damage::NoEndRecord)),
    }
}

fn read_legacy_snapshot(bytes: &[u8], state: &mut Recovered, tenants: &Tenants) -> Result<(), Bad> {
    let mut count = SnapshotCount::default();
    let mut offset = legacy::SNAPSHOT_MAGIC.len() + 8;
    while !count.closed {
        let (payload, length) =
            legacy::read_record(&bytes[offset..]).map_err(|p| bad_at(offset, p.into()))?;
        state.checked_bytes += payload.len() as u64;
        let last = offset + length == bytes.len();
        count
            .take(payload, last, state, tenants)
            .map_err(|why| bad_at(offset, why))?;
        offset += length;
    }
    Ok(())
}

/// What reading a segment's records found.
struct Scan {
    /// Where the valid records end.
    valid_len: usize,
    bad: Option<Bad>,
}

/// Applies one segment's records to `state`. `newest` says a torn tail is
/// allowed (see the module doc). Returns the number of valid bytes.
pub fn read_segment(
    path: &Path,
    newest: bool,
    tail: Tail,
    state: &mut Recovered,
    tenants: &Tenants,
) -> Result<u64, WalError> {
    let bytes = std::fs::read(path).map_err(|e| WalError::io(path, e))?;
    let format = record::segment_format(&bytes).map_err(|why| bad_at(0, why).into_error(path))?;
    let scan = match format {
        SegmentFormat::Two { seed } => {
            let start = record::SEGMENT_HEADER_BYTES;
            read_stuffed(&bytes[start..], seed, state, tenants)
                .map(|scan| Scan {
                    valid_len: scan.valid_len + start,
                    bad: scan.bad.map(|bad| bad.shifted(start)),
                })
                .map_err(|bad| bad.shifted(start))
        }
        SegmentFormat::One => read_legacy(&bytes, state, tenants),
        SegmentFormat::TornHeader => Ok(Scan {
            valid_len: 0,
            bad: Some(bad_at(0, Damage::CutShort)),
        }),
    };
    let scan = scan.map_err(|bad| bad.into_error(path))?;
    match scan.bad {
        None => Ok(scan.valid_len as u64),
        Some(bad) if newest && bad.valid_after.is_none() => {
            if tail == Tail::Truncate {
                cut_torn_tail(path, bad, bytes.len())?;
            }
            Ok(scan.valid_len as u64)
        }
        Some(bad) => Err(bad.into_error(path)),
    }
}

/// Reads format-2 records. After the first bad record it only checks
/// whether a valid one follows; every byte is unstuffed and checksummed
/// at most once.
fn read_stuffed(
    region: &[u8],
    seed: u64,
    state: &mut Recovered,
    tenants: &Tenants,
) -> Result<Scan, Bad> {
    let mut scratch = Vec::new();
    let mut bad: Option<Bad> = None;
    for chunk in record::chunks(region) {
        state.checked_bytes += chunk.bytes.len() as u64;
        match (record::open(seed, &chunk, &mut scratch), bad.as_mut()) {
            (Ok(payload), None) => {
                state
                    .apply_payload(payload, tenants)
                    .map_err(|why| bad_at(chunk.offset, why))?;
            }
            (Ok(_), Some(bad)) => {
                bad.valid_after = Some(chunk.offset);
                break;
            }
            (Err(why), None) => {
                bad = Some(Bad {
                    offset: chunk.offset,
                    why,
                    valid_after: None,
                })
            }
            (Err(_), Some(_)) => {}
        }
    }
    Ok(Scan {
        valid_len: bad.map_or(region.len(), |bad| bad.offset),
        bad,
    })
}

/// Reads format-1 records, and after a bad one looks for a valid one.
fn read_legacy(bytes: &[u8], state: &mut Recovered, tenants: &Tenants) -> Result<Scan, Bad> {
    let mut offset = 0;
    while offset < bytes.len() {
        match legacy::read_record(&bytes[offset..]) {
            Ok((payload, length)) => {
                state.checked_bytes += payload.len() as u64;
                state
                    .apply_payload(payload, tenants)
                    .map_err(|why| bad_at(offset, why))?;
                offset += length;
            }
            Err(problem) => {
                let rest = &bytes[offset + 1..];
                // Two checksum passes over the rest (see first_valid_record).
                state.checked_bytes += 2 * rest.len() as u64;
                let valid_after = legacy::first_valid_record(rest).map(|at| offset + 1 + at);
                return Ok(Scan {
                    valid_len: offset,
                    bad: Some(Bad {
                        offset,
                        why: problem.into(),
                        valid_after,
                    }),
                });
            }
        }
    }
    Ok(Scan {
        valid_len: offset,
        bad: None,
    })
}

fn cut_torn_tail(path: &Path, bad: Bad, length: usize) -> Result<(), WalError> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| WalError::io(path, e))?;
    file.set_len(bad.offset as u64)
        .map_err(|e| WalError::io(path, e))?;
    file.sync_all().map_err(|e| WalError::io(path, e))?;
    crate::log!(
        "recovery: dropped a torn record at the end of {} ({} bytes from offset {}: {})",
        path.display(),
        length - bad.offset,
        bad.offset,
        bad.why
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
    let newest = newest_with_records(&live);
    for (position, (_, path)) in live.iter().enumerate() {
        read_segment(path, position >= newest, tail, &mut state, tenants)?;
    }
    let next_segment = segments
        .last()
        .map_or(first, |(number, _)| number + 1)
        .max(first);
    Ok((state, next_segment))
}

/// The position of the newest segment that can hold a record. A rotation
/// that failed may leave segments after it that hold a header at most:
/// they do not make it an older segment, whose torn tail would be damage.
fn newest_with_records(live: &[&(u64, PathBuf)]) -> usize {
    live.iter()
        .rposition(|(_, path)| file_len(path) > record::SEGMENT_HEADER_BYTES as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::testing::{
        self, SEED, TempDir, count, legacy_frame, payload, record, segment, segment_name,
    };

    fn read(dir: &TempDir, tail: Tail) -> Result<(Recovered, Tenants), WalError> {
        let tenants = Tenants::new();
        let (recovered, _) = read_all(dir.path(), tail, &tenants)?;
        Ok((recovered, tenants))
    }

    fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.file(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Three records of one item each in tenant "t".
    fn three() -> Vec<Vec<u8>> {
        (1..=3)
            .map(|id| record(SEED, &[(id, id as u64, "t")]))
            .collect()
    }

    fn corrupt_at(error: WalError) -> (PathBuf, u64, Damage, Option<u64>) {
        match error {
            WalError::Corrupt {
                path,
                offset,
                why,
                valid_after,
            } => (path, offset, why, valid_after),
            other => panic!("not damage: {other}"),
        }
    }

    #[test]
    fn torn_tails_are_cut_off_and_everything_before_kept() {
        let records = three();
        let good = segment(&records);
        let torn_record = &record(SEED, &[(4, 4, "t")])[..9];
        let zeros = [0u8; 4096];
        let tails: [(&str, Vec<u8>); 4] = [
            ("a record cut short", torn_record.to_vec()),
            ("zeros from a block the crash did not write", zeros.to_vec()),
            (
                "a cut record, then zeros",
                [torn_record, &zeros[..]].concat(),
            ),
            ("a probe the crash left", vec![0xFF; 4096]),
        ];
        for (what, tail) in tails {
            let dir = TempDir::new("torn");
            let path = write(&dir, &segment_name(0), &[&good[..], &tail].concat());
            let (recovered, tenants) = read(&dir, Tail::Truncate).unwrap();
            assert_eq!(count(&recovered, &tenants, "t"), 3, "{what}");
            assert_eq!(
                std::fs::read(&path).unwrap(),
                good,
                "{what}: cut at the last good record"
            );
        }
    }

    #[test]
    fn a_torn_tail_is_left_alone_while_the_writer_may_append() {
        let dir = TempDir::new("leave");
        let bytes = [segment(&three()), vec![0xAA; 10]].concat();
        let path = write(&dir, &segment_name(0), &bytes);
        let (recovered, tenants) = read(&dir, Tail::Leave).unwrap();
        assert_eq!(count(&recovered, &tenants, "t"), 3);
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn a_bad_record_followed_by_a_valid_one_is_damage() {
        let records = three();
        let mut bytes = segment(&records);
        let second = record::SEGMENT_HEADER_BYTES + records[0].len();
        bytes[second + 2] ^= 0x10;
        let dir = TempDir::new("middle");
        let path = write(&dir, &segment_name(0), &bytes);
        let (at, offset, why, valid_after) = corrupt_at(read(&dir, Tail::Truncate).err().unwrap());
        assert_eq!((at, offset), (path, second as u64));
        assert_eq!(why, Damage::ChecksumMismatch);
        assert_eq!(valid_after, Some((second + records[1].len()) as u64));
        let message = corrupt_at_message(&dir);
        assert!(message.contains("refusing to start"), "{message}");
    }

    fn corrupt_at_message(dir: &TempDir) -> String {
        read(dir, Tail::Truncate).err().unwrap().to_string()
    }

    #[test]
    fn a_torn_tail_in_an_older_segment_is_damage() {
        let dir = TempDir::new("older");
        let torn = [segment(&three()), vec![0xAA; 10]].concat();
        let older = write(&dir, &segment_name(0), &torn);
        write(&dir, &segment_name(1), &segment(&three()));
        let (path, offset, why, _) = corrupt_at(read(&dir, Tail::Truncate).err().unwrap());
        assert_eq!(
            (path, offset, why),
            (older, segment(&three()).len() as u64, Damage::CutShort)
        );
    }

    #[test]
    fn segments_holding_a_header_at_most_do_not_make_the_one_before_older() {
        // A rotation that failed after creating the next segment's file.
        let dir = TempDir::new("rotation");
        let good = segment(&three());
        let newest = write(&dir, &segment_name(0), &[&good[..], &[0xAA; 10]].concat());
        write(&dir, &segment_name(1), &record::segment_header(SEED)[..7]);
        let (recovered, tenants) = read(&dir, Tail::Truncate).unwrap();
        assert_eq!(count(&recovered, &tenants, "t"), 3);
        assert_eq!(std::fs::read(&newest).unwrap(), good);
        assert_eq!(
            std::fs::read(dir.file(&segment_name(1))).unwrap(),
            b"",
            "its torn header is cut too"
        );
    }

    #[test]
    fn a_damaged_header_or_snapshot_is_damage() {
        let dir = TempDir::new("header");
        let mut bytes = segment(&three());
        bytes[10] ^= 1;
        write(&dir, &segment_name(0), &bytes);
        let (_, offset, why, _) = corrupt_at(read(&dir, Tail::Truncate).err().unwrap());
        assert_eq!((offset, why), (0, Damage::BadHeader));

        let dir = TempDir::new("snapshot");
        let mut snapshot = testing::snapshot(0, &[(1, 1, "s"), (2, 2, "s")]);
        let last = snapshot.len() - 3;
        snapshot[last] ^= 0x10;
        let path = write(&dir, SNAPSHOT_FILE, &snapshot);
        let (at, _, _, _) = corrupt_at(read(&dir, Tail::Truncate).err().unwrap());
        assert_eq!(at, path, "no torn tail in a snapshot");
    }

    #[test]
    fn client_bytes_in_a_torn_record_do_not_change_the_verdict() {
        // Tenant names that hold a whole valid format-1 record, and as much
        // of a format-2 one as a name can (under the file's own seed, which
        // no client knows).
        let legacy = testing::utf8_record(|id| legacy_frame(&payload(&[(id, 7, "evil")])));
        for name in [legacy, testing::closest_to_a_record(SEED)] {
            let evil = record(SEED, &[(5, 5, name.as_str()), (6, 6, "after")]);
            // Cut the evil record after the embedded one.
            let kept = evil.len() - 10;
            let dir = TempDir::new("embedded");
            let good = segment(&three());
            let path = write(&dir, &segment_name(0), &[&good[..], &evil[..kept]].concat());
            let (recovered, tenants) = read(&dir, Tail::Truncate).unwrap();
            assert_eq!(count(&recovered, &tenants, "t"), 3);
            assert_eq!(count(&recovered, &tenants, "evil"), 0);
            assert_eq!(std::fs::read(&path).unwrap(), good);
        }
    }

    #[test]
    fn fake_headers_in_a_torn_record_cost_no_more_than_its_bytes() {
        // Format-1 markers claiming lengths that all fit in the file.
        let mut fake = String::new();
        for claim in [1u32 << 30, 1 << 20, 1 << 16] {
            while fake.len() < 1000 {
                fake.push_str("DCWR");
                fake.push_str(std::str::from_utf8(&claim.to_le_bytes()).unwrap_or("\0\0\0\0"));
                fake.push_str("crc!");
            }
        }
        let items: Vec<(i64, u64, String)> = (0..2000)
            .map(|i| (i, i as u64 + 1, format!("{i:04}{}", &fake[..1000])))
            .collect();
        let items: Vec<(i64, u64, &str)> =
            items.iter().map(|(i, v, t)| (*i, *v, t.as_str())).collect();
        let evil = record(SEED, &items);
        let dir = TempDir::new("fake");
        let good = segment(&three());
        let bytes = [&good[..], &evil[..evil.len() - 1]].concat();
        write(&dir, &segment_name(0), &bytes);
        let (recovered, _) = read(&dir, Tail::Truncate).unwrap();
        assert!(
            recovered.checked_bytes <= bytes.len() as u64,
            "{} bytes checked for {} bytes",
            recovered.checked_bytes,
            bytes.len()
        );
    }

    #[test]
    fn old_format_dirs_are_recovered() {
        let dir = TempDir::new("legacy");
        write(
            &dir,
            SNAPSHOT_FILE,
            &testing::legacy_snapshot(1, &[(1, 1, "old"), (2, 2, "old")]),
        );
        // Segment 0 is covered by the snapshot (an interrupted compaction).
        write(
            &dir,
            &segment_name(0),
            &legacy_frame(&payload(&[(9, 9, "gone")])),
        );
        let records = [
            legacy_frame(&payload(&[(3, 3, "old")])),
            legacy_frame(&payload(&[(1, 4, "new")])),
        ];
        let good = records.concat();
        let newest = write(
            &dir,
            &segment_name(1),
            &[&good[..], &[0x44, 0x43, 0x57]].concat(),
        );
        let tenants = Tenants::new();
        let (recovered, next) = read_all(dir.path(), Tail::Truncate, &tenants).unwrap();
        assert_eq!(next, 2, "new segments are numbered after the old ones");
        assert_eq!(count(&recovered, &tenants, "old"), 2);
        assert_eq!(count(&recovered, &tenants, "new"), 1);
        assert_eq!(count(&recovered, &tenants, "gone"), 0);
        assert_eq!(recovered.max_version, Version::new(4));
        assert_eq!(
            std::fs::read(&newest).unwrap(),
            good,
            "the old torn tail is cut"
        );
    }

    #[test]
    fn old_format_damage_in_the_middle_is_refused() {
        let dir = TempDir::new("legacy-middle");
        let records: Vec<Vec<u8>> = (1..=3)
            .map(|i| legacy_frame(&payload(&[(i, i as u64, "t")])))
            .collect();
        let mut bytes = records.concat();
        bytes[records[0].len() + legacy::HEADER_BYTES + 1] ^= 1;
        write(&dir, &segment_name(0), &bytes);
        let (_, offset, why, valid_after) = corrupt_at(read(&dir, Tail::Truncate).err().unwrap());
        assert_eq!(
            (offset, why),
            (records[0].len() as u64, Damage::ChecksumMismatch)
        );
        assert_eq!(
            valid_after,
            Some((records[0].len() + records[1].len()) as u64)
        );
    }

    #[test]
    fn versions_from_2_63_up_are_refused_on_every_path() {
        let huge = [(1, u64::MAX, "x")];
        let fine = record(SEED, &[(2, 1, "x")]);
        let after_fine = (record::SEGMENT_HEADER_BYTES + fine.len()) as u64;
        let legacy_fine = legacy_frame(&payload(&[(2, 1, "x")]));
        let cases: [(&str, Vec<u8>, u64); 4] = [
            (
                SNAPSHOT_FILE,
                testing::snapshot(0, &huge),
                record::SNAPSHOT_HEADER_BYTES as u64,
            ),
            (SNAPSHOT_FILE, testing::legacy_snapshot(0, &huge), 16),
            (
                &segment_name(0),
                segment(&[fine, record(SEED, &huge)]),
                after_fine,
            ),
            (
                &segment_name(0),
                [legacy_fine.clone(), legacy_frame(&payload(&huge))].concat(),
                legacy_fine.len() as u64,
            ),
        ];
        for (name, bytes, offset) in cases {
            let dir = TempDir::new("version");
            let path = write(&dir, name, &bytes);
            let (at, found, why, _) = corrupt_at(read(&dir, Tail::Truncate).err().unwrap());
            assert_eq!(
                (at, found, why),
                (path, offset, Damage::VersionTooHigh),
                "{name}"
            );
        }
    }

    #[test]
    fn segment_numbers_that_cannot_be_followed_are_refused() {
        let dir = TempDir::new("numbers");
        let path = write(&dir, "wal-99999999999999999999.log", &segment(&[]));
        let (at, _, why, _) = corrupt_at(read(&dir, Tail::Truncate).err().unwrap());
        assert_eq!((at, why), (path, Damage::SegmentNumberTooHigh));
    }
}
