//! Durable mode (`--data-dir`): a write-ahead log with group commit, and
//! snapshots that compact it.
//!
//! ```text
//!   DIR/LOCK                    held (flock) while a process uses DIR
//!   DIR/snapshot                every item up to segment N (written to a temporary
//!                               file, synced, renamed)
//!   DIR/wal-<N>.log ...         records appended since, one segment per rotation
//! ```
//!
//! A POST's batch is encoded as one record and handed to the writer thread
//! while the nodes store it; the POST answers 200 only after both. The writer
//! takes every record waiting, writes them with one `write`, and (with
//! `--fsync always`, the default) one `fdatasync`: concurrent POSTs share it.
//! When the log outgrows the snapshot, the compactor thread rotates the log,
//! folds the snapshot and the closed segments into a new snapshot, and
//! deletes those segments, so disk use follows the live data.

pub mod record;
pub mod recovery;

use crate::store::Entry;
use crate::tenants::Tenants;
use crossbeam_channel::{Receiver, Sender, bounded};
use parking_lot::Mutex;
use recovery::{State, Tail};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Instant;

pub const LOCK_FILE: &str = "LOCK";
pub const SNAPSHOT_FILE: &str = "snapshot";
const SNAPSHOT_TEMP_FILE: &str = "snapshot.tmp";
pub const SNAPSHOT_MAGIC: &[u8] = b"DCSNAP01";
/// Records waiting for the writer before POSTs wait to hand theirs over.
pub const WRITER_QUEUE: usize = 1024;
/// Most bytes written (and synced) as one group.
pub const GROUP_MAX_BYTES: usize = 8 * 1024 * 1024;
/// The log is compacted once it holds more than this and more than the snapshot.
pub const COMPACT_MIN_BYTES: u64 = 4 * 1024 * 1024;
/// Items per record in a snapshot.
const SNAPSHOT_RECORD_ENTRIES: usize = 65_536;

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
        why: String,
    },
    /// The writer has stopped (shutdown, or an earlier write error).
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
            WalError::Corrupt { path, offset, why } => write!(
                f,
                "{} is damaged at offset {offset}: {why}; refusing to start rather than serve wrong counts",
                path.display()
            ),
            WalError::Closed => f.write_str("the log writer has stopped"),
        }
    }
}

impl std::error::Error for WalError {}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct WalStats {
    pub fsyncs: AtomicU64,
    pub fsync_nanos: AtomicU64,
    pub fsync_max_nanos: AtomicU64,
    /// Bytes in log segments the snapshot does not cover.
    pub log_bytes: AtomicU64,
    pub snapshot_bytes: AtomicU64,
    pub compactions: AtomicU64,
}

impl WalStats {
    fn record_fsync(&self, started: Instant) {
        let nanos = started.elapsed().as_nanos() as u64;
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.fsync_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.fsync_max_nanos.fetch_max(nanos, Ordering::Relaxed);
    }
}

enum WriterMessage {
    Append(Vec<u8>, Sender<io::Result<()>>),
    /// Close the current segment and start the next; answers its number.
    Rotate(Sender<io::Result<u64>>),
    Stop,
}

