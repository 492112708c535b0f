//! Durable mode (`--data-dir`): a write-ahead log with group commit, and
//! snapshots that compact it.
//!
//! ```text
//!   DIR/LOCK                    held (flock) while a process uses DIR
//!   DIR/snapshot                every item up to segment N (written to
//!                               DIR/snapshot.tmp, synced, renamed)
//!   DIR/wal-<N>.log ...         records appended since, one segment per rotation
//! ```
//!
//! ```text
//!   mod.rs       Wal: open (lock, recover, start threads), append, load; errors, stats
//!   record.rs    format 2: file headers, stuffed records, payloads
//!   legacy.rs    format 1, read only (data dirs of earlier versions)
//!   cobs.rs      the byte stuffing that keeps 0x00 out of records
//!   crc.rs       CRC-32, seeded and over ranges
//!   recovery.rs  reading a dir back; the torn-tail rule
//!   writer.rs    the writer thread: group commit, and what a failed write does
//!   compactor.rs the compactor thread: snapshot + closed segments -> snapshot
//! ```
//!
//! A POST's batch is encoded as one record and handed to the writer thread
//! while the nodes store it; the POST answers 200 only after both. The writer
//! takes every record waiting, writes them with one `write`, and (with
//! `--fsync always`, the default) one `fdatasync`: concurrent POSTs share it.
//! When the log outgrows the snapshot, the compactor thread rotates the log,
//! folds the snapshot and the closed segments into a new snapshot, and
//! deletes those segments, so disk use follows the live data.
//!
//! A write or sync that fails (a full disk) fails the POSTs of that group
//! only: the writer cuts the segment back to its last good length and goes
//! on, and [`Wal::failure`] says the log cannot be written (for `/health`
//! and `/metrics`) until a write succeeds again.

mod cobs;
mod compactor;
pub mod crc;
pub mod legacy;
pub mod record;
pub mod recovery;
#[cfg(test)]
mod testing;
mod writer;

use crate::tenants::Tenants;
use compactor::Compactor;
use crossbeam_channel::{Receiver, Sender, bounded};
use parking_lot::Mutex;
use record::Damage;
pub use recovery::Recovered;
use recovery::Tail;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use writer::{Segment, Writer, WriterMessage};

pub const LOCK_FILE: &str = "LOCK";
pub const SNAPSHOT_FILE: &str = "snapshot";
/// Where compaction writes the next snapshot before renaming it.
pub const SNAPSHOT_TEMP_FILE: &str = "snapshot.tmp";
/// Records waiting for the writer before POSTs wait to hand theirs over.
pub const WRITER_QUEUE: usize = 1024;
/// While the log cannot be written and no POST comes, the writer tries a
/// write this often, so `/health` turns OK again by itself once space is
/// back (a load balancer that stopped sending POSTs on a KO would
/// otherwise keep it KO forever).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// When the writer syncs the log to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before any POST of the group is answered: survives power loss.
    Always,
    /// Never explicitly: an answered POST survives a crash of the process
    /// (the data is in the OS), not a crash of the machine.
    Never,
}

/// Why the log could not be used.
#[derive(Debug)]
pub enum WalError {
    Io {
        path: PathBuf,
        error: io::Error,
    },
    Locked {
        path: PathBuf,
    },
    Corrupt {
        path: PathBuf,
        offset: u64,
        why: Damage,
        /// Where a valid record starts after the bad one, if one does.
        valid_after: Option<u64>,
    },
    /// The writer has stopped (shutdown).
    Closed,
}

impl WalError {
    pub fn io(path: &Path, error: io::Error) -> WalError {
        WalError::Io {
            path: path.to_path_buf(),
            error,
        }
    }
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            WalError::Locked { path } => write!(
                f,
                "{} is in use by another process (lock held on {})",
                path.parent().unwrap_or(path).display(),
                path.display()
            ),
            WalError::Corrupt {
                path,
                offset,
                why,
                valid_after,
            } => {
                write!(f, "{} is damaged at offset {offset}: {why}", path.display())?;
                if let Some(valid) = valid_after {
                    write!(f, ", and a valid record follows at offset {valid}")?;
                }
                f.write_str("; refusing to start rather than serve wrong counts")
            }
            WalError::Closed => f.write_str("the log writer has stopped"),
        }
    }
}

impl std::error::Error for WalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WalError::Io { error, .. } => Some(error),
            WalError::Corrupt { why, .. } => Some(why),
            WalError::Locked { .. } | WalError::Closed => None,
        }
    }
}

