//! Issue #14, the flip: a batch is one operation for reads. One writer
//! moves IDs 0 and 1 together between tenants `a` and `b`, waiting for each
//! answer, while readers count both tenants on keep-alive connections.
//! Every count must be 0 or 2: a 1 is a read that saw half a batch.
//!
//! Before the replication log (787665a), about one GET in six answered 1
//! here; each run makes thousands of GETs across hundreds of flips.

#[path = "common/chaos.rs"]
mod chaos;
mod common;

use chaos::{Clock, Conn, Faults, Injected, Progress};
use common::{Lcg, Server, items};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::thread;

/// Moves of both IDs (to `b` and back to `a` counts two).
const MOVES: u64 = 1_000;
const READERS: usize = 3;
const TENANTS: [&str; 2] = ["a", "b"];

/// One POST of the writer.
struct Attempt {
    to: &'static str,
    invoked: u64,
    answered: u64,
    /// The HTTP status, or `None` for a transport error.
    status: Option<u16>,
}

/// A count that was neither 0 nor 2.
struct BadRead {
    reader: usize,
    tenant: &'static str,
    count: u64,
    invoked: u64,
    answered: u64,
}

#[derive(Default)]
struct Reads {
    /// (tenant, count) → how many GETs answered it.
    answers: BTreeMap<(&'static str, u64), u64>,
    /// GETs that got no count (503, transport error).
    failed: u64,
    bad: Vec<BadRead>,
}

impl Reads {
    fn total(&self) -> u64 {
        self.answers.values().sum()
    }

    fn merge(&mut self, other: Reads) {
        for (key, n) in other.answers {
            *self.answers.entry(key).or_default() += n;
        }
        self.failed += other.failed;
        self.bad.extend(other.bad);
    }
}

fn writer(server: &Server, clock: Clock, progress: &Progress) -> Vec<Attempt> {
    let mut conn = Conn::new(server.addr);
    let mut attempts = Vec::new();
    for step in 0..MOVES {
        let to = TENANTS[(step % 2 == 0) as usize];
        let body = items([(0, to), (1, to)]).to_string();
        // A move that failed is sent again until it is acknowledged, so
        // the next one starts from a known state.
        loop {
            let invoked = clock.now();
            let status = conn.call("POST", "/items", &body).ok().map(|r| r.status);
            attempts.push(Attempt {
                to,
                invoked,
                answered: clock.now(),
                status,
            });
            if status == Some(200) {
                break;
            }
            assert!(
                matches!(status, None | Some(503)),
                "POST answered {status:?}"
            );
        }
        progress.step();
    }
    progress.finish();
    attempts
}

fn reader(server: &Server, clock: Clock, progress: &Progress, id: usize) -> Reads {
    let mut conn = Conn::new(server.addr);
    let mut reads = Reads::default();
    while !progress.is_done() {
        for tenant in TENANTS {
            let invoked = clock.now();
            let count = conn
                .call("GET", &format!("/items/{tenant}/count"), "")
                .ok()
                .and_then(|reply| chaos::counter(&reply));
            let answered = clock.now();
            let Some(count) = count else {
                reads.failed += 1;
                continue;
            };
            *reads.answers.entry((tenant, count)).or_default() += 1;
            if count != 0 && count != 2 {
                reads.bad.push(BadRead {
                    reader: id,
                    tenant,
                    count,
                    invoked,
                    answered,
                });
            }
        }
    }
    reads
}

fn flip(faults: Faults) {
    let seed = chaos::seed();
    let server = Server::start(&["--fault-injection"]);
    assert_eq!(server.post_items(&items([(0, "a"), (1, "a")])).status, 200);
    let clock = Clock::start();
    let progress = Progress::new(MOVES);
    let mut rng = Lcg(seed);
    let (attempts, reads, injected) = thread::scope(|scope| {
        let writer = scope.spawn(|| writer(&server, clock, &progress));
        let readers: Vec<_> = (0..READERS)
            .map(|id| {
                let (server, progress) = (&server, &progress);
                scope.spawn(move || reader(server, clock, progress, id))
            })
            .collect();
        let injected = chaos::inject(&server, faults, &progress, clock, &mut |n| rng.below(n));
        let attempts = writer.join().expect("the writer panicked");
        let mut reads = Reads::default();
        for reader in readers {
            reads.merge(reader.join().expect("a reader panicked"));
        }
        (attempts, reads, injected)
    });
    let elapsed = clock.now() as f64 / 1e9;
    let failed_posts = attempts.iter().filter(|a| a.status != Some(200)).count();
    let summary = format!(
        "{faults:?} (seed {seed}): {MOVES} moves ({failed_posts} POSTs failed and were \
         retried), {} GETs answered {:?}, {} failed, in {elapsed:.1} s; faults: {:?}",
        reads.total(),
        reads.answers,
        reads.failed,
        injected.iter().map(|i| &i.what).collect::<Vec<_>>(),
    );
    eprintln!("{summary}");
    assert!(
        reads.bad.is_empty(),
        "{} GETs saw part of a batch. {summary}\n{}",
        reads.bad.len(),
        explain(&reads.bad, &attempts, &injected)
    );
    for tenant in TENANTS {
        for count in [0, 2] {
            assert!(
                reads.answers.contains_key(&(tenant, count)),
                "no GET saw count({tenant}) = {count}: the readers did not see the flips. {summary}"
            );
        }
    }
    if faults == Faults::None {
        assert_eq!(
            (failed_posts, reads.failed),
            (0, 0),
            "without faults every request succeeds. {summary}"
        );
    }
    // The last move went back to `a`.
    assert_eq!((server.count("a"), server.count("b")), (2, 0));
}

/// The first bad reads, each with the POSTs and faults around it.
fn explain(bad: &[BadRead], attempts: &[Attempt], injected: &[Injected]) -> String {
    let ms = |t: u64| t as f64 / 1e6;
    let mut out = String::new();
    for read in bad.iter().take(5) {
        let _ = writeln!(
            out,
            "reader {} count({}) = {} [{:.3} .. {:.3} ms]; around it:",
            read.reader,
            read.tenant,
            read.count,
            ms(read.invoked),
            ms(read.answered)
        );
        // The last POST answered before the GET was sent, and every POST
        // that overlapped the GET.
        let last_before = attempts
            .iter()
            .rposition(|a| a.answered < read.invoked)
            .unwrap_or(0);
        for attempt in attempts[last_before..]
            .iter()
            .take_while(|a| a.invoked <= read.answered)
        {
            let _ = writeln!(
                out,
                "  POST both to {} [{:.3} .. {:.3} ms] -> {:?}",
                attempt.to,
                ms(attempt.invoked),
                ms(attempt.answered),
                attempt.status
            );
        }
        for fault in injected.iter().filter(|f| f.at <= read.answered) {
            let _ = writeln!(out, "  fault {} at {:.3} ms", fault.what, ms(fault.at));
        }
    }
    out
}

#[test]
fn every_count_sees_a_batch_whole() {
    flip(Faults::None);
}

#[test]
fn every_count_sees_a_batch_whole_while_the_master_then_a_replica_crash_and_restart() {
    flip(Faults::CrashRestart);
}

#[test]
fn every_count_sees_a_batch_whole_while_nodes_stall_and_disconnect() {
    flip(Faults::StallAndDisconnect);
}
