//! A linearizability checker for the counter's model, after Wing & Gong with
//! Lowe's memoization: a depth-first search for a legal order of the
//! operations of a recorded history that respects real time, skipping any
//! (set of operations linearized, state) it has already explored.
//!
//! The model: a map from a few IDs (at most [`MAX_IDS`]) to a few tenants
//! (at most [`MAX_TENANTS`]). A write applies a batch of (ID, tenant) pairs
//! as one step (later pairs win); a read of a tenant returns how many IDs
//! it has. A write that got 200 happened exactly once, between its call and
//! its answer. A write whose outcome is unknown (503, transport error) may
//! have happened at any point after its call, or never. Failed reads are
//! left out of the history.
//!
//! Linearizability here implies what the issue asks of reads one by one:
//! every acknowledged write is seen by reads sent after its 200, no read
//! sees part of a batch, and reads never go back in time.
#![allow(dead_code)]

use std::collections::HashSet;
use std::fmt::{self, Write as _};

/// IDs are `0..MAX_IDS`: four bits of state each.
pub const MAX_IDS: usize = 16;
/// Tenants are `0..MAX_TENANTS` (a slot holds tenant + 1; zero is "no item").
pub const MAX_TENANTS: usize = 15;

/// ID → tenant for every ID, four bits an ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct State(u64);

impl State {
    pub fn tenant_of(self, id: u8) -> Option<u8> {
        let slot = (self.0 >> (4 * id)) & 0xF;
        (slot != 0).then(|| slot as u8 - 1)
    }

    fn with(self, id: u8, tenant: u8) -> State {
        assert!(usize::from(id) < MAX_IDS && usize::from(tenant) < MAX_TENANTS);
        let shift = 4 * id;
        State((self.0 & !(0xF << shift)) | (u64::from(tenant) + 1) << shift)
    }

    pub fn apply(self, items: &[(u8, u8)]) -> State {
        items
            .iter()
            .fold(self, |state, &(id, tenant)| state.with(id, tenant))
    }

    pub fn count(self, tenant: u8) -> u32 {
        (0..MAX_IDS as u8)
            .filter(|&id| self.tenant_of(id) == Some(tenant))
            .count() as u32
    }
}

/// What a client asked, and what it learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `POST /items` of these (ID, tenant) pairs.
    Write(Vec<(u8, u8)>),
    /// `GET /items/{tenant}/count` answered `count`.
    Read { tenant: u8, count: u32 },
}

/// One operation of a history. Instants are nanoseconds on one monotonic
/// clock shared by every client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub client: usize,
    pub call: Call,
    /// When the request was about to be sent.
    pub invoked: u64,
    /// When the answer had arrived; `None` for a write whose outcome is
    /// unknown (it may take effect at any later point, or never).
    pub answered: Option<u64>,
}

impl Op {
    pub fn write(client: usize, items: &[(u8, u8)], invoked: u64, answered: Option<u64>) -> Op {
        Op {
            client,
            call: Call::Write(items.to_vec()),
            invoked,
            answered,
        }
    }

    pub fn read(client: usize, tenant: u8, count: u32, invoked: u64, answered: u64) -> Op {
        Op {
            client,
            call: Call::Read { tenant, count },
            invoked,
            answered: Some(answered),
        }
    }

    /// A write of unknown outcome: it need not be linearized.
    fn is_optional(&self) -> bool {
        self.answered.is_none()
    }
}

/// How a write of unknown outcome may take effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// Whole, or not at all: what the issue asks.
    Whole,
    /// Any subset of its items as one step (what was stored before it
    /// failed; subsets of the first 12 items only), to tell whether a
    /// failure is explained by a partly stored batch.
    AnyPart,
}

