//! Model check of log matching (issue 15, `docs/log-matching.md`) with `stateright`: a BFS
//! bounded by `STATE_BUDGET` (not exhaustive; the doc gives the figures).
//!
//! Role: one fixed master and two secondaries, modelled *as the code does it*: the epoch
//! histories and their divergence points are the crate's own [`History`], the master's
//! knowledge of each secondary is the crate's own [`Progress`], and every other step (the
//! writer's `open_epoch`, `reconcile`, `adopt`; the replication task's `on_outcome` and
//! `on_health`; the recovery's `source` and startup wait; the ack tracker's `record` and
//! `reset_node`) is a transcription of the code named beside it. Faults: crash of any node
//! with power loss (an arbitrary unsynced tail of its log is lost; `kill -9` loses nothing),
//! wipe of a secondary, restart as a new incarnation, loss, duplication and reordering of
//! requests and answers, late answers of a replaced incarnation and late requests of a
//! replaced master process.
//!
//! Invariants checked (`always`), in the doc's names:
//! * `LabelsTrue`: every entry a node holds at key `k` was assigned by the master of epoch
//!   `label(k)` of that node's history;
//! * `LogMatching`: two nodes hold the same message at every key below the divergence point
//!   of their histories that both hold ("reconciled" = their histories label those keys
//!   alike);
//! * `AcksAreHeld`: when an append is answered, every node the ack tracker counts for its key
//!   holds it, unless the master has not yet heard of that node's newest incarnation (a node
//!   that crashed an instant ago cannot be known to have); and, stronger, at every state the
//!   tracker counts a secondary only for keys its incarnation known to the master holds;
//! * `NoGap`: the master's log never has a key beyond its contiguous key;
//! * `Durable`: an acknowledged message is never lost (no node holds it, or the master holds
//!   another message under its key) except as the README's "Durability" section allows: every
//!   node that held it lost it to its own power loss or wipe (so `w = 1` and a master power
//!   loss), or, after the master lost it, every secondary that held it stayed away for the
//!   whole recovery wait or held it only behind a gap of keys nobody else held.
//!
//! The `sometimes` properties show the interesting states are reached (a cut, an epoch opened
//! over keys a power loss took, an ack with `w = 3`, a late answer, an adoption, a refused
//! stale request), so the checks are not vacuous.

use std::collections::BTreeSet;

use replog::domain::epoch::History;
use replog::master::replication::progress::Progress;
use replog::protocol::BatchAck;
use stateright::{Checker, Model, Property};

/// Node indices: 0 is the master, 1 and 2 the secondaries.
const NODES: usize = 3;
/// Most keys a batch may carry (`replication.max_batch_entries`; small, so batches split).
const MAX_BATCH: usize = 16;
/// States explored per check: the full space of even this configuration is larger than a
/// debug run can finish in a minute (see `docs/log-matching.md`): the check is bounded, not
/// exhaustive, until the space is cut down further.
const STATE_BUDGET: usize = 4_000_000;

/// One node's disk and process.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Node {
    /// Log records in write order: `(key, message)`. A cut fsyncs and then voids records,
    /// so it is applied by removing them (nothing before it can be lost afterwards).
    recs: Vec<(u64, u8)>,
    /// How many of `recs` an fsync covered: a power loss keeps at least these.
    synced: usize,
    /// The `epochs` file (always fsynced before it counts): the node's epoch and history.
    current: u64,
    history: History,
    /// Incarnation number (a fresh random id per start in the code; here a counter).
    inc: u8,
    up: bool,
}

impl Node {
    fn new() -> Self {
        Node {
            recs: Vec::new(),
            synced: 0,
            current: 0,
            history: History::new(),
            inc: 1,
            up: true,
        }
    }

    fn held(&self, key: u64) -> Option<u8> {
        self.recs.iter().find(|r| r.0 == key).map(|r| r.1)
    }

    /// The contiguous key (what the node publishes and reports).
    fn contiguous(&self) -> u64 {
        let mut k = 0;
        while self.held(k + 1).is_some() {
            k += 1;
        }
        k
    }

    /// `LogStore::put`: a conflict anywhere stores nothing; held keys are skipped.
    fn put(&mut self, entries: &[(u64, u8)]) -> Result<usize, ()> {
        if entries
            .iter()
            .any(|&(k, m)| self.held(k).is_some_and(|h| h != m))
        {
            return Err(());
        }
        let mut n = 0;
        for &(k, m) in entries {
            if self.held(k).is_none() {
                self.recs.push((k, m));
                n += 1;
            }
        }
        Ok(n)
    }