/// The log cannot be written: since when, and the last error.
#[derive(Debug, Clone)]
pub struct LogFailure {
    pub dir: PathBuf,
    pub since: Instant,
    pub error: String,
}

impl fmt::Display for LogFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot write the log in {} for {} s: {} (writes are refused until it can)",
            self.dir.display(),
            self.since.elapsed().as_secs(),
            self.error
        )
    }
}

/// Counters and state for `/metrics` and `/health`.
#[derive(Default)]
pub struct WalStats {
    pub fsyncs: AtomicU64,
    pub fsync_nanos: AtomicU64,
    pub fsync_max_nanos: AtomicU64,
    /// Bytes in log segments the snapshot does not cover.
    pub log_bytes: AtomicU64,
    pub snapshot_bytes: AtomicU64,
    pub compactions: AtomicU64,
    /// Groups of POSTs whose write or sync failed.
    pub write_errors: AtomicU64,
    pub compaction_errors: AtomicU64,
    failure: Mutex<Option<LogFailure>>,
}

impl WalStats {
    fn record_fsync(&self, took: Duration) {
        let nanos = took.as_nanos() as u64;
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.fsync_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.fsync_max_nanos.fetch_max(nanos, Ordering::Relaxed);
    }

    /// Whether the last write of the log (a group, or a probe) succeeded.
    pub fn is_healthy(&self) -> bool {
        self.failure.lock().is_none()
    }

    pub fn failure(&self) -> Option<LogFailure> {
        self.failure.lock().clone()
    }

    /// Notes a failed write; true if the log was healthy until now.
    fn mark_failing(&self, dir: &Path, error: &io::Error) -> bool {
        let mut failure = self.failure.lock();
        let started = failure.is_none();
        let since = failure.as_ref().map_or_else(Instant::now, |f| f.since);
        *failure = Some(LogFailure {
            dir: dir.to_path_buf(),
            since,
            error: error.to_string(),
        });
        started
    }

    /// Notes a successful write; how long the log was failing, if it was.
    fn mark_healthy(&self) -> Option<Duration> {
        self.failure.lock().take().map(|f| f.since.elapsed())
    }
}

pub struct Wal {
    dir: PathBuf,
    writer_queue: Sender<WriterMessage>,
    /// Held while files are read or replaced as a whole (compaction, loads).
    files: Arc<Mutex<()>>,
    stats: Arc<WalStats>,
    writer: Option<JoinHandle<()>>,
    compactor: Option<JoinHandle<()>>,
    _lock: File,
}

/// A record handed to the writer; [`Pending::wait`] returns once it is on disk.
pub struct Pending(Receiver<Result<(), WalError>>);

impl Pending {
    pub fn wait(self) -> Result<(), WalError> {
        self.0.recv().map_err(|_| WalError::Closed)?
    }
}

impl Wal {
    /// Locks `dir` (creating it), recovers what it holds, and starts the
    /// writer and compactor threads on a fresh segment.
    pub fn open(
        dir: &Path,
        policy: FsyncPolicy,
        tenants: &Tenants,
    ) -> Result<(Wal, Recovered), WalError> {
        fs::create_dir_all(dir).map_err(|e| WalError::io(dir, e))?;
        let lock = lock(dir)?;
        remove_stale_snapshot(dir)?;
        let started = Instant::now();
        let (recovered, next_segment) = recovery::read_all(dir, Tail::Truncate, tenants)?;
        crate::log!(
            "recovery: {} items from {} in {} ms ({} bytes checked)",
            recovered.store.len(),
            dir.display(),
            started.elapsed().as_millis(),
            recovered.checked_bytes
        );
        let stats = Arc::new(WalStats::default());
        stats
            .snapshot_bytes
            .store(file_len(&dir.join(SNAPSHOT_FILE)), Ordering::Relaxed);
        let log_bytes: u64 = recovery::segments(dir)?
            .iter()
            .map(|(_, path)| file_len(path))
            .sum();
        stats.log_bytes.store(log_bytes, Ordering::Relaxed);
        let segment = create_segment(dir, next_segment)?;
        let wal = Wal::start(dir, segment, policy, stats, lock)?;
        Ok((wal, recovered))
    }