/// The states an operation may lead to from `state`; empty if it cannot
/// happen there (a read that does not match).
fn successors(state: State, op: &Op, unknown: Unknown) -> Vec<State> {
    match &op.call {
        Call::Read { tenant, count } => {
            if state.count(*tenant) == *count {
                vec![state]
            } else {
                Vec::new()
            }
        }
        Call::Write(items) if op.is_optional() && unknown == Unknown::AnyPart => {
            // Every non-empty subset, in item order (later items still win);
            // the empty one is "never happened", covered by not linearizing.
            let mut states: Vec<State> = (1..1u32 << items.len().min(12))
                .map(|mask| {
                    let part: Vec<(u8, u8)> = items
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| mask & (1 << i) != 0)
                        .map(|(_, &item)| item)
                        .collect();
                    state.apply(&part)
                })
                .collect();
            states.sort_by_key(|s| s.0);
            states.dedup();
            states
        }
        Call::Write(items) => vec![state.apply(items)],
    }
}

/// A set of operations, by index.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(len: usize) -> Bits {
        Bits(vec![0; len.div_ceil(64)])
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// The calls and answers of a history, in time order, as a doubly linked
/// list that operations are taken out of while linearized ("lifted") and
/// put back in on backtracking.
struct Events {
    /// `(op, is_call)`; index 0 is the head sentinel.
    event: Vec<(usize, bool)>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Per op: its call event, and its answer event if it has one.
    call_of: Vec<usize>,
    answer_of: Vec<Option<usize>>,
}

const NIL: usize = usize::MAX;

impl Events {
    fn new(ops: &[Op]) -> Events {
        // At equal instants, calls come first: such operations overlap.
        let mut times: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            times.push((op.invoked, false, i));
            if let Some(answered) = op.answered {
                times.push((answered.max(op.invoked), true, i));
            }
        }
        times.sort_unstable();
        let len = times.len() + 1;
        let mut events = Events {
            event: vec![(NIL, false)],
            next: (1..=len).map(|i| if i == len { NIL } else { i }).collect(),
            prev: (0..len).map(|i| i.wrapping_sub(1)).collect(),
            call_of: vec![0; ops.len()],
            answer_of: vec![None; ops.len()],
        };
        events.prev[0] = NIL;
        for (position, (_, is_answer, op)) in times.into_iter().enumerate() {
            let index = position + 1;
            events.event.push((op, !is_answer));
            if is_answer {
                events.answer_of[op] = Some(index);
            } else {
                events.call_of[op] = index;
            }
        }
        events
    }

    fn first(&self) -> usize {
        self.next[0]
    }

    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        if n != NIL {
            self.prev[n] = e;
        }
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call_of[op]);
        if let Some(answer) = self.answer_of[op] {
            self.unlink(answer);
        }
    }

    fn unlift(&mut self, op: usize) {
        if let Some(answer) = self.answer_of[op] {
            self.relink(answer);
        }
        self.relink(self.call_of[op]);
    }
}

/// What the search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A legal order: operation indexes, in linearization order (optional
    /// writes that never happened are left out).
    Linearizable(Vec<usize>),
    /// No legal order exists.
    NotLinearizable,
    /// The search took more than this many steps (too many operations
    /// overlap): undecided.
    GaveUp(u64),
}

/// Most search steps before [`Verdict::GaveUp`].
pub const STEP_BUDGET: u64 = 50_000_000;

