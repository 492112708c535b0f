//! The log writer thread: group commit, and what a failed write does.
//!
//! Every POST hands its record over a bounded channel; the writer takes every
//! record waiting, writes them with one `write` and (with `--fsync always`)
//! one `fdatasync`, then answers each waiting POST.
//!
//! When the write or the sync fails (a full disk, an I/O error), the
//! group's POSTs get the error, and the segment is cut back to the length it
//! had before the group: the bytes of a failed group must never be followed
//! by a later group's records, which recovery would rightly call damage. The
//! writer goes on; the next group is tried as usual, and while none comes
//! the writer probes every [`PROBE_INTERVAL`](super::PROBE_INTERVAL), so the
//! state `/health` shows follows the disk.

use super::{FsyncPolicy, WalError, WalStats, create_segment};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Most bytes written (and synced) as one group.
pub const GROUP_MAX_BYTES: usize = 8 * 1024 * 1024;
/// The log is compacted once it holds more than this and more than the snapshot.
pub const COMPACT_MIN_BYTES: u64 = 4 * 1024 * 1024;
/// Bytes a probe writes (then cuts off again): a block, so a probe needs
/// the space of one, not the slack at the end of the last block.
pub const PROBE_BYTES: usize = 4096;
/// What a probe writes: no record end in it, so a probe a crash left at the
/// end of a segment is a torn tail.
const PROBE: [u8; PROBE_BYTES] = [0xFF; PROBE_BYTES];

/// What the writer needs of a segment file. A trait so that tests can put
/// a file that fails on demand behind it.
pub(super) trait SegmentFile: Send {
    /// Writes all of `bytes` at the end of the file.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    fn sync_data(&mut self) -> io::Result<()>;
    fn sync_all(&mut self) -> io::Result<()>;
    /// Cuts the file to `len` bytes; later appends go there.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

/// Segments are opened for appending, so a write after a truncation lands
/// at the new end.
impl SegmentFile for File {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn sync_all(&mut self) -> io::Result<()> {
        File::sync_all(self)
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }
}

/// The segment being written.
pub(super) struct Segment {
    file: Box<dyn SegmentFile>,
    number: u64,
    path: PathBuf,
    /// Bytes written (and synced, under `--fsync always`) by groups that
    /// succeeded: the file must never hold anything after them but a group
    /// being written.
    good_len: u64,
    /// A write failed or a probe ran, and its bytes may still be in the
    /// file: cut them off before anything else is written.
    dirty: bool,
}

impl Segment {
    pub(super) fn new(file: Box<dyn SegmentFile>, number: u64, path: PathBuf, len: u64) -> Self {
        Segment {
            file,
            number,
            path,
            good_len: len,
            dirty: false,
        }
    }

