//! A node's side of replication: the apply thread, which reads commits from
//! the replication log into the node's store, and the [`View`] that reads
//! are answered from.
//!
//! The view holds per-tenant counts at a watermark: after a commit is
//! applied to the store, its count changes and its watermark are published
//! in one step, so a read sees every batch up to the watermark and nothing
//! of any later batch (see [`crate::replication`]).

use super::Shared;
use crate::replication::Read;
use crate::tenants::TenantId;
use crate::version::Version;
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// After a small pass (under [`LINGER_BELOW_ENTRIES`]), the apply thread
/// waits this long before it looks for more commits, unless a read needs a
/// newer watermark: under a stream of small writes it then applies
/// thousands of commits per wake-up instead of being woken for each.
/// Writes never wait for it; reads nudge it, so no answer waits for the
/// linger. Each pass takes the log's lock twice and wakes four threads
/// that the connection threads then wait behind; at 5 ms, single-item
/// writes under lock-step ran 8-26% slower, with a p99 up to 44% longer,
/// than at 20 ms (measured in turns with the limit; README "Performance").
/// 50 ms bought nothing more.
pub const APPLY_LINGER: Duration = Duration::from_millis(20);

/// A pass that applied at least this many entries is followed by the next
/// at once: its wake-up is already shared by enough items, and under big
/// batches a linger would only slow replication down. Below it, a pass
/// lingers: at the rates of small writes (under 200 k items/s) one linger
/// gathers fewer, and a pass right after it would wake the thread twice
/// per linger for nothing.
pub const LINGER_BELOW_ENTRIES: usize = 4096;

/// Per-tenant counts as of a watermark: what reads see.
pub struct View {
    state: Mutex<Counts>,
    published: Condvar,
    /// Reads waiting for a newer watermark, and how they nudge the apply
    /// thread out of its linger.
    waiting_readers: AtomicUsize,
    needed: Condvar,
}

struct Counts {
    watermark: Version,
    /// Tenants with at least one item here; a count that drops to zero is
    /// removed, so the map follows live tenants, whatever their ids.
    by_tenant: HashMap<TenantId, u64>,
}

impl View {
    /// A view of counts indexed by tenant id (`counts[id]`).
    pub fn new(watermark: Version, counts: Vec<u64>) -> View {
        let by_tenant = (0..)
            .map(TenantId::new)
            .zip(counts)
            .filter(|&(_, count)| count > 0)
            .collect();
        View {
            state: Mutex::new(Counts {
                watermark,
                by_tenant,
            }),
            published: Condvar::new(),
            waiting_readers: AtomicUsize::new(0),
            needed: Condvar::new(),
        }
    }

    /// Every write up to this version is in the counts, and no later one.
    pub fn watermark(&self) -> Version {
        self.state.lock().watermark
    }

    /// The count of `tenant` (`None`: a tenant nobody wrote) once the
    /// watermark reaches `at_least`, with the watermark it was read at;
    /// `None` if it does not by `deadline`.
    pub fn count_at(
        &self,
        tenant: Option<TenantId>,
        at_least: Version,
        deadline: Instant,
    ) -> Option<(u64, Version)> {
        let mut state = self.state.lock();
        if state.watermark < at_least {
            self.waiting_readers.fetch_add(1, Ordering::SeqCst);
            self.needed.notify_one();
            while state.watermark < at_least {
                if self.published.wait_until(&mut state, deadline).timed_out() {
                    break;
                }
            }
            self.waiting_readers.fetch_sub(1, Ordering::SeqCst);
            if state.watermark < at_least {
                return None;
            }
        }
        let count = tenant.map_or(0, |tenant| state.count(tenant));
        Some((count, state.watermark))
    }

    /// The count of `tenant` now.
    pub fn count(&self, tenant: TenantId) -> u64 {
        self.state.lock().count(tenant)
    }

    /// Gives back the memory of tenants that left (after a churn of names).
    pub fn shrink(&self) {
        let mut state = self.state.lock();
        let counts = &mut state.by_tenant;
        if counts.capacity() > 64 && counts.len() < counts.capacity() / 4 {
            counts.shrink_to_fit();
        }
    }

    /// Keeps in `tenants` only those with no item here.
    pub fn keep_unused(&self, tenants: &mut Vec<TenantId>) {
        let state = self.state.lock();
        tenants.retain(|&tenant| state.count(tenant) == 0);
    }