    fn start(
        dir: &Path,
        segment: Segment,
        policy: FsyncPolicy,
        stats: Arc<WalStats>,
        lock: File,
    ) -> Result<Wal, WalError> {
        let (writer_queue, writer_inbox) = bounded(WRITER_QUEUE);
        let (compact_trigger, compact_requests) = bounded(1);
        let files = Arc::new(Mutex::new(()));
        let writer = Writer {
            dir: dir.to_path_buf(),
            segment,
            policy,
            stats: stats.clone(),
            compact_trigger,
            probe_every: PROBE_INTERVAL,
        };
        let writer = thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer.run(&writer_inbox))
            .map_err(|e| WalError::io(dir, e))?;
        let compactor = Compactor {
            dir: dir.to_path_buf(),
            files: files.clone(),
            stats: stats.clone(),
            writer_queue: writer_queue.clone(),
        };
        let compactor = thread::Builder::new()
            .name("wal-compact".into())
            .spawn(move || compactor.run(&compact_requests))
            .map_err(|e| WalError::io(dir, e))?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            writer_queue,
            files,
            stats,
            writer: Some(writer),
            compactor: Some(compactor),
            _lock: lock,
        })
    }

    /// Hands a record (from [`record::encode_batch`]) to the writer.
    pub fn append(&self, record: Vec<u8>) -> Result<Pending, WalError> {
        let (done, wait) = bounded(1);
        self.writer_queue
            .send(WriterMessage::Append(record, done))
            .map_err(|_| WalError::Closed)?;
        Ok(Pending(wait))
    }

    /// Everything on disk now, for a node that restarts with no live node to
    /// copy from. The newest segment may be mid-append: its tail is left alone.
    pub fn load(&self, tenants: &Tenants) -> Result<Recovered, WalError> {
        let _files = self.files.lock();
        let (recovered, _) = recovery::read_all(&self.dir, Tail::Leave, tenants)?;
        Ok(recovered)
    }

    pub fn stats(&self) -> &WalStats {
        &self.stats
    }

    /// Why the log cannot be written now, if it cannot.
    pub fn failure(&self) -> Option<LogFailure> {
        self.stats.failure()
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        // The writer syncs what it holds and stops; the compactor's trigger
        // goes with it, so the compactor stops next.
        let _ = self.writer_queue.send(WriterMessage::Stop);
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        if let Some(compactor) = self.compactor.take() {
            let _ = compactor.join();
        }
    }
}

fn lock(dir: &Path) -> Result<File, WalError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| WalError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(WalError::Locked { path }),
        Err(fs::TryLockError::Error(e)) => Err(WalError::io(&path, e)),
    }
}

/// A compaction that died with the process leaves its temporary file.
fn remove_stale_snapshot(dir: &Path) -> Result<(), WalError> {
    let temp = dir.join(SNAPSHOT_TEMP_FILE);
    match fs::remove_file(&temp) {
        Ok(()) => {
            crate::log!(
                "recovery: removed {} left by an unfinished compaction",
                temp.display()
            );
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(WalError::io(&temp, e)),
    }
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("wal-{number:016}.log"))
}

/// Creates segment `number` with its header, synced with its name. On
/// failure the file is removed: a segment after the one being written
/// would make that one's torn tail look like damage.
fn create_segment(dir: &Path, number: u64) -> Result<Segment, WalError> {
    let path = segment_path(dir, number);
    let header = record::segment_header(record::process_seed());
    let created = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        // A file of this number can only be left by a creation that failed.
        .and_then(|file| file.set_len(0).map(|()| file))
        .and_then(|mut file| file.write_all(&header).map(|()| file))
        .and_then(|file| file.sync_all().map(|()| file))
        .map_err(|e| WalError::io(&path, e))
        .and_then(|file| sync_dir(dir).map(|()| file));
    match created {
        Ok(file) => Ok(Segment::new(
            Box::new(file),
            number,
            path,
            header.len() as u64,
        )),
        Err(e) => {
            let _ = fs::remove_file(&path);
            let _ = sync_dir(dir);
            Err(e)
        }
    }
}

