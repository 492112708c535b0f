//! Read combining: GETs waiting for the same node share one round trip.
//!
//! The first GET to find no round trip under way leads: it takes every count
//! waiting (its own included), asks the node for all of them in one `Count`
//! frame, hands out the answers and wakes the others. GETs that arrive
//! meanwhile wait for the next round. Read-your-writes holds: the leader reads
//! the node's queue position when it sends, after every GET of its round
//! arrived.

use crate::protocol::MAX_COUNTS_PER_FRAME;
use crate::tenants::TenantId;
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};

#[derive(Default)]
pub struct ReadQueue {
    queue: Mutex<Queue>,
    answered: Condvar,
}

#[derive(Default)]
struct Queue {
    next_ticket: u64,
    waiting: Vec<(u64, TenantId)>,
    leading: bool,
    /// Answers not yet picked up; `None`: the round trip failed.
    answers: HashMap<u64, Option<u64>>,
}

impl ReadQueue {
    /// The count of `tenant`, from a round trip that `ask` makes for a whole
    /// round of tenants (counts in the same order; `None` if it failed).
    pub fn count(
        &self,
        tenant: TenantId,
        ask: impl Fn(&[TenantId]) -> Option<Vec<u64>>,
    ) -> Option<u64> {
        let mut queue = self.queue.lock();
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.waiting.push((ticket, tenant));
        loop {
            if let Some(answer) = queue.answers.remove(&ticket) {
                return answer;
            }
            if queue.leading {
                self.answered.wait(&mut queue);
            } else {
                self.lead(&mut queue, &ask);
            }
        }
    }

    /// Runs one round, with the lock released during the round trip. A
    /// panic in `ask` fails the round's counts instead of leaving the lead
    /// taken, which would make every later GET of this node wait forever.
    fn lead(
        &self,
        queue: &mut MutexGuard<'_, Queue>,
        ask: &impl Fn(&[TenantId]) -> Option<Vec<u64>>,
    ) {
        queue.leading = true;
        let take = queue.waiting.len().min(MAX_COUNTS_PER_FRAME);
        let round: Vec<(u64, TenantId)> = queue.waiting.drain(..take).collect();
        let tenants: Vec<TenantId> = round.iter().map(|&(_, tenant)| tenant).collect();
        let counts = MutexGuard::unlocked(queue, || {
            panic::catch_unwind(AssertUnwindSafe(|| ask(&tenants)))
                .ok()
                .flatten()
                .filter(|counts| counts.len() == tenants.len())
        });
        for (index, &(ticket, _)) in round.iter().enumerate() {
            let answer = counts.as_ref().map(|counts| counts[index]);
            queue.answers.insert(ticket, answer);
        }
        queue.leading = false;
        self.answered.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::Barrier;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn concurrent_counts_share_round_trips_and_get_their_own_answer() {
        let reads = Arc::new(ReadQueue::default());
        let trips = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8u32)
            .map(|tenant| {
                let (reads, trips, barrier) = (reads.clone(), trips.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    (0..200)
                        .map(|_| {
                            reads.count(tenant, |tenants| {
                                trips.fetch_add(1, Ordering::Relaxed);
                                Some(tenants.iter().map(|&t| u64::from(t) * 10).collect())
                            })
                        })
                        .all(|answer| answer == Some(u64::from(tenant) * 10))
                })
            })
            .collect();
        for handle in handles {
            assert!(handle.join().unwrap());
        }
        assert!(trips.load(Ordering::Relaxed) <= 8 * 200);
    }

    #[test]
    fn a_failed_or_panicking_round_fails_its_counts_and_frees_the_lead() {
        let reads = ReadQueue::default();
        assert_eq!(reads.count(1, |_| None), None);
        assert_eq!(reads.count(1, |_| panic!("round trip bug")), None);
        assert_eq!(
            reads.count(1, |_| Some(vec![1, 2])),
            None,
            "wrong number of counts"
        );
        assert_eq!(
            reads.count(3, |tenants| Some(
                tenants.iter().map(|&t| u64::from(t)).collect()
            )),
            Some(3)
        );
    }
}