    /// `LogStore::cut_from`: fsync, then void every record with key ≥ `from`.
    fn cut_from(&mut self, from: u64) -> usize {
        let before = self.recs.len();
        self.recs.retain(|r| r.0 < from);
        self.synced = self.recs.len();
        before - self.recs.len()
    }

    /// `GET /replicate` from `from`: visible (contiguous) entries.
    fn read_from(&self, from: u64) -> Vec<(u64, u8)> {
        (from..=self.contiguous())
            .filter_map(|k| self.held(k).map(|m| (k, m)))
            .collect()
    }
}

/// What a heartbeat answer told the master (`HealthView`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct View {
    inc: u8,
    contiguous: u64,
    history: History,
    /// `Progress::switches` when the heartbeat went out (`HealthView::asked_in`).
    asked_in: u64,
}

/// A master process (`crate::node::startup` + writer + replication tasks + recovery).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Proc {
    id: u8,
    /// The writer's `epoch`, and whether it is open (`assigned_keys`).
    epoch: u64,
    open: bool,
    /// Appends refused with 503 `recovering` (startup wait).
    recovering: bool,
    /// Per secondary (index 0 = node 1): heartbeat view, heartbeat answer in flight (taken by
    /// the secondary when it answered: possibly from an incarnation that died since), the
    /// replication task's progress and `seen_instance`.
    views: [Option<View>; 2],
    hb: [Option<View>; 2],
    prog: [Progress; 2],
    seen: [Option<(u8, u64)>; 2],
    /// Ghost: the newest incarnation of each secondary this process has heard of in an answer
    /// to a request sent since its last incarnation switch (`Progress::switches`): an answer
    /// to an older request may be older than the incarnation the master runs with, so it
    /// cannot tell the master which is newest.
    learnt: [u8; 2],
    /// The ack tracker: keys counted per node (bit k), and its `last`.
    counted: [u8; NODES],
    tlast: u64,
    /// Appends waiting on their write concern: (message, key, w).
    pending: Vec<(u8, u64, u8)>,
}

/// A message on the network.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Net {
    /// `POST /replicate` from master process `proc` to secondary `s`.
    Rep {
        s: u8,
        proc: u8,
        epoch: u64,
        history: Vec<(u64, u64)>,
        lo: u64,
        msgs: Vec<u8>,
        last_then: u64,
        /// `Progress::switches` when it was sent (`Outcome::switches_then`).
        switches: u64,
    },
    /// Its 2xx answer.
    Ack {
        s: u8,
        proc: u8,
        inc: u8,
        contiguous: u64,
        lo: u64,
        hi: u64,
        last_then: u64,
        history_then: Vec<(u64, u64)>,
        switches: u64,
    },
}

/// Ghost knowledge of one appended message.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Ghost {
    key: u64,
    epoch: u64,
    /// The write concern it was answered with (0: not answered 201).
    w: u8,
    /// Nodes that held it since it was answered, and those of them that lost it to their own
    /// power loss or wipe.
    held_ever: u8,
    faulted: u8,
    /// A documented exception applies (recovery wait, gap).
    excused: bool,
    lost: bool,
}

const BAD_ACK: u8 = 1;
const BAD_LOSS: u8 = 2;