/// What a data dir held at startup.
pub struct Recovered {
    pub entries: Vec<Entry>,
    pub max_version: u64,
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
pub struct Pending(Receiver<io::Result<()>>);

impl Pending {
    pub fn wait(self) -> Result<(), WalError> {
        match self.0.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(WalError::Io {
                path: PathBuf::from("the log"),
                error,
            }),
            Err(_) => Err(WalError::Closed),
        }
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
        let started = Instant::now();
        let (state, next_segment) = recovery::read_all(dir, Tail::Truncate)?;
        let max_version = state.max_version;
        let items = state.len();
        let stats = Arc::new(WalStats::default());
        stats
            .snapshot_bytes
            .store(file_len(&dir.join(SNAPSHOT_FILE)), Ordering::Relaxed);
        let log_bytes: u64 = recovery::segments(dir)?
            .iter()
            .map(|(_, path)| file_len(path))
            .sum();
        stats.log_bytes.store(log_bytes, Ordering::Relaxed);
        let entries = state.into_entries(tenants);
        eprintln!(
            "recovery: {items} items from {} in {} ms",
            dir.display(),
            started.elapsed().as_millis()
        );
        let segment = create_segment(dir, next_segment)?;
        let (writer_queue, writer_inbox) = bounded(WRITER_QUEUE);
        let (compact_trigger, compact_requests) = bounded(1);
        let files = Arc::new(Mutex::new(()));
        let writer = Writer {
            dir: dir.to_path_buf(),
            file: segment,
            number: next_segment,
            policy,
            stats: stats.clone(),
            compact_trigger,
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
        let wal = Wal {
            dir: dir.to_path_buf(),
            writer_queue,
            files,
            stats,
            writer: Some(writer),
            compactor: Some(compactor),
            _lock: lock,
        };
        Ok((
            wal,
            Recovered {
                entries,
                max_version,
            },
        ))
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
    pub fn load(&self, tenants: &Tenants) -> Result<Vec<Entry>, WalError> {
        let _files = self.files.lock();
        let (state, _) = recovery::read_all(&self.dir, Tail::Leave)?;
        Ok(state.into_entries(tenants))
    }

    pub fn stats(&self) -> &WalStats {
        &self.stats
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

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("wal-{number:016}.log"))
}

fn create_segment(dir: &Path, number: u64) -> Result<File, WalError> {
    let path = segment_path(dir, number);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| WalError::io(&path, e))?;
    sync_dir(dir)?;
    Ok(file)
}

/// Makes a created, renamed or deleted file's name durable.
fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalError::io(dir, e))
}

/// The writer thread: group commit.
struct Writer {
    dir: PathBuf,
    file: File,
    number: u64,
    policy: FsyncPolicy,
    stats: Arc<WalStats>,
    compact_trigger: Sender<()>,
}