/// Searches for a legal order of `ops`, from the empty map.
pub fn check(ops: &[Op], unknown: Unknown) -> Verdict {
    struct Frame {
        op: usize,
        call_event: usize,
        before: State,
        alternative: usize,
    }
    let required = ops.iter().filter(|op| !op.is_optional()).count();
    let mut events = Events::new(ops);
    let mut linearized = Bits::new(ops.len());
    let mut done_required = 0;
    let mut seen: HashSet<(Bits, State)> = HashSet::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut state = State::default();
    let mut entry = events.first();
    let mut first_alternative = 0;
    let mut steps = 0u64;
    loop {
        if done_required == required {
            return Verdict::Linearizable(stack.iter().map(|frame| frame.op).collect());
        }
        steps += 1;
        if steps > STEP_BUDGET {
            return Verdict::GaveUp(steps);
        }
        let at_call = entry != NIL && events.event[entry].1;
        if at_call {
            let op = events.event[entry].0;
            let next_states = successors(state, &ops[op], unknown);
            let mut advanced = false;
            linearized.set(op);
            for (alternative, &after) in next_states.iter().enumerate().skip(first_alternative) {
                if seen.insert((linearized.clone(), after)) {
                    stack.push(Frame {
                        op,
                        call_event: entry,
                        before: state,
                        alternative,
                    });
                    state = after;
                    events.lift(op);
                    if !ops[op].is_optional() {
                        done_required += 1;
                    }
                    entry = events.first();
                    first_alternative = 0;
                    advanced = true;
                    break;
                }
            }
            if !advanced {
                linearized.clear(op);
                entry = events.next[entry];
                first_alternative = 0;
            }
        } else {
            // An answer (or the end) reached: the operation it closes was
            // not linearized in time. Undo the last choice, try the next.
            let Some(frame) = stack.pop() else {
                return Verdict::NotLinearizable;
            };
            events.unlift(frame.op);
            linearized.clear(frame.op);
            if !ops[frame.op].is_optional() {
                done_required -= 1;
            }
            state = frame.before;
            entry = frame.call_event;
            first_alternative = frame.alternative + 1;
        }
    }
}

/// Whether `ops` is linearizable (a search that gave up counts as not).
pub fn is_linearizable(ops: &[Op], unknown: Unknown) -> bool {
    matches!(check(ops, unknown), Verdict::Linearizable(_))
}

/// The operations `which` (indexes into `ops`) as they stood at `instant`:
/// those invoked by then, where a write still unanswered becomes of unknown
/// outcome and a read still unanswered is left out. If a history is
/// linearizable, so is every such prefix; so the earliest prefix that is
/// not points at the culprit.
fn cut(ops: &[Op], which: &[usize], instant: u64) -> Vec<Op> {
    which
        .iter()
        .map(|&i| &ops[i])
        .filter(|op| op.invoked <= instant)
        .filter_map(|op| match (&op.call, op.answered) {
            (_, Some(answered)) if answered <= instant => Some(op.clone()),
            (Call::Write(_), _) => Some(Op {
                answered: None,
                ..op.clone()
            }),
            (Call::Read { .. }, _) => None,
        })
        .collect()
}

/// The whole history as it stood at `instant` (see [`cut`]).
pub fn prefix(ops: &[Op], instant: u64) -> Vec<Op> {
    cut(ops, &(0..ops.len()).collect::<Vec<_>>(), instant)
}

/// Why a history is not linearizable, small enough to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The earliest answer at which the history stops being linearizable.
    pub cut: u64,
    /// The operation answered then (an index into the history): no legal
    /// order of what came before fits its answer.
    pub culprit: usize,
    /// The operations of the history up to `cut` that the failure needs:
    /// every write invoked by then, and the reads that cannot be left out.
    /// Leaving a read out cannot make a linearizable history fail, so
    /// these alone are evidence.
    pub kept: Vec<usize>,
    /// If the culprit is a read: the counts it could have answered.
    pub allowed: Option<Vec<u32>>,
}