/// Events the last step caused (for `sometimes`).
const EV_CUT: u8 = 1;
const EV_REOPEN: u8 = 2;
const EV_LATE: u8 = 4;
const EV_ADOPT: u8 = 8;
const EV_REFUSED: u8 = 16;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct St {
    nodes: [Node; NODES],
    master: Option<Proc>,
    procs: u8,
    net: BTreeSet<Net>,
    ghosts: Vec<Ghost>,
    crashes: u8,
    master_crashes: u8,
    wipes: u8,
    drops: u8,
    dups: u8,
    bad: u8,
    event: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Act {
    Append(u8),
    Sync(usize),
    HbAnswer(usize),
    HbDeliver(usize),
    Send(usize),
    GoBack(usize),
    Deliver(Net),
    Dup(Net),
    Drop(Net),
    Adopt(usize),
    RecoveryDone,
    RecoveryTimeout,
    Crash(usize, usize),
    Wipe(usize),
    Restart(usize),
}

/// One check: how many appends and which faults (each a budget for the whole run).
#[derive(Clone, Debug)]
struct Lm {
    appends: u8,
    ws: Vec<u8>,
    master_crashes: u8,
    crashes: u8,
    wipes: u8,
    drops: u8,
    dups: u8,
    /// Whether a power loss may lose an unsynced tail (else crashes are `kill -9` only).
    power_loss: bool,
    max_net: usize,
}

fn bit(k: u64) -> u8 {
    1 << k
}

fn h(pairs: &[(u64, u64)]) -> History {
    History::from_pairs(pairs.to_vec()).expect("histories in the model are well formed")
}

impl Proc {
    /// `Writer::become_master` (epoch: the next after every one seen, on disk first) and a
    /// fresh process's state; `unclean`: the startup wait of `crate::master::recovery`.
    fn start(id: u8, node: &mut Node, unclean: bool) -> Proc {
        let epoch = node.current.max(node.history.last_epoch()) + 1;
        node.current = epoch;
        let last = node.contiguous();
        let all = (1..=last).fold(0, |m, k| m | bit(k));
        Proc {
            id,
            epoch,
            open: false,
            recovering: unclean,
            views: [None, None],
            hb: [None, None],
            prog: [Progress::new(), Progress::new()],
            seen: [None, None],
            learnt: [0, 0],
            counted: [all, 0, 0],
            tlast: last,
            pending: Vec::new(),
        }
    }

    /// `TailRecovery::source`: the secondary holding the most keys beyond the master's that
    /// both histories label alike (ties: the last, as `max_by_key`).
    fn source(&self, master: &Node) -> Option<usize> {
        if self.open {
            return None;
        }
        let last = master.contiguous();
        self.views
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let v = v.as_ref()?;
                let k = [
                    Some(v.contiguous),
                    master.history.divergence(&v.history).map(|d| d - 1),
                ]
                .into_iter()
                .flatten()
                .min()?;
                (k > last).then_some((i, k))
            })
            .max_by_key(|&(_, k)| k)
            .map(|(i, _)| i)
    }

    fn record(&mut self, node: usize, lo: u64, hi: u64) {
        for k in lo.max(1)..=hi.min(self.tlast) {
            self.counted[node] |= bit(k);
        }
    }

    fn reset_node(&mut self, node: usize, holds: u64) {
        self.counted[node] = 0;
        self.record(node, 1, holds);
    }

    fn acks(&self, key: u64) -> u8 {
        self.counted.iter().filter(|c| *c & bit(key) != 0).count() as u8
    }

    /// `ReplicationTask::on_health` for secondary `i` with its view of now.
    fn on_health(&mut self, i: usize, last: u64, own: &History) {
        let Some(view) = self.views[i].clone() else {
            return;
        };
        if self.seen[i] == Some((view.inc, view.asked_in)) {
            return;
        }
        self.seen[i] = Some((view.inc, view.asked_in));
        let d = own.divergence(&view.history);
        let contiguous = view.contiguous.min(last).min(d.map_or(u64::MAX, |d| d - 1));
        let inc = view.inc.to_string();
        if self.prog[i].instance() != Some(inc.as_str())
            && self.prog[i].become_incarnation(&inc, contiguous, view.asked_in)
        {
            self.reset_node(i + 1, contiguous);
        }
    }
}

impl Lm {
    /// After every step: ghost bookkeeping for `Durable`, and the appends answered.
    fn settle(&self, s: &mut St, before: &St, faulted_node: Option<usize>) {
        // Answer appends whose write concern is met (`AckTracker::wait`).
        if let Some(p) = s.master.as_mut() {
            let mut keep = Vec::new();
            for (m, k, w) in std::mem::take(&mut p.pending) {
                if p.acks(k) < w {
                    keep.push((m, k, w));
                    continue;
                }
                // `AcksAreHeld`: every node counted for it holds it, unless the master has not
                // heard of that node's newest incarnation yet.
                for n in 0..NODES {
                    if p.counted[n] & bit(k) == 0 {
                        continue;
                    }
                    let node = &s.nodes[n];
                    let knowable = n == 0 || (node.up && node.inc == p.learnt[n - 1]);
                    if knowable && node.held(k) != Some(m) {
                        s.bad |= BAD_ACK;
                    }
                }
                let g = &mut s.ghosts[m as usize - 1];
                g.w = w;
                g.held_ever = 0;
                g.faulted = 0;
            }
            p.pending = keep;
        }
        // Durability ghosts.
        for gi in 0..s.ghosts.len() {
            let m = gi as u8 + 1;
            let g = s.ghosts[gi].clone();
            if g.w == 0 || g.lost {
                continue;
            }
            let mut ng = g.clone();
            for n in 0..NODES {
                let now = s.nodes[n].held(g.key) == Some(m);
                let was = before.nodes[n].held(g.key) == Some(m);
                if now {
                    ng.held_ever |= 1 << n;
                    ng.faulted &= !(1 << n);
                } else if was && faulted_node == Some(n) {
                    ng.faulted |= 1 << n;
                    // README: a message acknowledged with w=1 may be lost to a power loss of
                    // the master, whoever else held it.
                    if n == 0 && g.w == 1 {
                        ng.excused = true;
                    }
                }
            }
            let holders = (0..NODES).any(|n| s.nodes[n].held(g.key) == Some(m));
            let overwritten = s.nodes[0].held(g.key).is_some_and(|x| x != m);
            if !holders || overwritten {
                ng.lost = true;
                if !(ng.excused || ng.held_ever & !ng.faulted == 0) {
                    s.bad |= BAD_LOSS;
                }
            }
            s.ghosts[gi] = ng;
        }
    }

