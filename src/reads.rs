//! Read combining: GETs that arrive while a count round trip is under way
//! are answered together by the next one.
//!
//! A worker with a GET queues it. If no round is running, that worker leads:
//! it takes every GET waiting, asks the master for all their counts in one
//! `Count` frame, answers each GET itself, and goes on until the queue is
//! empty. Other workers queue their GET and go back to serving requests at
//! once, so a GET costs no blocked worker and no extra thread wake-up.
//! Read-your-writes holds: the leader reads the master's queue position when
//! it sends, after every GET of its round arrived.

use crate::protocol::MAX_COUNTS_PER_FRAME;
use parking_lot::Mutex;
use std::panic::{self, AssertUnwindSafe};

pub struct ReadQueue<T> {
    queue: Mutex<Queue<T>>,
}

struct Queue<T> {
    waiting: Vec<T>,
    leading: bool,
}

impl<T> Default for ReadQueue<T> {
    fn default() -> Self {
        ReadQueue {
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                leading: false,
            }),
        }
    }
}

impl<T> ReadQueue<T> {
    /// Queues `read`; if no round is running, runs rounds of at most
    /// [`MAX_COUNTS_PER_FRAME`] reads with `answer` until none is left.
    pub fn submit(&self, read: T, mut answer: impl FnMut(Vec<T>)) {
        {
            let mut queue = self.queue.lock();
            queue.waiting.push(read);
            if queue.leading {
                return;
            }
            queue.leading = true;
        }
        loop {
            let round: Vec<T> = {
                let mut queue = self.queue.lock();
                if queue.waiting.is_empty() {
                    queue.leading = false;
                    return;
                }
                let take = queue.waiting.len().min(MAX_COUNTS_PER_FRAME);
                queue.waiting.drain(..take).collect()
            };
            // A panic drops this round's reads (tiny_http answers a dropped
            // request with 500) but must not leave the lead taken: every
            // later GET would wait forever.
            if panic::catch_unwind(AssertUnwindSafe(|| answer(round))).is_err() {
                eprintln!("error: a count round panicked; its GETs got 500");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};

    #[test]
    fn every_read_is_answered_once_and_rounds_are_shared() {
        let reads: Arc<ReadQueue<u32>> = Arc::default();
        let answered = Arc::new(AtomicUsize::new(0));
        let rounds = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (reads, answered, rounds, barrier) = (
                    reads.clone(),
                    answered.clone(),
                    rounds.clone(),
                    barrier.clone(),
                );
                std::thread::spawn(move || {
                    barrier.wait();
                    for read in 0..500 {
                        reads.submit(read, |round| {
                            rounds.fetch_add(1, Ordering::Relaxed);
                            answered.fetch_add(round.len(), Ordering::Relaxed);
                        });
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(answered.load(Ordering::Relaxed), 8 * 500);
        assert!(rounds.load(Ordering::Relaxed) <= 8 * 500);
    }

    #[test]
    fn a_panicking_round_frees_the_lead() {
        let reads = ReadQueue::default();
        reads.submit(1, |_| panic!("round bug"));
        let mut seen = Vec::new();
        reads.submit(2, |round| seen.extend(round));
        assert_eq!(seen, vec![2]);
    }
}