/// Makes a created, renamed or deleted file's name durable.
fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Entry;
    use crate::tenants::TenantId;
    use crate::version::Version;
    use testing::{TempDir, count};

    /// Logs `ids` in `tenant` at versions from `first`, and waits until on disk.
    fn log(wal: &Wal, tenant: &str, ids: std::ops::Range<i64>, first: u64) {
        let entries: Vec<Entry> = ids
            .enumerate()
            .map(|(i, id)| Entry {
                id,
                version: Version::new(first + i as u64),
                tenant: TenantId::new(0),
            })
            .collect();
        let mut bytes = Vec::new();
        record::encode_batch(&mut bytes, &entries, |_| Arc::from(tenant));
        wal.append(bytes).unwrap().wait().unwrap();
    }

    fn compactor(wal: &Wal) -> Compactor {
        Compactor {
            dir: wal.dir.clone(),
            files: wal.files.clone(),
            stats: wal.stats.clone(),
            writer_queue: wal.writer_queue.clone(),
        }
    }

    fn files(dir: &TempDir) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn counts(recovered: &Recovered, tenants: &Tenants) -> [u64; 3] {
        ["a", "b", "c"].map(|t| count(recovered, tenants, t))
    }

    #[test]
    fn compaction_folds_the_snapshot_and_closed_segments_into_one_snapshot() {
        let dir = TempDir::new("compact");
        let tenants = Tenants::new();
        let (wal, _) = Wal::open(dir.path(), FsyncPolicy::Always, &tenants).unwrap();
        log(&wal, "a", 0..100, 1);
        log(&wal, "b", 50..150, 101);
        let loaded = Tenants::new();
        let before = counts(&wal.load(&loaded).unwrap(), &loaded);
        assert_eq!(before, [50, 100, 0]);
        assert_eq!(compactor(&wal).compact().unwrap(), 150);
        assert_eq!(files(&dir), ["LOCK", "snapshot", &testing::segment_name(1)]);

        log(&wal, "c", 1000..1001, 201);
        assert_eq!(compactor(&wal).compact().unwrap(), 151);
        assert_eq!(files(&dir), ["LOCK", "snapshot", &testing::segment_name(2)]);
        assert_eq!(wal.stats().compactions.load(Ordering::Relaxed), 2);
        let loaded = Tenants::new();
        let after = counts(&wal.load(&loaded).unwrap(), &loaded);
        assert_eq!(after, [before[0], before[1], 1]);
        drop(wal);

        let reopened = Tenants::new();
        let (_wal, recovered) = Wal::open(dir.path(), FsyncPolicy::Always, &reopened).unwrap();
        assert_eq!(counts(&recovered, &reopened), [50, 100, 1]);
        assert_eq!(recovered.max_version, Version::new(201));
    }

    #[test]
    fn new_files_are_written_in_format_2() {
        let dir = TempDir::new("format");
        let tenants = Tenants::new();
        let (wal, _) = Wal::open(dir.path(), FsyncPolicy::Never, &tenants).unwrap();
        log(&wal, "a", 0..3, 1);
        compactor(&wal).compact().unwrap();
        let segment = fs::read(dir.path().join(testing::segment_name(1))).unwrap();
        assert!(segment.starts_with(record::SEGMENT_MAGIC));
        let snapshot = fs::read(dir.path().join(SNAPSHOT_FILE)).unwrap();
        assert!(snapshot.starts_with(record::SNAPSHOT_MAGIC));
    }

    #[test]
    fn an_old_format_dir_is_upgraded_without_loss() {
        let dir = TempDir::new("upgrade");
        let old = testing::legacy_snapshot(1, &[(1, 1, "a"), (2, 2, "a")]);
        fs::write(dir.path().join(SNAPSHOT_FILE), old).unwrap();
        let segment = testing::legacy_frame(&testing::payload(&[(3, 3, "b")]));
        fs::write(dir.path().join(testing::segment_name(1)), segment).unwrap();
        let tenants = Tenants::new();
        let (wal, recovered) = Wal::open(dir.path(), FsyncPolicy::Always, &tenants).unwrap();
        assert_eq!(counts(&recovered, &tenants), [2, 1, 0]);
        log(&wal, "c", 4..5, 4);
        compactor(&wal).compact().unwrap();
        drop(wal);
        let reopened = Tenants::new();
        let (_wal, recovered) = Wal::open(dir.path(), FsyncPolicy::Always, &reopened).unwrap();
        assert_eq!(counts(&recovered, &reopened), [2, 1, 1]);
    }

    #[test]
    fn a_temporary_snapshot_left_by_a_crash_is_removed_at_startup() {
        let dir = TempDir::new("stale");
        fs::write(dir.path().join(SNAPSHOT_TEMP_FILE), b"half a snapshot").unwrap();
        let (_wal, _) = Wal::open(dir.path(), FsyncPolicy::Always, &Tenants::new()).unwrap();
        assert!(!dir.path().join(SNAPSHOT_TEMP_FILE).exists());
    }

    #[test]
    fn errors_name_their_cause() {
        use std::error::Error;
        let damaged = WalError::Corrupt {
            path: PathBuf::from("d/wal-1.log"),
            offset: 12,
            why: Damage::ChecksumMismatch,
            valid_after: Some(40),
        };
        assert_eq!(
            damaged.to_string(),
            "d/wal-1.log is damaged at offset 12: checksum mismatch, and a valid record \
             follows at offset 40; refusing to start rather than serve wrong counts"
        );
        assert!(damaged.source().is_some());
        let io = WalError::io(Path::new("d"), io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(io.source().is_some());
    }
}