    /// The documented exceptions, judged when the master comes back (`at_start`) and when its
    /// recovery wait runs out: for an acknowledged message the master no longer holds, every
    /// secondary that holds it holds it behind a gap of keys nobody else holds, or (at the
    /// timeout) has not been heard from.
    fn excuse(&self, s: &mut St, at_timeout: bool) {
        for gi in 0..s.ghosts.len() {
            let m = gi as u8 + 1;
            let g = &s.ghosts[gi];
            if g.w == 0 || g.lost || s.nodes[0].held(g.key) == Some(m) {
                continue;
            }
            let key = g.key;
            let held_by_none = |j: u64| (0..NODES).all(|n| s.nodes[n].held(j).is_none());
            let all_excused = (1..NODES).all(|n| {
                let node = &s.nodes[n];
                if node.held(key) != Some(m) {
                    return true;
                }
                let behind_gap = (node.contiguous() + 1..key).any(held_by_none);
                let away =
                    at_timeout && s.master.as_ref().is_some_and(|p| p.views[n - 1].is_none());
                behind_gap || away
            });
            if all_excused {
                s.ghosts[gi].excused = true;
            }
        }
    }
}

impl Lm {
    /// A message arrives.
    fn deliver(&self, s: &mut St, msg: &Net) {
        match msg {
            Net::Rep {
                s: to,
                proc,
                epoch,
                history,
                lo,
                msgs,
                last_then,
                switches,
            } => {
                // `http::secondary::replicate` → `WriterTask::store_replicated`.
                let node = &mut s.nodes[*to as usize];
                if !node.up {
                    return;
                }
                let theirs = h(history);
                let entries: Vec<(u64, u8)> = (*lo..).zip(msgs.iter().copied()).collect();
                match reconcile(node, *epoch, &theirs, &entries) {
                    Ok(cut) => {
                        if cut > 0 {
                            s.event |= EV_CUT;
                        }
                    }
                    Err(()) => {
                        s.event |= EV_REFUSED;
                        return;
                    }
                }
                if node.put(&entries).is_err() {
                    return;
                }
                let ack = Net::Ack {
                    s: *to,
                    proc: *proc,
                    inc: node.inc,
                    contiguous: node.contiguous(),
                    lo: *lo,
                    hi: *lo + msgs.len() as u64 - 1,
                    last_then: *last_then,
                    history_then: history.clone(),
                    switches: *switches,
                };
                // Answers to a master process that is gone are lost with its connections.
                if s.master.as_ref().is_some_and(|p| p.id == *proc) {
                    s.net.insert(ack);
                }
            }
            Net::Ack {
                s: from,
                proc,
                inc,
                contiguous,
                lo,
                hi,
                last_then,
                history_then,
                switches,
            } => {
                // `ReplicationTask::on_outcome` (failover off).
                let i = *from as usize - 1;
                let late = s.nodes[*from as usize].inc != *inc || !s.nodes[*from as usize].up;
                let now = s.nodes[0].history.clone();
                let Some(p) = s.master.as_mut().filter(|p| p.id == *proc) else {
                    return;
                };
                if late {
                    s.event |= EV_LATE;
                }
                // Only an answer asked since the last switch can be known to be of the newest
                // incarnation (one asked before may be older than the current one).
                if *switches == p.prog[i].switches() {
                    p.learnt[i] = p.learnt[i].max(*inc);
                }
                let below = h(history_then).divergence(&now).map_or(u64::MAX, |k| k - 1);
                let ack = BatchAck {
                    contiguous_key: (*contiguous).min(*last_then).min(below),
                    instance: inc.to_string(),
                    stored: 0,
                    unlabelled_from: None,
                };
                let new_incarnation = p.prog[i].instance() != Some(ack.instance.as_str());
                if p.prog[i].on_ack(&ack, *lo, *hi, *switches) {
                    if new_incarnation {
                        p.reset_node(i + 1, ack.contiguous_key);
                    }
                    p.record(i + 1, *lo, *hi);
                }
            }
        }
    }
}