impl Writer {
    fn run(mut self, inbox: &Receiver<WriterMessage>) {
        let mut group = Vec::new();
        let mut waiting = Vec::new();
        let mut rotations = Vec::new();
        let mut stopping = false;
        while !stopping {
            let Ok(first) = inbox.recv() else { break };
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    WriterMessage::Append(bytes, done) => {
                        group.extend_from_slice(&bytes);
                        waiting.push(done);
                    }
                    WriterMessage::Rotate(done) => rotations.push(done),
                    WriterMessage::Stop => stopping = true,
                }
                if group.len() < GROUP_MAX_BYTES && !stopping {
                    next = inbox.try_recv().ok();
                }
            }
            let written = self.write_group(&group);
            for done in waiting.drain(..) {
                let _ = done.send(written.as_ref().map(|_| ()).map_err(copy_error));
            }
            if let Err(e) = written {
                // A partly written group must not be followed by more records
                // (recovery would rightly call that damage): stop taking writes.
                eprintln!("log write failed, refusing further writes: {e}");
                return;
            }
            group.clear();
            for done in rotations.drain(..) {
                let _ = done.send(self.rotate());
            }
            self.maybe_compact();
        }
    }

    fn write_group(&mut self, group: &[u8]) -> io::Result<()> {
        if group.is_empty() {
            return Ok(());
        }
        self.file.write_all(group)?;
        self.stats
            .log_bytes
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        if self.policy == FsyncPolicy::Always {
            let started = Instant::now();
            self.file.sync_data()?;
            self.stats.record_fsync(started);
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<u64> {
        self.file.sync_all()?;
        let next = self.number + 1;
        self.file = create_segment(&self.dir, next).map_err(|e| io::Error::other(e.to_string()))?;
        self.number = next;
        Ok(next)
    }

    fn maybe_compact(&self) {
        let log = self.stats.log_bytes.load(Ordering::Relaxed);
        let snapshot = self.stats.snapshot_bytes.load(Ordering::Relaxed);
        if log > COMPACT_MIN_BYTES.max(snapshot) {
            // Full means a compaction is already asked for.
            let _ = self.compact_trigger.try_send(());
        }
    }
}

fn copy_error(error: &io::Error) -> io::Error {
    io::Error::new(error.kind(), error.to_string())
}

/// The compactor thread: folds closed segments into a new snapshot.
struct Compactor {
    dir: PathBuf,
    files: Arc<Mutex<()>>,
    stats: Arc<WalStats>,
    writer_queue: Sender<WriterMessage>,
}

impl Compactor {
    fn run(self, requests: &Receiver<()>) {
        while requests.recv().is_ok() {
            let started = Instant::now();
            match self.compact() {
                Ok(items) => eprintln!(
                    "compaction: snapshot of {items} items ({} bytes) in {} ms",
                    self.stats.snapshot_bytes.load(Ordering::Relaxed),
                    started.elapsed().as_millis()
                ),
                Err(WalError::Closed) => return,
                Err(e) => eprintln!("compaction failed, the log keeps growing: {e}"),
            }
        }
    }

    fn compact(&self) -> Result<usize, WalError> {
        let _files = self.files.lock();
        let (done, wait) = bounded(1);
        self.writer_queue
            .send(WriterMessage::Rotate(done))
            .map_err(|_| WalError::Closed)?;
        let first_kept = wait
            .recv()
            .map_err(|_| WalError::Closed)?
            .map_err(|e| WalError::io(&self.dir, e))?;
        let mut state = State::default();
        let first = recovery::read_snapshot(&self.dir, &mut state)?;
        let closed: Vec<(u64, PathBuf)> = recovery::segments(&self.dir)?
            .into_iter()
            .filter(|(number, _)| *number < first_kept)
            .collect();
        for (_, path) in closed.iter().filter(|(number, _)| *number >= first) {
            recovery::read_segment(path, false, Tail::Leave, &mut state)?;
        }
        let snapshot_bytes = self.write_snapshot(&state, first_kept)?;
        let mut freed = 0;
        for (_, path) in &closed {
            freed += file_len(path);
            fs::remove_file(path).map_err(|e| WalError::io(path, e))?;
        }
        sync_dir(&self.dir)?;
        self.stats
            .snapshot_bytes
            .store(snapshot_bytes, Ordering::Relaxed);
        let _ = self
            .stats
            .log_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |log| {
                Some(log.saturating_sub(freed))
            });
        self.stats.compactions.fetch_add(1, Ordering::Relaxed);
        Ok(state.len())
    }

    /// Writes the snapshot record by record through a buffered file, so
    /// compaction holds the recovered map and one record, not a copy of
    /// the whole snapshot.
    fn write_snapshot(&self, state: &State, first_kept: u64) -> Result<u64, WalError> {
        let temp = self.dir.join(SNAPSHOT_TEMP_FILE);
        let io_error = |e| WalError::io(&temp, e);
        let mut file = BufWriter::new(File::create(&temp).map_err(io_error)?);
        let mut written = (SNAPSHOT_MAGIC.len() + 8) as u64;
        file.write_all(SNAPSHOT_MAGIC)
            .and_then(|()| file.write_all(&first_kept.to_le_bytes()))
            .map_err(io_error)?;
        let mut entries = state.entries();
        let mut chunk = Vec::with_capacity(SNAPSHOT_RECORD_ENTRIES);
        let mut out = Vec::new();
        loop {
            chunk.clear();
            chunk.extend(entries.by_ref().take(SNAPSHOT_RECORD_ENTRIES));
            out.clear();
            if chunk.is_empty() {
                record::encode_end(&mut out, state.len() as u64);
            } else {
                record::encode_batch(&mut out, &chunk, |index| state.name(index));
            }
            file.write_all(&out).map_err(io_error)?;
            written += out.len() as u64;
            if chunk.is_empty() {
                break;
            }
        }
        let file = file.into_inner().map_err(|e| io_error(e.into_error()))?;
        file.sync_all().map_err(io_error)?;
        let path = self.dir.join(SNAPSHOT_FILE);
        fs::rename(&temp, &path).map_err(|e| WalError::io(&path, e))?;
        sync_dir(&self.dir)?;
        Ok(written)
    }
}
