//! Issue #14: counts are linearizable with batches as single operations.
//! Clients write random batches over a few IDs and tenants and read counts,
//! concurrently, against the real binary; each history is then checked
//! against the sequential model (tests/common/linearizability.rs, whose own
//! unit tests run in this binary too). Linearizability implies read-your-
//! writes, whole batches, and monotonic reads.
//!
//! A run is random: its seed is printed when it fails, and `DC_SEED=N`
//! replays the same operations and faults (the scheduling differs).

#[path = "common/chaos.rs"]
mod chaos;
mod common;
#[path = "common/linearizability.rs"]
mod linearizability;

use chaos::{Clock, Conn, Faults, Injected, Progress};
use common::{Lcg, Server, items};
use linearizability::{Call, Names, Op, Unknown, Verdict};
use std::fmt::Write as _;
use std::thread;
use std::time::Instant;

const CLIENTS: usize = 4;
const OPS_PER_CLIENT: u64 = 80;
/// Histories per test, each on fresh IDs and tenants of the same server.
const ROUNDS: u64 = 6;
const IDS: u64 = 5;
const TENANTS: u64 = 3;
const MAX_BATCH: u64 = 4;
/// Lines of a failing history printed (all of it goes to a file).
const SHOWN_LINES: usize = 40;

/// IDs and tenant names of one round: nothing of another round touches them.
struct Round {
    number: u64,
    id_base: i64,
    tenants: Vec<String>,
}

impl Round {
    fn new(number: u64) -> Round {
        Round {
            number,
            id_base: 1_000 * number as i64,
            tenants: (0..TENANTS).map(|t| format!("r{number}-t{t}")).collect(),
        }
    }
}

/// One client's operations: writes of 1 to [`MAX_BATCH`] items (an ID may
/// repeat: the later item wins) and reads, on one keep-alive connection.
fn client(
    server: &Server,
    round: &Round,
    id: usize,
    seed: u64,
    clock: Clock,
    progress: &Progress,
) -> Vec<Op> {
    let _guard = progress.finish_if_panicking();
    let mut rng = Lcg(seed ^ (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut conn = Conn::new(server.addr);
    let mut ops = Vec::new();
    for _ in 0..OPS_PER_CLIENT {
        if rng.below(10) < 4 {
            let batch: Vec<(u8, u8)> = (0..1 + rng.below(MAX_BATCH))
                .map(|_| (rng.below(IDS) as u8, rng.below(TENANTS) as u8))
                .collect();
            let body = items(batch.iter().map(|&(item, tenant)| {
                (
                    round.id_base + i64::from(item),
                    round.tenants[usize::from(tenant)].as_str(),
                )
            }));
            let invoked = clock.now();
            let reply = conn.call("POST", "/items", &body.to_string());
            let answered = clock.now();
            let status = reply.as_ref().ok().map(|reply| reply.status);
            assert!(
                matches!(status, None | Some(200 | 503)),
                "POST answered {status:?}"
            );
            // 503 or no answer: it may or may not have happened.
            let answered = (status == Some(200)).then_some(answered);
            ops.push(Op::write(id, &batch, invoked, answered));
        } else {
            let tenant = rng.below(TENANTS) as u8;
            let path = format!("/items/{}/count", round.tenants[usize::from(tenant)]);
            let invoked = clock.now();
            let count = conn
                .call("GET", &path, "")
                .ok()
                .and_then(|reply| chaos::counter(&reply));
            let answered = clock.now();
            // A read that got no count tells nothing: left out.
            if let Some(count) = count {
                ops.push(Op::read(id, tenant, count as u32, invoked, answered));
            }
        }
        progress.step();
    }
    ops
}

/// Records one round's history while `faults` are injected.
fn record(
    server: &Server,
    round: &Round,
    faults: Faults,
    seed: u64,
    clock: Clock,
) -> (Vec<Op>, Vec<Injected>) {
    let progress = Progress::new(CLIENTS as u64 * OPS_PER_CLIENT);
    let mut rng = Lcg(seed);
    thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|id| {
                let progress = &progress;
                scope.spawn(move || client(server, round, id, seed, clock, progress))
            })
            .collect();
        let injected = chaos::inject(server, faults, &progress, clock, &mut |n| rng.below(n));
        let ops = clients
            .into_iter()
            .flat_map(|client| client.join().expect("a client panicked"))
            .collect();
        progress.finish();
        (ops, injected)
    })
}