/// `WriterTask::reconcile`: Ok(entries cut) or Err (refused with 409).
fn reconcile(
    node: &mut Node,
    epoch: u64,
    theirs: &History,
    entries: &[(u64, u8)],
) -> Result<usize, ()> {
    if epoch < node.current {
        return Err(());
    }
    if *theirs == node.history {
        node.current = node.current.max(epoch);
        return Ok(0);
    }
    let d = node.history.divergence(theirs);
    if epoch == node.current
        && node.history.last_epoch() == node.current
        && theirs.last_epoch() < epoch
    {
        return match d {
            Some(d) if entries.iter().any(|e| e.0 >= d) => Err(()),
            _ => Ok(0),
        };
    }
    let cut = d.map_or(0, |d| node.cut_from(d));
    node.history = theirs.clone();
    node.current = node.current.max(epoch);
    Ok(cut)
}

impl Model for Lm {
    type State = St;
    type Action = Act;

    fn init_states(&self) -> Vec<St> {
        let mut nodes = [Node::new(), Node::new(), Node::new()];
        let master = Proc::start(1, &mut nodes[0], false);
        vec![St {
            nodes,
            master: Some(master),
            procs: 1,
            net: BTreeSet::new(),
            ghosts: Vec::new(),
            crashes: self.crashes,
            master_crashes: self.master_crashes,
            wipes: self.wipes,
            drops: self.drops,
            dups: self.dups,
            bad: 0,
            event: 0,
        }]
    }

    fn actions(&self, s: &St, acts: &mut Vec<Act>) {
        if let Some(p) = &s.master {
            let master = &s.nodes[0];
            if !p.recovering && (s.ghosts.len() as u8) < self.appends {
                for &w in &self.ws {
                    acts.push(Act::Append(w));
                }
            }
            for i in 0..2 {
                if s.nodes[i + 1].up && p.hb[i].is_none() {
                    acts.push(Act::HbAnswer(i));
                }
                if p.hb[i].is_some() && p.hb[i] != p.views[i] {
                    acts.push(Act::HbDeliver(i));
                }
                if p.prog[i].is_known() && s.net.len() < self.max_net {
                    let mut pr = p.prog[i].clone();
                    if pr.next_range(master.contiguous(), MAX_BATCH).is_some() {
                        acts.push(Act::Send(i));
                    }
                }
                // A retry after a failure: only once nothing of this secondary's is in flight.
                let mut back = p.prog[i].clone();
                back.go_back();
                let idle = !s.net.iter().any(|m| match m {
                    Net::Rep { s: t, .. } | Net::Ack { s: t, .. } => *t as usize == i + 1,
                });
                if idle && back != p.prog[i] {
                    acts.push(Act::GoBack(i));
                }
            }
            if let Some(i) = p.source(master)
                && s.nodes[i + 1].up
            {
                acts.push(Act::Adopt(i));
            }
            if p.recovering {
                if p.views.iter().all(Option::is_some) && p.source(master).is_none() {
                    acts.push(Act::RecoveryDone);
                }
                // The deadline is looked at after a recovery pass, which adopted from every
                // source heard of by then.
                if p.source(master).is_none() {
                    acts.push(Act::RecoveryTimeout);
                }
            }
        }
        for msg in &s.net {
            acts.push(Act::Deliver(msg.clone()));
            if s.dups > 0 {
                acts.push(Act::Dup(msg.clone()));
            }
            if s.drops > 0 {
                acts.push(Act::Drop(msg.clone()));
            }
        }
        for n in 0..NODES {
            let node = &s.nodes[n];
            if node.up {
                if node.synced < node.recs.len() {
                    acts.push(Act::Sync(n));
                }
                let budget = if n == 0 { s.master_crashes } else { s.crashes };
                if budget > 0 {
                    let from = if self.power_loss {
                        node.synced
                    } else {
                        node.recs.len()
                    };
                    // Losing all of the unsynced tail, or nothing of it (kill -9).
                    acts.push(Act::Crash(n, from));
                    if from < node.recs.len() {
                        acts.push(Act::Crash(n, node.recs.len()));
                    }
                }
            } else {
                acts.push(Act::Restart(n));
            }
            if n > 0 && s.wipes > 0 && (!node.recs.is_empty() || node.current > 0) {
                acts.push(Act::Wipe(n));
            }
        }
    }

