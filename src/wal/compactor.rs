//! The compactor thread: folds the snapshot and the closed log segments into
//! a new snapshot, so disk use follows the live data.

use super::record::{self, Encoder};
use super::recovery::{self, Recovered, Tail};
use super::writer::WriterMessage;
use super::{SNAPSHOT_FILE, WalError, WalStats, file_len, sync_dir};
use crate::tenants::Tenants;
use crossbeam_channel::{Receiver, Sender, bounded};
use parking_lot::Mutex;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

const SNAPSHOT_TEMP_FILE: &str = "snapshot.tmp";
/// Items per record in a snapshot.
const SNAPSHOT_RECORD_ENTRIES: usize = 65_536;

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
                Err(e) => crate::log!("compaction failed, the log keeps growing: {e}"),
            }
        }
    }

    fn compact(&self) -> Result<u64, WalError> {
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

    /// Writes the snapshot record by record through a buffered file, so
    /// compaction holds the recovered map and one shard, not a copy of the
    /// whole snapshot.
    fn write_snapshot(
        &self,
        state: &Recovered,
        tenants: &Tenants,
        first_kept: u64,
    ) -> Result<u64, WalError> {
        let temp = self.dir.join(SNAPSHOT_TEMP_FILE);
        let io_error = |e| WalError::io(&temp, e);
        let mut file = BufWriter::new(File::create(&temp).map_err(io_error)?);
        let seed = record::process_seed();
        let header = record::snapshot_header(seed, first_kept);
        file.write_all(&header).map_err(io_error)?;
        let mut written = header.len() as u64;
        let mut encoder = Encoder::new(seed);
        let mut out = Vec::new();
        let mut failed = Ok(());
        state.store.for_each_shard(|entries| {
            for chunk in entries.chunks(SNAPSHOT_RECORD_ENTRIES) {
                if failed.is_err() {
                    return;
                }
                out.clear();
                encoder.batch(&mut out, chunk, |id| tenants.name(id).unwrap_or_default());
                failed = file.write_all(&out);
                written += out.len() as u64;
            }
        });
        failed.map_err(io_error)?;
        out.clear();
        encoder.end(&mut out, state.store.len());
        file.write_all(&out).map_err(io_error)?;
        written += out.len() as u64;
        let file = file.into_inner().map_err(|e| io_error(e.into_error()))?;
        file.sync_all().map_err(io_error)?;
        let path = self.dir.join(SNAPSHOT_FILE);
        fs::rename(&temp, &path).map_err(|e| WalError::io(&path, e))?;
        sync_dir(&self.dir)?;
        Ok(written)
    }
}