/// `None` if `ops` is linearizable; else the earliest failing prefix, with
/// the reads it does not need left out.
pub fn explain(ops: &[Op], unknown: Unknown) -> Option<Failure> {
    if is_linearizable(ops, unknown) {
        return None;
    }
    let mut answers: Vec<u64> = ops.iter().filter_map(|op| op.answered).collect();
    answers.sort_unstable();
    answers.dedup();
    // The prefixes fail from some answer on: binary search for it. The
    // whole history fails, so it exists.
    let (mut low, mut high) = (0, answers.len() - 1);
    while low < high {
        let middle = (low + high) / 2;
        if is_linearizable(&prefix(ops, answers[middle]), unknown) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    let instant = answers[low];
    let culprit = ops
        .iter()
        .position(|op| op.answered == Some(instant))
        .expect("an operation answered at each answer instant");
    let allowed = match ops[culprit].call {
        Call::Read { tenant, .. } => Some(
            (0..=MAX_IDS as u32)
                .filter(|&count| {
                    let mut changed = ops.to_vec();
                    changed[culprit].call = Call::Read { tenant, count };
                    is_linearizable(&prefix(&changed, instant), unknown)
                })
                .collect(),
        ),
        Call::Write(_) => None,
    };
    let mut kept: Vec<usize> = (0..ops.len())
        .filter(|&i| ops[i].invoked <= instant)
        .collect();
    for position in (0..kept.len()).rev() {
        if matches!(ops[kept[position]].call, Call::Read { .. }) {
            let mut without = kept.clone();
            without.remove(position);
            if !is_linearizable(&cut(ops, &without, instant), unknown) {
                kept = without;
            }
        }
    }
    Some(Failure {
        cut: instant,
        culprit,
        kept,
        allowed,
    })
}

/// Names for printing a history: tenant index → name; IDs print as given.
pub struct Names<'a> {
    pub tenants: &'a [String],
    /// Added to an ID to print the ID the server saw.
    pub id_base: i64,
}