    fn next_state(&self, before: &St, act: Act) -> Option<St> {
        let mut s = before.clone();
        s.event = 0;
        let mut faulted = None;
        match act {
            Act::Append(w) => {
                // `WriterTask::process`: open the epoch at the first key (history fsynced
                // first), then assign the key and write it.
                let p = s.master.as_mut()?;
                let node = &mut s.nodes[0];
                let key = node.contiguous() + 1;
                if !p.open {
                    let mut hist = node.history.clone();
                    hist.truncate_from(key);
                    hist.push(p.epoch, key).ok()?;
                    node.history = hist;
                    node.current = node.current.max(p.epoch);
                    p.open = true;
                    if s.ghosts.iter().any(|g| g.key >= key) {
                        s.event |= EV_REOPEN;
                    }
                }
                let m = s.ghosts.len() as u8 + 1;
                node.recs.push((key, m));
                p.tlast = p.tlast.max(key);
                p.counted[0] |= bit(key);
                p.pending.push((m, key, w));
                s.ghosts.push(Ghost {
                    key,
                    epoch: p.epoch,
                    w: 0,
                    held_ever: 0,
                    faulted: 0,
                    excused: false,
                    lost: false,
                });
            }
            Act::Sync(n) => s.nodes[n].synced = s.nodes[n].recs.len(),
            Act::HbAnswer(i) => {
                let node = &s.nodes[i + 1];
                let p = s.master.as_mut()?;
                let view = View {
                    inc: node.inc,
                    contiguous: node.contiguous(),
                    history: node.history.clone(),
                    asked_in: p.prog[i].switches(),
                };
                p.hb[i] = Some(view);
            }
            Act::HbDeliver(i) => {
                let last = s.nodes[0].contiguous();
                let own = s.nodes[0].history.clone();
                let p = s.master.as_mut()?;
                let view = p.hb[i].take()?;
                if s.nodes[i + 1].inc != view.inc || !s.nodes[i + 1].up {
                    s.event |= EV_LATE;
                }
                if view.asked_in == p.prog[i].switches() {
                    p.learnt[i] = p.learnt[i].max(view.inc);
                }
                p.views[i] = Some(view);
                p.on_health(i, last, &own);
            }
            Act::Send(i) => {
                let master = &s.nodes[0];
                let last = master.contiguous();
                let p = s.master.as_mut()?;
                let (from, count) = p.prog[i].next_range(last, MAX_BATCH)?;
                let msgs: Vec<u8> = (from..from + count as u64)
                    .map(|k| master.held(k))
                    .collect::<Option<_>>()?;
                p.prog[i].sent(from, count);
                let switches = p.prog[i].switches();
                s.net.insert(Net::Rep {
                    s: i as u8 + 1,
                    proc: p.id,
                    epoch: p.epoch,
                    history: master.history.pairs().to_vec(),
                    lo: from,
                    msgs,
                    last_then: last,
                    switches,
                });
            }
            Act::GoBack(i) => s.master.as_mut()?.prog[i].go_back(),
            Act::Deliver(msg) | Act::Dup(msg) | Act::Drop(msg) if !s.net.contains(&msg) => {
                return None;
            }
            Act::Drop(msg) => {
                s.net.remove(&msg);
                s.drops -= 1;
            }
            Act::Deliver(msg) => {
                s.net.remove(&msg);
                self.deliver(&mut s, &msg);
            }
            Act::Dup(msg) => {
                // Delivered and still in the network: it may be delivered again.
                s.dups -= 1;
                self.deliver(&mut s, &msg);
            }
            Act::Adopt(i) => {
                // `TailRecovery::copy_from` + `WriterTask::adopt`.
                let src = s.nodes[i + 1].clone();
                let node = &mut s.nodes[0];
                let p = s.master.as_mut()?;
                let start = node.contiguous() + 1;
                let below = node.history.divergence(&src.history);
                if below.is_some_and(|d| d <= start) {
                    return None;
                }
                let adoptable: Vec<(u64, u8)> = src
                    .read_from(start)
                    .into_iter()
                    .take_while(|&(k, _)| below.is_none_or(|d| k < d))
                    .collect();
                if adoptable.is_empty() {
                    return None;
                }
                node.put(&adoptable).ok()?;
                let last = node.contiguous();
                p.tlast = p.tlast.max(last);
                p.record(0, start, last);
                s.event |= EV_ADOPT;
            }
            Act::RecoveryDone => s.master.as_mut()?.recovering = false,
            Act::RecoveryTimeout => {
                self.excuse(&mut s, true);
                s.master.as_mut()?.recovering = false;
            }
            Act::Crash(n, keep) => {
                let node = &mut s.nodes[n];
                node.recs.truncate(keep);
                node.synced = keep;
                node.up = false;
                faulted = Some(n);
                if n == 0 {
                    s.master_crashes -= 1;
                    s.master = None;
                    // The process's connections die with it: answers to it are lost; its
                    // requests already read by a secondary may still be served (late).
                    s.net.retain(|m| !matches!(m, Net::Ack { .. }));
                } else {
                    s.crashes -= 1;
                    s.net
                        .retain(|m| !matches!(m, Net::Rep { s: t, .. } if *t as usize == n));
                }
            }
            Act::Wipe(n) => {
                let node = &mut s.nodes[n];
                *node = Node {
                    inc: node.inc,
                    up: false,
                    ..Node::new()
                };
                faulted = Some(n);
                s.wipes -= 1;
                s.net
                    .retain(|m| !matches!(m, Net::Rep { s: t, .. } if *t as usize == n));
            }
            Act::Restart(n) => {
                let node = &mut s.nodes[n];
                node.up = true;
                if n == 0 {
                    s.procs += 1;
                    s.master = Some(Proc::start(s.procs, node, true));
                    self.excuse(&mut s, false);
                } else {
                    node.inc += 1;
                }
            }
        }
        self.settle(&mut s, before, faulted);
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("LabelsTrue", |_, s: &St| {
                s.nodes.iter().all(|n| {
                    n.recs
                        .iter()
                        .all(|&(k, m)| s.ghosts[m as usize - 1].epoch == n.history.label(k))
                })
            }),
            Property::always("LogMatching", |_, s: &St| {
                (0..NODES).all(|a| {
                    (0..NODES).all(|b| {
                        let (x, y) = (&s.nodes[a], &s.nodes[b]);
                        let d = x.history.divergence(&y.history).unwrap_or(u64::MAX);
                        x.recs
                            .iter()
                            .all(|&(k, m)| k >= d || y.held(k).is_none_or(|o| o == m))
                    })
                })
            }),
            Property::always("AcksAreHeld (answers)", |_, s: &St| s.bad & BAD_ACK == 0),
            Property::always("AcksAreHeld (tracker)", |_, s: &St| {
                let Some(p) = &s.master else { return true };
                (0..NODES).all(|n| {
                    let node = &s.nodes[n];
                    let knowable = n == 0 || (node.up && node.inc == p.learnt[n - 1]);
                    !knowable
                        || (1..=p.tlast).all(|k| {
                            p.counted[n] & bit(k) == 0 || node.held(k) == s.nodes[0].held(k)
                        })
                })
            }),
            Property::always("NoGap", |_, s: &St| {
                s.nodes[0].recs.len() as u64 == s.nodes[0].contiguous()
            }),
            Property::always("Durable", |_, s: &St| s.bad & BAD_LOSS == 0),
            Property::sometimes("a cut", |_, s: &St| s.event & EV_CUT != 0),
            Property::sometimes("an epoch opened over lost keys", |_, s: &St| {
                s.event & EV_REOPEN != 0
            }),
            Property::sometimes("an ack with w=3", |_, s: &St| {
                s.ghosts.iter().any(|g| g.w == 3)
            }),
            Property::sometimes("a late answer", |_, s: &St| s.event & EV_LATE != 0),
            Property::sometimes("an adoption", |_, s: &St| s.event & EV_ADOPT != 0),
            Property::sometimes("a stale request refused", |_, s: &St| {
                s.event & EV_REFUSED != 0
            }),
        ]
    }
}

