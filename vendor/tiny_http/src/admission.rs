//! PATCH: the registry of open connections of `Server::serve`, and who gets
//! in when the server is full.
//!
//! A connection is either idle (waiting for the first byte of a request,
//! since some moment) or busy. At the limit of open connections, the one
//! idle for longest is shut down to make room for a newcomer; if none is
//! idle, the newcomer is refused. The same holds among the connections of
//! one IP address, so one host cannot take every slot.
//!
//! The registry also owns the connection threads' `JoinHandle`s: a thread
//! that ends hands its handle to the reaper thread, which joins it, so an
//! ended thread's stack goes back at once whether or not clients still come.
//!
//! Nothing here can panic while the lock is held: no indexing, no unwrap; a
//! poisoned lock is taken over (the data stays consistent between calls).

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::atomic::Ordering;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle(Instant),
    Busy,
}

struct Entry {
    ip: IpAddr,
    stream: Arc<TcpStream>,
    state: State,
    /// False once evicted: it no longer counts against the limits (its
    /// thread is on its way out).
    counted: bool,
    handle: Option<JoinHandle<()>>,
}

struct Inner {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    /// Counted connections per IP address.
    per_ip: HashMap<IpAddr, usize>,
    /// Counted connections.
    open: usize,
    /// Connections in the busy state.
    busy: usize,
    stopping: bool,
    /// Where ended threads' handles go; `None` once the server stopped.
    reaper: Option<Sender<JoinHandle<()>>>,
}

/// The open connections and their threads.
pub(crate) struct Registry {
    max: usize,
    max_per_ip: usize,
    inner: Mutex<Inner>,
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
                busy: 0,
                stopping: false,
                reaper: Some(reaper),
            }),
            ended: Condvar::new(),
            stats,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a new connection (idle since now), evicting the longest-idle
    /// connection of its address or of the server if needed. Gives its id.
    pub(crate) fn admit(&self, ip: IpAddr, stream: &Arc<TcpStream>) -> Result<u64, Refusal> {
        let mut inner = self.lock();
        if inner.stopping {
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
        inner.entries.insert(
            id,
            Entry {
                ip,
                stream: stream.clone(),
                state: State::Idle(Instant::now()),
                counted: true,
                handle: None,
            },
        );
        *inner.per_ip.entry(ip).or_insert(0) += 1;
        inner.open += 1;
        self.stats.open.store(inner.open as u64, Ordering::Relaxed);
        Ok(id)
    }

    /// Shuts down the connection idle for longest (of `ip` if given); false
    /// if none is idle.
    fn evict_longest_idle(&self, inner: &mut Inner, ip: Option<IpAddr>) -> bool {
        let victim = inner
            .entries
            .iter()
            .filter(|(_, e)| e.counted && ip.is_none_or(|ip| e.ip == ip))
            .filter_map(|(&id, e)| match e.state {
                State::Idle(since) => Some((since, id)),
                State::Busy => None,
            })
            .min();
        let Some((_, id)) = victim else {
            return false;
        };
        if let Some(entry) = inner.entries.get_mut(&id) {
            // Wakes its thread, blocked waiting for a request: it sees the
            // end of the stream and exits.
            let _ = entry.stream.shutdown(Shutdown::Both);
            entry.counted = false;
            let ip = entry.ip;
            uncount(inner, ip);
        }
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
    /// from now. False if the connection must close (the server stops).
    pub(crate) fn set_idle(&self, id: u64) -> bool {
        self.set_state(id, State::Idle(Instant::now()))
    }

    /// The first byte of a request arrived: not evictable until the answer
    /// is written. False if the connection was evicted or the server stops.
    pub(crate) fn set_busy(&self, id: u64) -> bool {
        self.set_state(id, State::Busy)
    }

    fn set_state(&self, id: u64, state: State) -> bool {
        let mut inner = self.lock();
        let stopping = inner.stopping;
        let change = match inner.entries.get_mut(&id) {
            Some(entry) if entry.counted && !stopping => {
                let was_busy = entry.state == State::Busy;
                entry.state = state;
                (state == State::Busy) as isize - was_busy as isize
            }
            _ => return false,
        };
        inner.busy = inner.busy.saturating_add_signed(change);
        self.stats.busy.store(inner.busy as u64, Ordering::Relaxed);
        true
    }

    /// Forgets a connection whose thread ends (or never started); its
    /// handle, if attached, goes to the reaper.
    pub(crate) fn remove(&self, id: u64) {
        let mut inner = self.lock();
        if let Some(entry) = inner.entries.remove(&id) {
            if entry.counted {
                uncount(&mut inner, entry.ip);
            }
            if entry.state == State::Busy {
                inner.busy = inner.busy.saturating_sub(1);
                self.stats.busy.store(inner.busy as u64, Ordering::Relaxed);
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
        let mut inner = self.lock();
        inner.stopping = true;
        for entry in inner.entries.values() {
            if all || matches!(entry.state, State::Idle(_)) {
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