/// One line per operation of `which` (indexes into `ops`), in invocation
/// order, times in ms from `zero`; with a failure, what it points at.
pub fn render(
    ops: &[Op],
    which: &[usize],
    failure: Option<&Failure>,
    names: &Names<'_>,
    zero: u64,
) -> String {
    let mut sorted = which.to_vec();
    sorted.sort_by_key(|&i| (ops[i].invoked, ops[i].answered));
    let ms = |t: u64| t.saturating_sub(zero) as f64 / 1e6;
    let tenant = |t: u8| {
        names
            .tenants
            .get(usize::from(t))
            .map_or("?", String::as_str)
    };
    let mut out = String::new();
    for i in sorted {
        let op = &ops[i];
        let answered = op
            .answered
            .map_or_else(|| "       ?".to_string(), |t| format!("{:8.3}", ms(t)));
        let _ = write!(
            out,
            "  client {} [{:8.3} .. {answered} ms] ",
            op.client,
            ms(op.invoked)
        );
        match &op.call {
            Call::Write(items) => {
                let items: Vec<String> = items
                    .iter()
                    .map(|&(id, t)| format!("{}→{}", names.id_base + i64::from(id), tenant(t)))
                    .collect();
                let outcome = match (op.answered, failure) {
                    (None, _) => "failed (503 or no answer)",
                    (Some(answered), Some(f)) if answered > f.cut => "200, after the cut",
                    (Some(_), _) => "200",
                };
                let _ = write!(out, "write [{}] {outcome}", items.join(", "));
            }
            Call::Read { tenant: t, count } => {
                let _ = write!(out, "read count({}) = {count}", tenant(*t));
            }
        }
        if let Some(failure) = failure.filter(|f| f.culprit == i) {
            let _ = write!(out, "   <-- no legal order fits this");
            if let Some(allowed) = &failure.allowed {
                let _ = write!(out, " (it could have read {allowed:?})");
            }
        }
        out.push('\n');
    }
    out
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable(order) => {
                write!(f, "linearizable ({} operations ordered)", order.len())
            }
            Verdict::NotLinearizable => f.write_str("not linearizable"),
            Verdict::GaveUp(steps) => write!(f, "undecided after {steps} search steps"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u8 = 0;
    const B: u8 = 1;

    fn w(client: usize, items: &[(u8, u8)], from: u64, to: u64) -> Op {
        Op::write(client, items, from, Some(to))
    }

    fn unknown(client: usize, items: &[(u8, u8)], from: u64) -> Op {
        Op::write(client, items, from, None)
    }

    fn r(client: usize, tenant: u8, count: u32, from: u64, to: u64) -> Op {
        Op::read(client, tenant, count, from, to)
    }

    #[test]
    fn the_model_applies_batches_with_later_items_winning() {
        let state = State::default().apply(&[(0, A), (1, A), (0, B)]);
        assert_eq!((state.count(A), state.count(B)), (1, 1));
        assert_eq!(state.tenant_of(0), Some(B));
        assert_eq!(state.tenant_of(2), None);
        let state = state.apply(&[(15, 14)]);
        assert_eq!((state.tenant_of(15), state.count(14)), (Some(14), 1));
    }

    #[test]
    fn reads_overlapping_a_batch_see_all_or_nothing_of_it() {
        // The flip: IDs 0 and 1 move from a to b while reads overlap it.
        let ops = vec![
            w(0, &[(0, A), (1, A)], 0, 10),
            w(0, &[(0, B), (1, B)], 20, 40),
            r(1, A, 2, 15, 30),
            r(2, A, 0, 25, 35),
            r(1, B, 2, 31, 45),
            r(2, A, 0, 41, 50),
        ];
        assert!(matches!(
            check(&ops, Unknown::Whole),
            Verdict::Linearizable(_)
        ));
    }

    #[test]
    fn a_read_of_half_a_batch_is_caught() {
        let ops = vec![
            w(0, &[(0, A), (1, A)], 0, 10),
            w(0, &[(0, B), (1, B)], 20, 40),
            r(1, A, 1, 25, 30),
        ];
        assert_eq!(check(&ops, Unknown::Whole), Verdict::NotLinearizable);
    }

    #[test]
    fn a_read_sent_after_a_200_must_see_the_write() {
        let ops = vec![w(0, &[(3, A)], 0, 10), r(1, A, 0, 11, 12)];
        assert_eq!(check(&ops, Unknown::Whole), Verdict::NotLinearizable);
        // Overlapping the write instead, either answer is fine.
        for count in [0, 1] {
            let ops = vec![w(0, &[(3, A)], 0, 10), r(1, A, count, 9, 12)];
            assert!(is_linearizable(&ops, Unknown::Whole), "count {count}");
        }
    }

    #[test]
    fn reads_do_not_go_back_in_time() {
        // Both reads overlap the write, but the second starts after the
        // first saw the write: it cannot miss it.
        let ops = vec![
            w(0, &[(0, A)], 0, 100),
            r(1, A, 1, 10, 20),
            r(2, A, 0, 30, 40),
        ];
        assert_eq!(check(&ops, Unknown::Whole), Verdict::NotLinearizable);
    }

    #[test]
    fn concurrent_writes_take_one_order_that_every_read_agrees_on() {
        let ops = vec![
            w(0, &[(0, A)], 0, 50),
            w(1, &[(0, B)], 0, 50),
            r(2, A, 1, 60, 70),
            r(3, B, 0, 60, 70),
        ];
        assert!(is_linearizable(&ops, Unknown::Whole));
        let disagreeing = vec![
            w(0, &[(0, A)], 0, 50),
            w(1, &[(0, B)], 0, 50),
            r(2, A, 1, 60, 70),
            r(3, B, 1, 71, 80),
        ];
        assert_eq!(
            check(&disagreeing, Unknown::Whole),
            Verdict::NotLinearizable
        );
    }

    #[test]
    fn a_write_of_unknown_outcome_happens_once_after_its_call_or_never() {
        let seen_late = vec![
            unknown(0, &[(0, A), (1, A)], 10),
            r(1, A, 0, 20, 30),
            r(1, A, 2, 1_000, 1_010),
            r(2, A, 2, 2_000, 2_010),
        ];
        assert!(is_linearizable(&seen_late, Unknown::Whole));
        let never = vec![unknown(0, &[(0, A)], 10), r(1, A, 0, 20, 30)];
        assert!(is_linearizable(&never, Unknown::Whole));
        let before_its_call = vec![r(1, A, 1, 0, 5), unknown(0, &[(0, A)], 10)];
        assert_eq!(
            check(&before_its_call, Unknown::Whole),
            Verdict::NotLinearizable
        );
        let gone_again = vec![
            unknown(0, &[(0, A)], 10),
            r(1, A, 1, 20, 30),
            r(1, A, 0, 40, 50),
        ];
        assert_eq!(check(&gone_again, Unknown::Whole), Verdict::NotLinearizable);
    }

    #[test]
    fn part_of_an_unknown_write_is_allowed_only_when_asked_for() {
        let ops = vec![
            w(0, &[(0, A), (1, A)], 0, 10),
            unknown(0, &[(0, B), (1, B)], 20),
            r(1, A, 1, 30, 40),
        ];
        assert_eq!(check(&ops, Unknown::Whole), Verdict::NotLinearizable);
        assert!(is_linearizable(&ops, Unknown::AnyPart));
    }

    #[test]
    fn the_order_found_respects_real_time() {
        let ops = vec![
            w(0, &[(0, A)], 0, 10),
            r(1, A, 1, 5, 30),
            w(0, &[(0, B)], 20, 25),
            r(1, A, 0, 31, 40),
        ];
        let Verdict::Linearizable(order) = check(&ops, Unknown::Whole) else {
            panic!("linearizable");
        };
        assert_eq!(order, vec![0, 1, 2, 3]);
    }

    #[test]
    fn a_failure_is_cut_at_its_culprit_without_innocent_reads() {
        const MS: u64 = 1_000_000;
        let mut ops = vec![w(0, &[(0, A), (1, A)], 0, 10 * MS)];
        for i in 0..20 {
            ops.push(r(1, A, 2, (11 + i * 10) * MS, (15 + i * 10) * MS));
        }
        ops.push(w(0, &[(0, B), (1, B)], 300 * MS, 400 * MS));
        ops.push(r(2, B, 1, 350 * MS, 360 * MS));
        ops.push(r(1, B, 2, 500 * MS, 510 * MS));
        let failure = explain(&ops, Unknown::Whole).expect("not linearizable");
        assert_eq!(failure.cut, 360 * MS);
        assert_eq!(failure.culprit, 22);
        assert_eq!(failure.kept, vec![0, 21, 22]);
        assert_eq!(failure.allowed, Some(vec![0, 2]));
        let names = Names {
            tenants: &["a".to_string(), "b".to_string()],
            id_base: 100,
        };
        let listing = render(&ops, &failure.kept, Some(&failure), &names, 0);
        let expected = [
            "  client 0 [   0.000 ..   10.000 ms] write [100→a, 101→a] 200",
            "  client 0 [ 300.000 ..  400.000 ms] write [100→b, 101→b] 200, after the cut",
            "  client 2 [ 350.000 ..  360.000 ms] read count(b) = 1   \
             <-- no legal order fits this (it could have read [0, 2])",
        ];
        assert_eq!(listing, expected.map(|line| format!("{line}\n")).concat());
        assert!(explain(&ops[..22], Unknown::Whole).is_none());
    }

    #[test]
    fn a_long_history_of_a_few_clients_checks_fast() {
        // Four clients, each doing writes and reads that a sequential run
        // would explain, overlapping pairwise: the search stays small.
        let mut ops = Vec::new();
        let mut state = State::default();
        let mut t = 0;
        for round in 0..250u64 {
            let id = (round % 5) as u8;
            let tenant = (round % 3) as u8;
            ops.push(w((round % 4) as usize, &[(id, tenant)], t, t + 15));
            state = state.apply(&[(id, tenant)]);
            let reader = ((round + 1) % 4) as usize;
            ops.push(r(reader, tenant, state.count(tenant), t + 16, t + 30));
            t += 20;
        }
        let started = std::time::Instant::now();
        assert!(is_linearizable(&ops, Unknown::Whole));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
