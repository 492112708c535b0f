//! PATCH: the registry of open connections of `Server::serve`, and who gets
//! in when the server is full.
//!
//! A connection is either idle (waiting for the first byte of a request,
//! since some moment) or busy. At the limit of open connections, the one
//! idle for longest is shut down to make room for a newcomer; if none is
//! idle, the newcomer is refused. The same holds among the connections of
//! one IP address, so one host cannot take every slot.
//!
//! A connection's state lives in a [`Slot`], one atomic word that its
//! thread and the registry share: a request marks its connection busy and
//! idle again without the registry's lock, which every connection thread
//! would otherwise take twice per request. Eviction takes an idle slot by
//! compare-and-swap, so a connection that turns busy at that moment is
//! never evicted mid-request.
//!
//! The registry also owns the connection threads' `JoinHandle`s: a thread
//! that ends hands its handle to the reaper thread, which joins it, so an
//! ended thread's stack goes back at once whether or not clients still come.
//!
//! Nothing here can panic while the lock is held: no indexing, no unwrap; a
//! poisoned lock is taken over (the data stays consistent between calls).

use std::collections::HashMap;
use std::convert::TryFrom;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::serve::ServerStats;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max_connections` are open and none is idle.
    Full,
    /// `max_connections_per_ip` are open from this address and none is idle.
    FullForIp,
    /// The server is stopping.
    Stopping,
}

/// A connection's state: busy, evicted, or idle since a moment (nanoseconds
/// after the registry's epoch, plus one, so that no idle word is `BUSY`).
pub(crate) struct Slot(AtomicU64);

/// Reading or answering a request: not evictable.
const BUSY: u64 = 0;
/// Shut down to make room: no longer counted against the limits (its
/// thread is on its way out), and never busy again.
const EVICTED: u64 = u64::MAX;

impl Slot {
    fn load(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Since when the connection is idle, as a comparable word; `None` if
    /// it is busy or evicted.
    fn idle_since(&self) -> Option<u64> {
        Some(self.load()).filter(|&word| word != BUSY && word != EVICTED)
    }

    /// Moves to `word` unless evicted; gives the word it left, or `None`
    /// if the connection was evicted.
    fn leave_for(&self, word: u64) -> Option<u64> {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |current| {
                (current != EVICTED).then_some(word)
            })
            .ok()
    }
}

struct Entry {
    ip: IpAddr,
    stream: Arc<TcpStream>,
    slot: Arc<Slot>,
    handle: Option<JoinHandle<()>>,
}

struct Inner {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    /// Counted connections per IP address.
    per_ip: HashMap<IpAddr, usize>,
    /// Counted connections.
    open: usize,
    /// Where ended threads' handles go; `None` once the server stopped.
    reaper: Option<Sender<JoinHandle<()>>>,
}

/// The open connections and their threads.
pub(crate) struct Registry {
    max: usize,
    max_per_ip: usize,
    inner: Mutex<Inner>,
    /// Set (under the lock) when the server stops; read without it.
    stopping: AtomicBool,
    /// What idle moments are counted from.
    epoch: Instant,
    /// Signalled whenever a connection thread ends.
    ended: Condvar,
    stats: Arc<ServerStats>,
}

impl Registry {
    pub(crate) fn new(
        max: usize,
        max_per_ip: usize,
        reaper: Sender<JoinHandle<()>>,
        stats: Arc<ServerStats>,
    ) -> Self {
        Registry {
            max,
            max_per_ip,
            inner: Mutex::new(Inner {
                next_id: 0,
                entries: HashMap::new(),
                per_ip: HashMap::new(),
                open: 0,
                reaper: Some(reaper),
            }),
            stopping: AtomicBool::new(false),
            epoch: Instant::now(),
            ended: Condvar::new(),
            stats,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The word of a connection idle since `moment`.
    fn idle_word(&self, moment: Instant) -> u64 {
        let nanos = moment.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos)
            .unwrap_or(u64::MAX)
            .clamp(BUSY + 1, EVICTED - 1)
    }

    /// Admits a new connection (idle since now), evicting the longest-idle
    /// connection of its address or of the server if needed. Gives its id
    /// and its slot, for [`Registry::set_idle`] and [`Registry::set_busy`].
    pub(crate) fn admit(
        &self,
        ip: IpAddr,
        stream: &Arc<TcpStream>,
    ) -> Result<(u64, Arc<Slot>), Refusal> {
        let mut inner = self.lock();
        if self.stopping.load(Ordering::SeqCst) {
            return Err(Refusal::Stopping);
        }
        if inner.per_ip.get(&ip).copied().unwrap_or(0) >= self.max_per_ip
            && !self.evict_longest_idle(&mut inner, Some(ip))
        {
            return Err(Refusal::FullForIp);
        }
        if inner.open >= self.max && !self.evict_longest_idle(&mut inner, None) {
            return Err(Refusal::Full);
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let slot = Arc::new(Slot(AtomicU64::new(self.idle_word(Instant::now()))));
        inner.entries.insert(
            id,
            Entry {
                ip,
                stream: stream.clone(),
                slot: slot.clone(),
                handle: None,
            },
        );
        *inner.per_ip.entry(ip).or_insert(0) += 1;
        inner.open += 1;
        self.stats.open.store(inner.open as u64, Ordering::Relaxed);
        Ok((id, slot))
    }

    /// Shuts down the connection idle for longest (of `ip` if given); false
    /// if none is idle.
    fn evict_longest_idle(&self, inner: &mut Inner, ip: Option<IpAddr>) -> bool {
        let victim = loop {
            let longest = inner
                .entries
                .values()
                .filter(|e| ip.is_none_or(|ip| e.ip == ip))
                .filter_map(|e| Some((e.slot.idle_since()?, e)))
                .min_by_key(|(since, _)| *since);
            let Some((since, entry)) = longest else {
                return false;
            };
            // Fails if its thread took a request meanwhile: look again.
            let taken =
                entry
                    .slot
                    .0
                    .compare_exchange(since, EVICTED, Ordering::SeqCst, Ordering::SeqCst);
            if taken.is_ok() {
                break entry;
            }
        };
        // Wakes its thread, blocked waiting for a request: it sees the end
        // of the stream and exits.
        let _ = victim.stream.shutdown(Shutdown::Both);
        let ip = victim.ip;
        uncount(inner, ip);
        self.stats.open.store(inner.open as u64, Ordering::Relaxed);
        self.stats.evicted_idle.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Keeps the `JoinHandle` of a connection's thread; if the thread has
    /// already ended, the handle goes straight to the reaper.
    pub(crate) fn attach(&self, id: u64, handle: JoinHandle<()>) {
        let mut inner = self.lock();
        match inner.entries.get_mut(&id) {
            Some(entry) => entry.handle = Some(handle),
            None => reap(&inner, handle),
        }
    }

    /// The connection thread is about to wait for a request: evictable
    /// from now. False if the connection must close (evicted, or the
    /// server stops).
    pub(crate) fn set_idle(&self, slot: &Slot) -> bool {
        self.set_state(slot, self.idle_word(Instant::now()))
    }

    /// The first byte of a request arrived: not evictable until the answer
    /// is written. False if the connection was evicted or the server stops.
    pub(crate) fn set_busy(&self, slot: &Slot) -> bool {
        self.set_state(slot, BUSY)
    }

    fn set_state(&self, slot: &Slot, word: u64) -> bool {
        let Some(was) = slot.leave_for(word) else {
            return false;
        };
        match (was == BUSY, word == BUSY) {
            (false, true) => self.stats.busy.fetch_add(1, Ordering::Relaxed),
            (true, false) => self.stats.busy.fetch_sub(1, Ordering::Relaxed),
            _ => 0,
        };
        // Read after the state is set: `close` sets `stopping` and then
        // shuts down every idle connection, so a connection either sees
        // it here or is seen idle there.
        !self.stopping.load(Ordering::SeqCst)
    }

    /// Forgets a connection whose thread ends (or never started); its
    /// handle, if attached, goes to the reaper.
    pub(crate) fn remove(&self, id: u64) {
        let mut inner = self.lock();
        if let Some(entry) = inner.entries.remove(&id) {
            // Stable here: evicting takes the lock, and the only other
            // writer of the slot is the thread that is leaving.
            match entry.slot.load() {
                EVICTED => {}
                BUSY => {
                    self.stats.busy.fetch_sub(1, Ordering::Relaxed);
                    uncount(&mut inner, entry.ip);
                }
                _ => uncount(&mut inner, entry.ip),
            }
            if let Some(handle) = entry.handle {
                reap(&inner, handle);
            }
        }
        self.stats.open.store(inner.open as u64, Ordering::Relaxed);
        drop(inner);
        self.ended.notify_all();
    }

    /// Stops admitting, and shuts down every idle connection (`all`: every
    /// connection).
    pub(crate) fn close(&self, all: bool) {
        let inner = self.lock();
        self.stopping.store(true, Ordering::SeqCst);
        for entry in inner.entries.values() {
            if all || entry.slot.idle_since().is_some() {
                let _ = entry.stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Waits until no connection thread is left, at most `timeout`; true if
    /// none is.
    pub(crate) fn wait_empty(&self, timeout: Duration) -> bool {
        let inner = self.lock();
        let (inner, _) = self
            .ended
            .wait_timeout_while(inner, timeout, |inner| !inner.entries.is_empty())
            .unwrap_or_else(PoisonError::into_inner);
        inner.entries.is_empty()
    }

    /// Closes the reaper's channel: it joins what it has, then ends.
    /// Threads still running are left detached. Gives how many.
    pub(crate) fn release_reaper(&self) -> usize {
        let mut inner = self.lock();
        inner.reaper = None;
        inner.entries.len()
    }
}

fn uncount(inner: &mut Inner, ip: IpAddr) {
    inner.open = inner.open.saturating_sub(1);
    if let Some(count) = inner.per_ip.get_mut(&ip) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            inner.per_ip.remove(&ip);
        }
    }
}

/// Hands a handle to the reaper (or detaches the thread if there is none).
fn reap(inner: &Inner, handle: JoinHandle<()>) {
    if let Some(reaper) = &inner.reaper {
        let _ = reaper.send(handle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// A registry of `max` connections (all from one address), and a
    /// connected socket for each entry.
    fn registry(max: usize) -> (Registry, TcpListener) {
        let (reaper, _) = mpsc::channel();
        let stats = Arc::new(ServerStats::default());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test port");
        (Registry::new(max, max, reaper, stats), listener)
    }

    fn stream(listener: &TcpListener) -> Arc<TcpStream> {
        let addr = listener.local_addr().expect("test port");
        Arc::new(TcpStream::connect(addr).expect("connect to the test port"))
    }

    #[test]
    fn the_longest_idle_makes_room_and_a_busy_one_never_does() {
        let (registry, listener) = registry(2);
        let ip = IpAddr::from([127, 0, 0, 1]);
        let (_, older) = registry.admit(ip, &stream(&listener)).expect("room");
        let (_, newer) = registry.admit(ip, &stream(&listener)).expect("room");
        assert!(registry.set_busy(&newer));
        assert_eq!(registry.stats.busy.load(Ordering::Relaxed), 1);

        // Full: the idle one goes, and can never turn busy again.
        let (_, third) = registry.admit(ip, &stream(&listener)).expect("evicts");
        assert!(!registry.set_busy(&older));
        assert!(!registry.set_idle(&older));

        // Both left are busy: a newcomer is refused.
        assert!(registry.set_busy(&third));
        let refused = registry.admit(ip, &stream(&listener)).map(|_| ());
        assert_eq!(refused, Err(Refusal::FullForIp));
        assert_eq!(registry.stats.busy.load(Ordering::Relaxed), 2);

        // Idle again: evictable again, and the busy count follows.
        assert!(registry.set_idle(&newer));
        assert_eq!(registry.stats.busy.load(Ordering::Relaxed), 1);
        assert!(registry.admit(ip, &stream(&listener)).is_ok());
        assert!(!registry.set_busy(&newer));
    }

    #[test]
    fn a_connection_turning_busy_is_never_evicted_under_contention() {
        // One socket for all: nothing is read or written, and shutting
        // it down again is harmless.
        let (_, listener) = registry(0);
        let socket = stream(&listener);
        let deadline = Instant::now() + Duration::from_secs(60);
        for _ in 0..200 {
            evict_four_busy_workers(&socket, deadline);
        }
    }

    /// Four connections turn busy and idle again as fast as they can
    /// while newcomers, which stay busy, each take an idle one's place.
    fn evict_four_busy_workers(socket: &Arc<TcpStream>, deadline: Instant) {
        let (registry, _) = registry(4);
        let registry = Arc::new(registry);
        let ip = IpAddr::from([127, 0, 0, 1]);
        let taken_while_busy = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (id, slot) = registry.admit(ip, socket).expect("room");
                let (registry, taken) = (registry.clone(), taken_while_busy.clone());
                std::thread::spawn(move || {
                    while registry.set_busy(&slot) {
                        if slot.load() == EVICTED {
                            taken.fetch_add(1, Ordering::SeqCst);
                        }
                        if !registry.set_idle(&slot) {
                            break;
                        }
                    }
                    registry.remove(id);
                })
            })
            .collect();
        let mut newcomers = Vec::new();
        while workers.iter().any(|worker| !worker.is_finished()) {
            assert!(Instant::now() < deadline, "the workers were never evicted");
            if let Ok((id, slot)) = registry.admit(ip, socket) {
                assert!(registry.set_busy(&slot));
                newcomers.push(id);
            }
        }
        for worker in workers {
            worker.join().expect("a worker panicked");
        }
        assert_eq!(taken_while_busy.load(Ordering::SeqCst), 0);
        assert_eq!(registry.stats.evicted_idle.load(Ordering::Relaxed), 4);
        for id in newcomers {
            registry.remove(id);
        }
        assert_eq!(registry.stats.busy.load(Ordering::Relaxed), 0);
        assert_eq!(registry.stats.open.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_stopping_server_closes_a_connection_at_its_next_change() {
        let (registry, listener) = registry(4);
        let ip = IpAddr::from([127, 0, 0, 1]);
        let (id, slot) = registry.admit(ip, &stream(&listener)).expect("room");
        assert!(registry.set_busy(&slot));
        registry.close(false);
        assert!(!registry.set_idle(&slot));
        registry.remove(id);
        assert_eq!(registry.stats.busy.load(Ordering::Relaxed), 0);
        assert_eq!(registry.stats.open.load(Ordering::Relaxed), 0);
    }
}