    /// Makes this view a copy of `other`.
    pub(super) fn replace_with(&self, other: &View) {
        let (watermark, by_tenant) = {
            let theirs = other.state.lock();
            (theirs.watermark, theirs.by_tenant.clone())
        };
        let mut mine = self.state.lock();
        mine.watermark = watermark;
        mine.by_tenant = by_tenant;
        drop(mine);
        self.published.notify_all();
    }

    /// Waits [`APPLY_LINGER`], or less if a read is waiting for a newer
    /// watermark.
    fn linger(&self) {
        let mut state = self.state.lock();
        if self.waiting_readers.load(Ordering::SeqCst) == 0 {
            self.needed.wait_for(&mut state, APPLY_LINGER);
        }
    }

    /// Publishes the changes of applied commits and their watermark at once.
    fn publish(&self, watermark: Version, changes: &mut Changes) {
        let mut state = self.state.lock();
        for &tenant in &changes.touched {
            let delta = std::mem::take(&mut changes.by_tenant[tenant.index()]);
            let count = state.by_tenant.entry(tenant).or_default();
            *count = count.saturating_add_signed(delta);
            if *count == 0 {
                state.by_tenant.remove(&tenant);
            }
        }
        changes.touched.clear();
        state.watermark = state.watermark.max(watermark);
        drop(state);
        self.published.notify_all();
    }
}

impl Counts {
    fn count(&self, tenant: TenantId) -> u64 {
        self.by_tenant.get(&tenant).copied().unwrap_or(0)
    }
}

/// Count changes gathered while applying, published together.
#[derive(Default)]
struct Changes {
    /// Indexed by tenant id; zero except for `touched` tenants.
    by_tenant: Vec<i64>,
    touched: Vec<TenantId>,
}

impl Changes {
    fn moved(&mut self, from: Option<TenantId>, to: TenantId) {
        if let Some(from) = from {
            self.add(from, -1);
        }
        self.add(to, 1);
    }

    fn add(&mut self, tenant: TenantId, delta: i64) {
        let index = tenant.index();
        if self.by_tenant.len() <= index {
            self.by_tenant.resize(index + 1, 0);
        }
        if self.by_tenant[index] == 0 {
            self.touched.push(tenant);
        }
        self.by_tenant[index] += delta;
    }

    /// Gives back memory after an unusually wide commit.
    fn trim(&mut self) {
        if self.by_tenant.capacity() > 1 << 16 {
            self.by_tenant = Vec::new();
            self.touched = Vec::new();
        }
    }
}

/// The apply thread: reads commits, applies them to the store, publishes.
pub(super) fn apply_loop(shared: &Shared) {
    let mut changes = Changes::default();
    loop {
        let epoch = shared.epoch.load(Ordering::SeqCst);
        let commits = match shared.log.read(shared.id) {
            Read::Commits(commits) => commits,
            Read::Retired => return,
        };
        if !shared.wait_while_stalled() {
            return;
        }
        let _applying = shared.applying.lock();
        if shared.epoch.load(Ordering::SeqCst) != epoch {
            // The node was replaced by a copy meanwhile: these commits
            // are already in it (or not its to apply).
            continue;
        }
        let Some(last) = commits.last() else {
            continue;
        };
        let mut entries = 0;
        for commit in &commits {
            for piece in &commit.pieces {
                entries += piece.len();
                shared
                    .store
                    .apply(piece, |from, to| changes.moved(from, to));
            }
        }
        shared.view.publish(last.watermark, &mut changes);
        shared.log.applied(shared.id, last.seq + 1);
        changes.trim();
        drop(_applying);
        if entries < LINGER_BELOW_ENTRIES {
            shared.view.linger();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reads_wait_for_the_watermark_and_see_whole_publications() {
        let view = View::new(Version::new(5), vec![1]);
        let soon = Instant::now() + Duration::from_millis(20);
        let t = TenantId::new;
        assert_eq!(
            view.count_at(Some(t(0)), Version::new(5), soon),
            Some((1, Version::new(5)))
        );
        assert_eq!(view.count_at(Some(t(0)), Version::new(6), soon), None);
        let mut changes = Changes::default();
        changes.moved(Some(t(0)), t(3));
        changes.moved(None, t(3));
        view.publish(Version::new(9), &mut changes);
        let later = Instant::now() + Duration::from_millis(20);
        assert_eq!(
            view.count_at(Some(t(3)), Version::new(6), later),
            Some((2, Version::new(9)))
        );
        assert_eq!(view.count(t(0)), 0);
        assert_eq!(
            view.count_at(None, Version::ZERO, later),
            Some((0, Version::new(9)))
        );
        assert!(changes.touched.is_empty() && changes.by_tenant.iter().all(|&d| d == 0));
    }
}
