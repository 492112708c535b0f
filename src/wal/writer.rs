//! The log writer thread: group commit.
//!
//! Every POST hands its record over a bounded channel; the writer takes every
//! record waiting, writes them with one `write` and (with `--fsync always`)
//! one `fdatasync`, then answers each waiting POST.

use super::{FsyncPolicy, WalStats, create_segment};
use crossbeam_channel::{Receiver, Sender};
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Most bytes written (and synced) as one group.
pub const GROUP_MAX_BYTES: usize = 8 * 1024 * 1024;
/// The log is compacted once it holds more than this and more than the snapshot.
pub const COMPACT_MIN_BYTES: u64 = 4 * 1024 * 1024;

/// What the writer thread is asked to do.
pub(super) enum WriterMessage {
    Append(Vec<u8>, Sender<io::Result<()>>),
    /// Close the current segment and start the next; answers its number.
    Rotate(Sender<io::Result<u64>>),
    Stop,
}

/// The writer thread: group commit.
pub(super) struct Writer {
    pub(super) dir: PathBuf,
    pub(super) file: File,
    pub(super) number: u64,
    pub(super) policy: FsyncPolicy,
    pub(super) stats: Arc<WalStats>,
    pub(super) compact_trigger: Sender<()>,
}

impl Writer {
    pub(super) fn run(mut self, inbox: &Receiver<WriterMessage>) {
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
                crate::log!("log write failed, refusing further writes: {e}");
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
