//! Issue #14, the flip: a batch is one operation for reads. One writer
//! moves IDs 0 and 1 together between tenants `a` and `b`, waiting for each
//! answer, while readers count both tenants on keep-alive connections.
//! Every count must be 0 or 2: a 1 is a read that saw half a batch.
//!
//! Before the replication log (787665a), 13-17% of the GETs answered 1
//! here; each run makes thousands of GETs across a thousand moves.
//!
//! A move that fails (503) is the other half of the issue: it must be
//! resolved in bounded time, the same way on every node, without blocking
//! later batches. Whether it may stay visible in part is where README and
//! the issue disagree: see the two ignored tests at the end, which fail.

#[path = "common/chaos.rs"]
mod chaos;
mod common;

use chaos::{Clock, Conn, Faults, Injected, Progress};
use common::{Lcg, Server, items};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::thread;
use std::time::{Duration, Instant};

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
    let _guard = progress.finish_if_panicking();
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

/// What a failed-move test asks, beyond bounded time, the same counts on
/// every node, and later batches going through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FailedMove {
    /// What README ("Choices") promises: whatever was stored, the same on
    /// every node, without blocking later batches.
    AsStored,
    /// What issue #14 asks of every batch a read sees: all of it or none.
    WholeOrNothing,
    /// With `--data-dir`: what was visible of it before `kill -9` is what
    /// is visible after the restart.
    SameAfterRestart,
}

/// Moves that get 503 with every node stalled under them. With two nodes:
/// stall one node for long and the other, `brief`, for 50 ms, so the move
/// is split over both; once `brief` has acknowledged a chunk, stall it for
/// long too: the coordinator's retries then all fail. The setup races the
/// coordinator's 300 ms acknowledgement deadline: a lost race ends in a
/// quick 200, and the move is tried again. The brief node alternates from
/// one failed move to the next, since which chunk gets acknowledged depends
/// on the order in which the coordinator reads the nodes' answers.
fn failed_moves(expect: FailedMove, wanted: usize) {
    const TRIES: usize = 60;
    let dir = common::TempDir::new("failed-move");
    let mut flags = vec!["--fault-injection", "--nodes", "2"];
    if expect == FailedMove::SameAfterRestart {
        flags.extend(["--data-dir", dir.arg()]);
    }
    let server = Server::start(&flags);
    let fault = |path: &str| {
        let reply = server.call("POST", path, "");
        assert_eq!(reply.status, 200, "POST {path}: {}", reply.text());
    };
    let received = || -> Vec<u64> {
        server
            .nodes()
            .iter()
            .map(|node| node["received"].as_u64().expect("received"))
            .collect()
    };
    let (from, to) = ("a", "b");
    let mut failures = 0;
    for _ in 0..TRIES {
        // From a known state: a lost race may have left anything.
        let reset = server.post_items(&items([(0, from), (1, from)]));
        assert_eq!(reset.status, 200, "{}", reset.text());
        let brief = failures % 2;
        let before = received();
        fault(&format!("/nodes/{}/stall?ms=20000", 1 - brief));
        fault(&format!("/nodes/{brief}/stall?ms=50"));
        let (status, took) = thread::scope(|scope| {
            let post = scope.spawn(|| {
                let started = Instant::now();
                let body = items([(0, to), (1, to)]).to_string();
                let reply = Conn::new(server.addr).call("POST", "/items", &body);
                (reply.ok().map(|r| r.status), started.elapsed())
            });
            common::wait_until(
                "the brief node acknowledged a chunk, or the move ended",
                || received()[brief] > before[brief] || post.is_finished(),
            );
            fault(&format!("/nodes/{brief}/stall?ms=20000"));
            post.join().expect("the POST thread panicked")
        });
        fault("/nodes/0/stall?ms=0");
        fault("/nodes/1/stall?ms=0");
        match status {
            Some(200) => continue,
            Some(503) => failures += 1,
            other => panic!("the move answered {other:?}"),
        }
        assert!(
            took < Duration::from_secs(10),
            "a failed POST answers in bounded time; took {took:?}"
        );
        // A later batch is not blocked, and a read sees it: so it also sees
        // whatever of the failed move was committed before it.
        assert_eq!(server.post_items(&items([(7, "later")])).status, 200);
        let counts =
            |server: &Server| (server.count(from), server.count(to), server.count("later"));
        let on_master = counts(&server);
        // With node 0, the master, stalled, node 1 answers.
        fault("/nodes/0/stall?ms=20000");
        let on_replica = counts(&server);
        fault("/nodes/0/stall?ms=0");
        assert_eq!(
            on_master, on_replica,
            "every node shows the failed move the same way"
        );
        let (left, moved, later) = on_master;
        assert_eq!(
            (left + moved, later),
            (2, 1),
            "count({from}), count({to}), count(later)"
        );
        match expect {
            FailedMove::AsStored => {}
            FailedMove::WholeOrNothing => assert!(
                moved != 1,
                "failed move {failures} (a {took:?} 503) is visible in part: \
                 count({from}) = {left}, count({to}) = {moved}"
            ),
            FailedMove::SameAfterRestart => {
                server.kill9();
                let restarted = Server::start(&["--nodes", "2", "--data-dir", dir.arg()]);
                assert_eq!(
                    counts(&restarted),
                    on_master,
                    "failed move {failures} (a {took:?} 503) changed with the restart: \
                     count({from}), count({to}), count(later)"
                );
                return;
            }
        }
        if failures == wanted {
            return;
        }
    }
    panic!("in {TRIES} tries, only {failures} moves failed");
}

#[test]
fn a_failed_move_is_resolved_in_bounded_time_the_same_on_every_node_and_blocks_nothing() {
    failed_moves(FailedMove::AsStored, 2);
}

#[test]
fn a_failed_move_is_visible_whole_or_not_at_all() {
    failed_moves(FailedMove::WholeOrNothing, 4);
}

#[test]
fn a_failed_move_is_visible_the_same_after_a_restart_from_the_data_dir() {
    failed_moves(FailedMove::SameAfterRestart, 1);
}
