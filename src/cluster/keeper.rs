//! The cluster's background thread: puts nodes that fell too far behind back
//! in step, and forgets tenant names no item uses any more.
//!
//! A node detached from the replication log (it lagged by more than the
//! log keeps) is copied again from a caught-up node as soon as it can take
//! the copy (not stalled), then reads the log again. If it was master, a
//! caught-up node is elected first.

use super::Cluster;
use crate::node::NodeId;
use crate::tenants::Swept;
use crossbeam_channel::{Receiver, Sender, bounded, select};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often the keeper looks for detached nodes to copy again.
pub const TICK: Duration = Duration::from_millis(100);
/// Tenant names are swept at most this often...
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// ...and only once this many names were added since the last sweep, or
/// any after [`SWEEP_SETTLE_INTERVAL`], or at every [`SWEEP_IDLE_INTERVAL`]:
/// a large stable table is not scanned every second, and memory comes back
/// soon after a churn of names ends. After a sweep, free memory goes back to
/// the system.
pub const SWEEP_GROWTH: u64 = 1024;
pub const SWEEP_SETTLE_INTERVAL: Duration = Duration::from_secs(3);
pub const SWEEP_IDLE_INTERVAL: Duration = Duration::from_secs(30);

/// The keeper thread and the signal that stops it.
pub(super) struct Keeper {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Keeper {
    pub(super) fn start(
        cluster: &Arc<Cluster>,
        detached: Receiver<NodeId>,
    ) -> std::io::Result<Keeper> {
        let (stop, stopped) = bounded(0);
        let cluster = Arc::downgrade(cluster);
        let thread = thread::Builder::new()
            .name("cluster-keeper".into())
            .spawn(move || run(&cluster, &detached, &stopped))?;
        Ok(Keeper { stop, thread })
    }

    pub(super) fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

fn run(cluster: &Weak<Cluster>, detached: &Receiver<NodeId>, stopped: &Receiver<()>) {
    let mut schedule = SweepSchedule::new(Instant::now());
    loop {
        select! {
            recv(stopped) -> _ => return,
            recv(detached) -> event => if event.is_err() { return },
            default(TICK) => {}
        }
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        cluster.bring_back_detached();
        let added = cluster.tenants.added();
        if schedule.is_due(added, Instant::now()) {
            let swept = cluster.sweep_tenants();
            crate::allocator::give_back();
            schedule.swept(added, swept, Instant::now());
        }
    }
}

/// When the tenant table is swept next (see [`SWEEP_INTERVAL`]).
#[derive(Debug)]
struct SweepSchedule {
    last_sweep: Instant,
    /// Names added since start, less those the last sweep left undecided:
    /// what "added" read when everything added had been looked at.
    looked_at: u64,
}

impl SweepSchedule {
    fn new(now: Instant) -> SweepSchedule {
        SweepSchedule {
            last_sweep: now,
            looked_at: 0,
        }
    }

    /// Whether to sweep now, `added` names having been added since start.
    fn is_due(&self, added: u64, now: Instant) -> bool {
        let since = now.saturating_duration_since(self.last_sweep);
        let grown = added.saturating_sub(self.looked_at);
        since >= SWEEP_IDLE_INTERVAL
            || (since >= SWEEP_INTERVAL && grown >= SWEEP_GROWTH)
            || (since >= SWEEP_SETTLE_INTERVAL && grown > 0)
    }

    /// Records a sweep begun when `added` names had been added. Names it
    /// had to keep because writes naming them were in flight count as not
    /// looked at: when a churn's last names were still pinned, the next
    /// sweep comes a settle interval later, not an idle one.
    fn swept(&mut self, added: u64, swept: Swept, now: Instant) {
        self.looked_at = added.saturating_sub(swept.undecided);
        self.last_sweep = now;
    }
}

impl Cluster {
    /// Copies every live, detached, not stalled node again from a caught-up
    /// one; elects a caught-up master first if the master is detached.
    fn bring_back_detached(&self) {
        let _change = self.changes.lock();
        let roster = self.roster();
        if roster.master().is_some_and(|master| !master.is_attached()) {
            self.reelect();
        }
        for node in roster
            .live()
            .filter(|n| !n.is_attached() && !n.is_stalled())
        {
            let sources: Vec<_> = roster
                .live()
                .filter(|n| n.is_attached() && !n.is_stalled())
                .collect();
            if sources.iter().any(|source| node.copy_from(source).is_ok()) {
                crate::log!(
                    "{} caught up again by copy ({} items)",
                    node.id(),
                    node.store().len()
                );
            }
        }
    }

    /// Forgets tenant names that no live node holds an item of.
    pub(super) fn sweep_tenants(&self) -> Swept {
        let _change = self.changes.lock();
        let roster = self.roster();
        self.tenants.sweep(
            |unused| {
                for node in roster.live() {
                    node.view().keep_unused(unused);
                }
            },
            // Names went: the views give their memory back.
            |_| {
                for node in roster.live() {
                    node.view().shrink();
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swept(forgotten: usize, undecided: u64) -> Swept {
        Swept {
            forgotten,
            undecided,
        }
    }

    #[test]
    fn names_left_pinned_by_a_sweep_bring_the_next_one_after_the_settle_interval() {
        let start = Instant::now();
        let mut schedule = SweepSchedule::new(start);
        let churned = 500_000;
        assert!(schedule.is_due(churned, start + SWEEP_INTERVAL));
        // The sweep ran while the churn's last 500 names were in flight.
        let at = start + SWEEP_INTERVAL;
        schedule.swept(churned, swept(499_500, 500), at);
        assert!(!schedule.is_due(churned, at + SWEEP_INTERVAL));
        assert!(schedule.is_due(churned, at + SWEEP_SETTLE_INTERVAL));
        // As many as a growth step: the next sweep a second later.
        let at = at + SWEEP_SETTLE_INTERVAL;
        schedule.swept(churned, swept(500, SWEEP_GROWTH), at);
        assert!(!schedule.is_due(churned, at + SWEEP_INTERVAL / 2));
        assert!(schedule.is_due(churned, at + SWEEP_INTERVAL));
    }

    #[test]
    fn a_sweep_that_decided_everything_waits_for_new_names_or_the_idle_interval() {
        let start = Instant::now();
        let mut schedule = SweepSchedule::new(start);
        schedule.swept(10, swept(10, 0), start);
        assert!(!schedule.is_due(10, start + SWEEP_SETTLE_INTERVAL));
        assert!(schedule.is_due(10, start + SWEEP_IDLE_INTERVAL));
        assert!(schedule.is_due(11, start + SWEEP_SETTLE_INTERVAL));
        assert!(!schedule.is_due(10 + SWEEP_GROWTH, start + SWEEP_INTERVAL / 2));
        assert!(schedule.is_due(10 + SWEEP_GROWTH, start + SWEEP_INTERVAL));
    }
}