/// Runs one BFS check (bounded by `STATE_BUDGET`), prints its figures and asserts every property.
fn check(name: &str, model: Lm, expected: &[&'static str]) {
    let started = std::time::Instant::now();
    let checker = model
        .checker()
        .threads(1)
        .target_state_count(STATE_BUDGET)
        .spawn_bfs()
        .join();
    println!(
        "{name}: {} unique states ({} visited), max depth {}, {:.1?}",
        checker.unique_state_count(),
        checker.state_count(),
        checker.max_depth(),
        started.elapsed()
    );
    for (prop, path) in checker.discoveries() {
        let actions = path.clone().into_actions();
        println!("  discovery {prop:?}: {} steps", actions.len());
        if std::env::var_os("MODEL_TRACE").is_some() {
            for a in actions {
                println!("    {a:?}");
            }
        }
    }
    for (prop, _) in checker.discoveries() {
        assert!(
            !ALWAYS.contains(&prop),
            "{name}: counterexample to {prop} (rerun with MODEL_TRACE=1 to see it)"
        );
    }
    for want in expected {
        assert!(
            checker.discovery(want).is_some(),
            "{name}: never reached {want:?}"
        );
    }
}

/// The `always` properties: a discovery of one is a counterexample.
const ALWAYS: &[&str] = &[
    "LabelsTrue",
    "LogMatching",
    "AcksAreHeld (answers)",
    "AcksAreHeld (tracker)",
    "NoGap",
    "Durable",
];

#[test]
fn master_power_loss() {
    check(
        "master power loss",
        Lm {
            appends: 2,
            ws: vec![1, 3],
            master_crashes: 1,
            crashes: 0,
            wipes: 0,
            drops: 0,
            dups: 0,
            power_loss: true,
            max_net: 2,
        },
        &[
            "a cut",
            "an epoch opened over lost keys",
            "an ack with w=3",
            "an adoption",
            "a stale request refused",
        ],
    );
}

/// Secondary crash, wipe and late answers. It found finding (d) of issue 15: a late 2xx answer
/// of an incarnation the master never heard of (inc 2, wiped since) arriving after the heartbeat
/// of the running one (inc 3) was taken as new, retired inc 3 for good and counted the wiped node
/// for the batch's keys. Fixed: an answer brings in a new incarnation only if its request went
/// out after the current one was learnt (`Progress::switches`).
#[test]
fn secondary_power_loss_wipe_and_late_answers() {
    check(
        "secondary power loss, wipe, late answers",
        Lm {
            appends: 2,
            ws: vec![2, 3],
            master_crashes: 0,
            crashes: 1,
            wipes: 1,
            drops: 0,
            dups: 1,
            power_loss: true,
            max_net: 2,
        },
        &["an ack with w=3", "a late answer"],
    );
}

/// Replays `steps` from the model's initial state, each step the first enabled action (one that
/// `actions` offers) the predicate accepts, and returns the `always` properties that fail at
/// the end.
/// One step of a replay: what it is, and which enabled action it takes.
type Step<'a> = (&'a str, &'a dyn Fn(&Act) -> bool);

fn replay(model: &Lm, steps: &[Step]) -> Vec<&'static str> {
    let mut s = model.init_states().remove(0);
    for (what, pick) in steps {
        let mut acts = Vec::new();
        model.actions(&s, &mut acts);
        let act = acts
            .into_iter()
            .find(|a| pick(a))
            .unwrap_or_else(|| panic!("step {what:?} is not enabled"));
        s = model
            .next_state(&s, act)
            .unwrap_or_else(|| panic!("step {what:?} changed nothing"));
    }
    model
        .properties()
        .iter()
        .filter(|p| ALWAYS.contains(&p.name) && !(p.condition)(model, &s))
        .map(|p| p.name)
        .collect()
}