    /// Cuts off what a failed write or a probe left.
    fn restore(&mut self) -> io::Result<()> {
        if self.dirty {
            self.file.truncate(self.good_len)?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Appends `bytes`, syncing them if asked (then returns how long the
    /// sync took); on failure they are cut off again, or marked to be if
    /// that fails too.
    fn append(&mut self, bytes: &[u8], sync: bool) -> io::Result<Option<Duration>> {
        self.restore()?;
        self.dirty = true;
        let written = self.file.append(bytes).and_then(|()| {
            if !sync {
                return Ok(None);
            }
            let started = Instant::now();
            self.file.sync_data()?;
            Ok(Some(started.elapsed()))
        });
        match written {
            Ok(_) => self.dirty = false,
            Err(_) => {
                // The next write tries again if this fails.
                let _ = self.restore();
            }
        }
        written
    }
}

/// What the writer thread is asked to do.
pub(super) enum WriterMessage {
    Append(Vec<u8>, Sender<Result<(), WalError>>),
    /// Close the current segment and start the next; answers its number.
    Rotate(Sender<Result<u64, WalError>>),
    Stop,
}

/// The messages taken for one group.
#[derive(Default)]
struct Group {
    bytes: Vec<u8>,
    waiting: Vec<Sender<Result<(), WalError>>>,
    rotations: Vec<Sender<Result<u64, WalError>>>,
    stopping: bool,
}

impl Group {
    fn take(&mut self, message: WriterMessage) {
        match message {
            WriterMessage::Append(bytes, done) => {
                self.bytes.extend_from_slice(&bytes);
                self.waiting.push(done);
            }
            WriterMessage::Rotate(done) => self.rotations.push(done),
            WriterMessage::Stop => self.stopping = true,
        }
    }

    fn is_full(&self) -> bool {
        self.bytes.len() >= GROUP_MAX_BYTES || self.stopping
    }
}

/// The writer thread: group commit.
pub(super) struct Writer {
    pub(super) dir: PathBuf,
    pub(super) segment: Segment,
    pub(super) policy: FsyncPolicy,
    pub(super) stats: Arc<WalStats>,
    pub(super) compact_trigger: Sender<()>,
    /// How often to probe while the log cannot be written and nothing comes.
    pub(super) probe_every: Duration,
}

impl Writer {
    pub(super) fn run(mut self, inbox: &Receiver<WriterMessage>) {
        let mut group = Group::default();
        while !group.stopping {
            let Some(first) = self.next_message(inbox) else {
                break;
            };
            group.take(first);
            while !group.is_full() {
                let Ok(message) = inbox.try_recv() else { break };
                group.take(message);
            }
            self.commit(&mut group);
            for done in group.rotations.drain(..) {
                let _ = done.send(self.rotate());
            }
            self.maybe_compact();
        }
        // A clean stop leaves no failed write behind (the next start would
        // cut it off anyway).
        let _ = self.segment.restore();
    }

    /// The next message; while the log is failing and none comes in time,
    /// probes and waits again. None once every sender is gone.
    fn next_message(&mut self, inbox: &Receiver<WriterMessage>) -> Option<WriterMessage> {
        loop {
            if self.stats.is_healthy() {
                return inbox.recv().ok();
            }
            match inbox.recv_timeout(self.probe_every) {
                Ok(message) => return Some(message),
                Err(RecvTimeoutError::Timeout) => self.probe(),
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Writes the group's records and answers its POSTs.
    fn commit(&mut self, group: &mut Group) {
        let written = self.write_group(&group.bytes);
        for done in group.waiting.drain(..) {
            let answer = written.as_ref().map(|_| ()).map_err(|e| WalError::Io {
                path: self.segment.path.clone(),
                error: copy_error(e),
            });
            let _ = done.send(answer);
        }
        group.bytes.clear();
    }

    fn write_group(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let sync = self.policy == FsyncPolicy::Always;
        match self.segment.append(bytes, sync) {
            Ok(synced) => {
                if let Some(took) = synced {
                    self.stats.record_fsync(took);
                }
                self.segment.good_len += bytes.len() as u64;
                self.stats
                    .log_bytes
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                self.note_success();
                Ok(())
            }
            Err(e) => {
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                self.note_failure(&e);
                Err(e)
            }
        }
    }

    /// Writes a block and syncs it, then cuts it off again: whether the log
    /// can be written, without a POST to try it with.
    fn probe(&mut self) {
        let probed = self.segment.append(&PROBE, true).and_then(|_| {
            self.segment.dirty = true;
            self.segment.restore()
        });
        match probed {
            Ok(()) => self.note_success(),
            Err(e) => self.note_failure(&e),
        }
    }

    fn note_success(&self) {
        if let Some(failed_for) = self.stats.mark_healthy() {
            crate::log!(
                "the log in {} can be written again, after {} s",
                self.dir.display(),
                failed_for.as_secs()
            );
        }
    }

    fn note_failure(&self, error: &io::Error) {
        if self.stats.mark_failing(&self.dir, error) {
            crate::log!(
                "cannot write the log {}: {error}; POSTs get 503 until it can",
                self.segment.path.display()
            );
        }
    }

    fn rotate(&mut self) -> Result<u64, WalError> {
        let path = self.segment.path.clone();
        self.segment
            .restore()
            .and_then(|()| self.segment.file.sync_all())
            .map_err(|e| WalError::io(&path, e))?;
        let next = self.segment.number + 1;
        self.segment = create_segment(&self.dir, next)?;
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
    match error.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(error.kind(), error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::testing::TempDir;
    use crossbeam_channel::bounded;
    use parking_lot::Mutex;
    use std::thread;

    /// A segment in memory whose writes, syncs and truncations fail on demand.
    #[derive(Default)]
    struct Disk {
        bytes: Vec<u8>,
        appends: usize,
        syncs: usize,
        /// Appends write half their bytes, then fail with ENOSPC.
        full: bool,
        syncs_fail: bool,
        truncates_fail: bool,
    }

    struct FakeFile(Arc<Mutex<Disk>>);

    fn os_error(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    impl SegmentFile for FakeFile {
        fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
            let mut disk = self.0.lock();
            disk.appends += 1;
            if disk.full {
                disk.bytes.extend_from_slice(&bytes[..bytes.len() / 2]);
                return Err(os_error(libc::ENOSPC));
            }
            disk.bytes.extend_from_slice(bytes);
            Ok(())
        }

        fn sync_data(&mut self) -> io::Result<()> {
            let mut disk = self.0.lock();
            disk.syncs += 1;
            match disk.syncs_fail {
                true => Err(os_error(libc::EIO)),
                false => Ok(()),
            }
        }

        fn sync_all(&mut self) -> io::Result<()> {
            self.sync_data()
        }

        fn truncate(&mut self, len: u64) -> io::Result<()> {
            let mut disk = self.0.lock();
            if disk.truncates_fail {
                return Err(os_error(libc::EIO));
            }
            disk.bytes.truncate(len as usize);
            Ok(())
        }
    }

    /// A writer on a fake segment, and what the test watches it through.
    struct Rig {
        disk: Arc<Mutex<Disk>>,
        stats: Arc<WalStats>,
        queue: Sender<WriterMessage>,
        writer: Option<thread::JoinHandle<()>>,
        _dir: TempDir,
        _compactions: Receiver<()>,
    }

    impl Rig {
        /// The writer is built but not started: messages queue up.
        fn new(policy: FsyncPolicy) -> (Rig, Writer, Receiver<WriterMessage>) {
            let dir = TempDir::new("writer");
            let disk = Arc::new(Mutex::new(Disk::default()));
            let stats = Arc::new(WalStats::default());
            let (compact_trigger, compactions) = bounded(1);
            let (queue, inbox) = bounded(64);
            let segment = Segment::new(Box::new(FakeFile(disk.clone())), 0, dir.file("fake"), 0);
            let writer = Writer {
                dir: dir.path().to_path_buf(),
                segment,
                policy,
                stats: stats.clone(),
                compact_trigger,
                probe_every: Duration::from_millis(10),
            };
            let rig = Rig {
                disk,
                stats,
                queue,
                writer: None,
                _dir: dir,
                _compactions: compactions,
            };
            (rig, writer, inbox)
        }

        fn started(policy: FsyncPolicy) -> Rig {
            let (mut rig, writer, inbox) = Rig::new(policy);
            rig.writer = Some(thread::spawn(move || writer.run(&inbox)));
            rig
        }

        fn send(&self, bytes: &[u8]) -> Receiver<Result<(), WalError>> {
            let (done, wait) = bounded(1);
            self.queue
                .send(WriterMessage::Append(bytes.to_vec(), done))
                .unwrap();
            wait
        }

        fn append(&self, bytes: &[u8]) -> Result<(), WalError> {
            self.send(bytes).recv().unwrap()
        }

        fn bytes(&self) -> Vec<u8> {
            self.disk.lock().bytes.clone()
        }
    }

    impl Drop for Rig {
        fn drop(&mut self) {
            let _ = self.queue.send(WriterMessage::Stop);
            if let Some(writer) = self.writer.take() {
                writer.join().unwrap();
            }
        }
    }

    #[test]
    fn records_waiting_together_share_one_write_and_one_sync() {
        let (rig, writer, inbox) = Rig::new(FsyncPolicy::Always);
        let answers: Vec<_> = (1..=5u8).map(|n| rig.send(&[n; 10])).collect();
        rig.queue.send(WriterMessage::Stop).unwrap();
        writer.run(&inbox);
        for answer in answers {
            assert!(answer.recv().unwrap().is_ok());
        }
        let disk = rig.disk.lock();
        assert_eq!((disk.appends, disk.syncs), (1, 1));
        let expected: Vec<u8> = (1..=5u8).flat_map(|n| [n; 10]).collect();
        assert_eq!(disk.bytes, expected);
        assert_eq!(rig.stats.fsyncs.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn fsync_never_writes_without_syncing() {
        let rig = Rig::started(FsyncPolicy::Never);
        rig.append(b"abc").unwrap();
        assert_eq!(rig.disk.lock().syncs, 0);
        assert_eq!(rig.bytes(), b"abc");
    }

    #[test]
    fn a_full_disk_fails_that_group_only_and_the_writer_goes_on() {
        let rig = Rig::started(FsyncPolicy::Always);
        rig.append(b"good").unwrap();
        assert!(rig.stats.is_healthy());

        rig.disk.lock().full = true;
        let error = rig.append(b"lost record").unwrap_err();
        assert!(
            error.to_string().contains("No space left on device"),
            "{error}"
        );
        assert_eq!(rig.bytes(), b"good", "the half-written group is cut off");
        let failure = rig.stats.failure().expect("the writer reports it");
        assert!(failure.error.contains("No space left on device"));
        assert!(
            failure
                .to_string()
                .contains("writes are refused until it can")
        );
        assert_eq!(rig.stats.write_errors.load(Ordering::Relaxed), 1);
        assert!(rig.append(b"also lost").is_err(), "still full");

        rig.disk.lock().full = false;
        rig.append(b" after").unwrap();
        assert_eq!(rig.bytes(), b"good after");
        assert!(rig.stats.is_healthy());
        assert_eq!(rig.stats.write_errors.load(Ordering::Relaxed), 2);
        assert_eq!(rig.stats.log_bytes.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn a_failed_sync_cuts_the_group_off_too() {
        let rig = Rig::started(FsyncPolicy::Always);
        rig.append(b"good").unwrap();
        rig.disk.lock().syncs_fail = true;
        let error = rig.append(b"unsynced").unwrap_err();
        assert!(error.to_string().contains("Input/output error"), "{error}");
        assert_eq!(rig.bytes(), b"good");
        rig.disk.lock().syncs_fail = false;
        rig.append(b"!").unwrap();
        assert_eq!(rig.bytes(), b"good!");
    }

    #[test]
    fn nothing_is_written_after_a_failed_group_until_it_is_cut_off() {
        let rig = Rig::started(FsyncPolicy::Always);
        rig.append(b"good").unwrap();
        {
            let mut disk = rig.disk.lock();
            disk.full = true;
            disk.truncates_fail = true;
        }
        rig.append(b"torn").unwrap_err();
        assert_eq!(rig.bytes(), b"goodto", "half of it stays: it cannot be cut");
        rig.disk.lock().full = false;
        let appends = rig.disk.lock().appends;
        rig.append(b"refused").unwrap_err();
        assert_eq!(
            rig.disk.lock().appends,
            appends,
            "not written after the torn bytes"
        );
        rig.disk.lock().truncates_fail = false;
        rig.append(b" again").unwrap();
        assert_eq!(rig.bytes(), b"good again");
    }

    #[test]
    fn the_writer_probes_until_the_log_can_be_written_again() {
        let rig = Rig::started(FsyncPolicy::Always);
        rig.append(b"good").unwrap();
        rig.disk.lock().full = true;
        rig.append(b"lost").unwrap_err();
        let appends = rig.disk.lock().appends;
        let deadline = Instant::now() + Duration::from_secs(10);
        while rig.disk.lock().appends == appends {
            assert!(Instant::now() < deadline, "it probes while failing");
            thread::sleep(Duration::from_millis(5));
        }
        assert!(!rig.stats.is_healthy());

        rig.disk.lock().full = false;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !rig.stats.is_healthy() {
            assert!(Instant::now() < deadline, "healthy again without a POST");
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(rig.bytes(), b"good", "the probe is cut off");
        assert_eq!(
            rig.stats.fsyncs.load(Ordering::Relaxed),
            1,
            "probes are not group fsyncs"
        );
        assert_eq!(
            rig.stats.write_errors.load(Ordering::Relaxed),
            1,
            "nor write errors"
        );
    }
}