/// Checks a round's history; on failure, says why with the smallest
/// failing history found, and leaves the whole history in a file.
fn verify(ops: &[Op], round: &Round, injected: &[Injected], faults: Faults, seed: u64) {
    let started = Instant::now();
    let verdict = linearizability::check(ops, Unknown::Whole);
    let checked_in = started.elapsed();
    let writes = ops
        .iter()
        .filter(|op| matches!(op.call, Call::Write(_)))
        .count();
    let unknown = ops.iter().filter(|op| op.answered.is_none()).count();
    let reads = ops.len() - writes;
    let sent_reads = CLIENTS * OPS_PER_CLIENT as usize - writes;
    let summary = format!(
        "{faults:?}, seed {seed} (DC_SEED={seed} replays it), round {}: {writes} writes \
         ({unknown} of unknown outcome), {reads} reads answered of {sent_reads}; \
         {verdict} in {checked_in:.1?}",
        round.number,
    );
    eprintln!("{summary}");
    assert!(
        unknown * 2 <= writes && reads * 2 >= sent_reads,
        "most requests failed: the history says little. {summary}"
    );
    let names = Names {
        tenants: &round.tenants,
        id_base: round.id_base,
    };
    let mut report = format!("{summary}\n");
    let failure = match verdict {
        Verdict::Linearizable(_) => return,
        Verdict::GaveUp(_) => None,
        Verdict::NotLinearizable => linearizability::explain(ops, Unknown::Whole),
    };
    if failure.is_some() {
        let _ = writeln!(
            report,
            "{}",
            if unknown == 0 {
                "No write failed: no order of the batches explains what was read."
            } else if linearizability::is_linearizable(ops, Unknown::AnyPart) {
                "Explained only if a failed write (503 or no answer) was stored in part."
            } else {
                "Not explained even if failed writes were stored in part."
            }
        );
    }
    let ms = |t: u64| t as f64 / 1e6;
    for fault in injected {
        let _ = writeln!(report, "fault {} at {:.3} ms", fault.what, ms(fault.at));
    }
    if let Some(failure) = &failure {
        // The culprit is among the last lines; before it come the writes
        // that led there (the whole history goes to the file below).
        let zero = failure.kept.iter().map(|&i| ops[i].invoked).min();
        let zero = zero.unwrap_or(0);
        let listing = linearizability::render(ops, &failure.kept, Some(failure), &names, zero);
        let lines: Vec<&str> = listing.lines().collect();
        let shown = lines.len().min(SHOWN_LINES);
        let _ = writeln!(
            report,
            "the history up to the answer no order fits, without the reads it does not need \
             (times in ms from {:.3} ms; {} earlier lines left out):\n{}",
            ms(zero),
            lines.len() - shown,
            lines[lines.len() - shown..].join("\n")
        );
    }
    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "linearizable-{faults:?}-{seed}-round{}.txt",
        round.number
    ));
    let everything: Vec<usize> = (0..ops.len()).collect();
    let full = format!(
        "{report}\nwhole history:\n{}",
        linearizability::render(ops, &everything, failure.as_ref(), &names, 0)
    );
    let saved = std::fs::write(&file, full).map_or_else(
        |e| format!("could not save the history: {e}"),
        |()| format!("whole history in {}", file.display()),
    );
    panic!("{report}{saved}");
}

fn linearizable_under(faults: Faults) {
    let seed = chaos::seed();
    let server = Server::start(&["--fault-injection"]);
    let clock = Clock::start();
    for number in 0..ROUNDS {
        let round = Round::new(number);
        let round_seed = seed.wrapping_add(number);
        let (ops, injected) = record(&server, &round, faults, round_seed, clock);
        if faults != Faults::None {
            assert!(
                !injected.is_empty(),
                "{faults:?} seed {seed}: no fault injected"
            );
        }
        verify(&ops, &round, &injected, faults, seed);
    }
}

#[test]
fn counts_are_linearizable() {
    linearizable_under(Faults::None);
}

#[test]
fn counts_are_linearizable_while_the_master_then_a_replica_crash_and_restart() {
    linearizable_under(Faults::CrashRestart);
}

#[test]
fn counts_are_linearizable_while_nodes_stall() {
    linearizable_under(Faults::Stall);
}

#[test]
fn counts_are_linearizable_while_nodes_disconnect() {
    linearizable_under(Faults::Disconnect);
}
