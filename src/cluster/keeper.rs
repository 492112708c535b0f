//! The cluster's background thread: puts nodes that fell too far behind back
//! in step, and forgets tenant names no item uses any more.
//!
//! A node detached from the replication log (it lagged by more than the
//! log keeps) is copied again from a caught-up node as soon as it can take
//! the copy (not stalled), then reads the log again. If it was master, a
//! caught-up node is elected first.

use super::Cluster;
use crate::node::NodeId;
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
    let mut last_sweep = Instant::now();
    let mut added_at_sweep = 0u64;
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
        let since = last_sweep.elapsed();
        let grown = added.saturating_sub(added_at_sweep);
        if since >= SWEEP_IDLE_INTERVAL
            || (since >= SWEEP_INTERVAL && grown >= SWEEP_GROWTH)
            || (since >= SWEEP_SETTLE_INTERVAL && grown > 0)
        {
            cluster.sweep_tenants();
            crate::allocator::give_back();
            added_at_sweep = added;
            last_sweep = Instant::now();
        }
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
    pub(super) fn sweep_tenants(&self) {
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
        );
    }
}
