//! The compactor thread: folds the snapshot and the closed log segments into
//! a new snapshot, so disk use follows the live data.

use super::record::{self, Encoder};
use super::recovery::{self, Recovered, Tail};
use super::writer::WriterMessage;
use super::{SNAPSHOT_FILE, SNAPSHOT_TEMP_FILE, WalError, WalStats, file_len, sync_dir};
use crate::tenants::Tenants;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use parking_lot::Mutex;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Items per record in a snapshot.
const SNAPSHOT_RECORD_ENTRIES: usize = 65_536;
/// After a failed compaction, requests are ignored this long: on a full
/// disk every group of POSTs asks for one, and each try rotates the log.
pub const RETRY_DELAY: Duration = Duration::from_secs(10);

pub(super) struct Compactor {
    pub(super) dir: PathBuf,
    pub(super) files: Arc<Mutex<()>>,
    pub(super) stats: Arc<WalStats>,
    pub(super) writer_queue: Sender<WriterMessage>,
}

impl Compactor {
    pub(super) fn run(self, requests: &Receiver<()>) {
        while requests.recv().is_ok() {
            let started = Instant::now();
            match self.compact() {
                Ok(items) => crate::log!(
                    "compaction: snapshot of {items} items ({} bytes) in {} ms",
                    self.stats.snapshot_bytes.load(Ordering::Relaxed),
                    started.elapsed().as_millis()
                ),
                Err(WalError::Closed) => return,
                Err(e) => {
                    self.stats.compaction_errors.fetch_add(1, Ordering::Relaxed);
                    crate::log!(
                        "compaction failed, the log keeps growing (next try in {} s at the earliest): {e}",
                        RETRY_DELAY.as_secs()
                    );
                    if !ignore_requests(requests, RETRY_DELAY) {
                        return;
                    }
                }
            }
        }
    }

    pub(super) fn compact(&self) -> Result<u64, WalError> {
        let _files = self.files.lock();
        let (done, wait) = bounded(1);
        self.writer_queue
            .send(WriterMessage::Rotate(done))
            .map_err(|_| WalError::Closed)?;
        let first_kept = wait.recv().map_err(|_| WalError::Closed)??;
        // Names are interned in a table of the compaction's own, so it
        // never touches (or pins) the service's.
        let tenants = Tenants::new();
        let mut state = Recovered::default();
        let first = recovery::read_snapshot(&self.dir, &mut state, &tenants)?;
        let closed: Vec<(u64, PathBuf)> = recovery::segments(&self.dir)?
            .into_iter()
            .filter(|(number, _)| *number < first_kept)
            .collect();
        for (_, path) in closed.iter().filter(|(number, _)| *number >= first) {
            recovery::read_segment(path, false, Tail::Leave, &mut state, &tenants)?;
        }
        let snapshot_bytes = self.write_snapshot(&state, &tenants, first_kept)?;
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
        Ok(state.store.len())
    }

    /// Writes the snapshot to a temporary file, syncs it and renames it over
    /// the old one. The temporary file goes if anything fails.
    fn write_snapshot(
        &self,
        state: &Recovered,
        tenants: &Tenants,
        first_kept: u64,
    ) -> Result<u64, WalError> {
        let temp = TempFile::create(self.dir.join(SNAPSHOT_TEMP_FILE))?;
        let written = write_records(&temp.file, state, tenants, first_kept)
            .map_err(|e| WalError::io(&temp.path, e))?;
        temp.persist(&self.dir.join(SNAPSHOT_FILE))?;
        sync_dir(&self.dir)?;
        Ok(written)
    }
}

/// Waits `delay`, dropping the requests that come meanwhile; false once
/// the writer is gone (the service stops).
fn ignore_requests(requests: &Receiver<()>, delay: Duration) -> bool {
    let until = Instant::now() + delay;
    loop {
        match requests.recv_deadline(until) {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout) => return true,
            Err(RecvTimeoutError::Disconnected) => return false,
        }
    }
}

/// Writes the snapshot record by record through a buffered file, so
/// compaction holds the recovered map and one shard, not a copy of the
/// whole snapshot; syncs it. Returns the bytes written.
fn write_records(
    file: &File,
    state: &Recovered,
    tenants: &Tenants,
    first_kept: u64,
) -> std::io::Result<u64> {
    let seed = record::process_seed();
    let mut out = BufWriter::new(file);
    let header = record::snapshot_header(seed, first_kept);
    out.write_all(&header)?;
    let mut written = header.len() as u64;
    let mut encoder = Encoder::new(seed);
    let mut bytes = Vec::new();
    let mut failed = Ok(());
    state.store.for_each_shard(|entries| {
        for chunk in entries.chunks(SNAPSHOT_RECORD_ENTRIES) {
            if failed.is_err() {
                return;
            }
            bytes.clear();
            encoder.batch(&mut bytes, chunk, |id| tenants.name(id).unwrap_or_default());
            failed = out.write_all(&bytes);
            written += bytes.len() as u64;
        }
    });
    failed?;
    bytes.clear();
    encoder.end(&mut bytes, state.store.len());
    out.write_all(&bytes)?;
    written += bytes.len() as u64;
    out.flush()?;
    file.sync_all()?;
    Ok(written)
}

/// A file that is removed when dropped unless it was renamed into place.
struct TempFile {
    path: PathBuf,
    file: File,
    persisted: bool,
}

impl TempFile {
    fn create(path: PathBuf) -> Result<TempFile, WalError> {
        let file = File::create(&path).map_err(|e| WalError::io(&path, e))?;
        Ok(TempFile {
            path,
            file,
            persisted: false,
        })
    }

    /// Renames it to `target`; it is no longer removed.
    fn persist(mut self, target: &Path) -> Result<(), WalError> {
        fs::rename(&self.path, target).map_err(|e| WalError::io(target, e))?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.persisted {
            return;
        }
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => crate::log!("cannot remove {}: {e}", self.path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::testing::TempDir;

    #[test]
    fn a_temporary_file_goes_unless_it_is_persisted() {
        let dir = TempDir::new("temp");
        let temp = dir.file(SNAPSHOT_TEMP_FILE);
        drop(TempFile::create(temp.clone()).unwrap());
        assert!(!temp.exists(), "removed when a compaction fails");

        let file = TempFile::create(temp.clone()).unwrap();
        (&file.file).write_all(b"snapshot").unwrap();
        file.persist(&dir.file(SNAPSHOT_FILE)).unwrap();
        assert!(!temp.exists());
        assert_eq!(fs::read(dir.file(SNAPSHOT_FILE)).unwrap(), b"snapshot");
    }

    #[test]
    fn requests_during_the_retry_delay_are_dropped() {
        let (trigger, requests) = bounded(1);
        trigger.send(()).unwrap();
        assert!(ignore_requests(&requests, Duration::from_millis(20)));
        assert!(
            requests.try_recv().is_err(),
            "the waiting request was dropped"
        );
        drop(trigger);
        assert!(
            !ignore_requests(&requests, Duration::from_secs(60)),
            "returns at once when the writer is gone"
        );
    }
}