/// The heartbeat mirror of finding (d), 15 steps (one beyond the bounded check's depth): the
/// heartbeat of incarnation 2 (holding key 1) is answered and stays in flight; 2 is wiped and
/// restarts as 3, which stores key 2 and whose answer brings it in; then 2's late heartbeat is
/// delivered. 2 was never seen, so it is not on the retired list: before the fix it was taken as
/// new, retired 3 for good, and s1 was counted for key 1, which 3 does not hold (a w=2 append
/// answered 201 while only the master held it). Now the heartbeat, asked before 3 was learnt
/// (`HealthView::asked_in`), changes nothing.
#[test]
fn heartbeat_of_an_unseen_older_incarnation_after_an_answer_of_the_running_one() {
    let model = Lm {
        appends: 2,
        ws: vec![2, 3],
        master_crashes: 0,
        crashes: 1,
        wipes: 1,
        drops: 0,
        dups: 0,
        power_loss: false,
        max_net: 2,
    };
    let rep = |lo: u64| move |a: &Act| matches!(a, Act::Deliver(Net::Rep { s: 1, lo: l, .. }) if *l == lo);
    let (rep1, rep2) = (rep(1), rep(2));
    let failed = replay(
        &model,
        &[
            ("heartbeat of inc 1 answered", &|a| {
                matches!(a, Act::HbAnswer(0))
            }),
            ("and delivered", &|a| matches!(a, Act::HbDeliver(0))),
            ("append key 1, w=2", &|a| matches!(a, Act::Append(2))),
            ("s1 killed", &|a| matches!(a, Act::Crash(1, _))),
            ("s1 restarts as inc 2", &|a| matches!(a, Act::Restart(1))),
            ("send key 1 to s1", &|a| matches!(a, Act::Send(0))),
            ("inc 2 stores key 1 (its answer stays in flight)", &rep1),
            ("heartbeat of inc 2 answered (in flight)", &|a| {
                matches!(a, Act::HbAnswer(0))
            }),
            ("s1 wiped", &|a| matches!(a, Act::Wipe(1))),
            ("s1 restarts as inc 3", &|a| matches!(a, Act::Restart(1))),
            ("append key 2, w=2", &|a| matches!(a, Act::Append(2))),
            ("send key 2 to s1", &|a| matches!(a, Act::Send(0))),
            ("inc 3 stores key 2", &rep2),
            ("inc 3's answer brings it in", &|a| {
                matches!(a, Act::Deliver(Net::Ack { s: 1, inc: 3, .. }))
            }),
            ("inc 2's late heartbeat", &|a| {
                matches!(a, Act::HbDeliver(0))
            }),
        ],
    );
    assert!(failed.is_empty(), "counterexample to {failed:?}");
}
