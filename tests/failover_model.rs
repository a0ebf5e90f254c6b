//! A stateright model of failover (SPEC §11, `docs/failover.md`, section "The model") as the
//! code does it: three members; elections (`Stand`: the next epoch and a vote for itself on
//! disk; `WriterTask::vote`: one vote per epoch, on disk before the answer, only for a log at
//! least as complete by (the epoch whose record it holds, contiguous key): rule 3); a new
//! master opening its epoch at once and taking office once a majority holds its record;
//! counting by contiguous prefix (`ReplicationTask::on_outcome`); a secondary reconciling with
//! every batch (`WriterTask::reconcile`: refuse a lower epoch, cut what the master's history
//! labels otherwise); a master stepping down on a higher epoch; crashes, power losses and
//! restarts; and a network that loses and reorders (an unordered multiset as stateright's
//! `Network::new_unordered_nonduplicating`: any message in flight may be delivered next, or
//! never). `cargo test --test failover_model` checks it breadth first, every state reachable
//! in `MAX_STEPS` actions, and prints the number of unique states.
//!
//! Durable (survives a crash): a node's epoch, its vote and its epoch history (the `epochs`
//! file, fsynced before any answer that depends on it) and its log. A crash is a process crash
//! (kill -9): what was written survives whatever `storage.fsync` says, so the log survives
//! whole. Lost in a crash: the role, a candidacy, a master's counts and the appends waiting
//! on it.
//!
//! A power loss loses that too, and what was not yet fsynced, which depends on
//! `storage.fsync` (`Fsync`; `docs/durability.md`). Under `always` a node counts nothing
//! before its fsync, so a power loss can only tear the write of a batch whose answer has not
//! gone out (`Action::DeliverTorn`): the history `reconcile` took is on disk, some of the
//! batch's entries are not — the case rule 3 ranks by the epoch whose record is held (a power
//! loss of a master or a candidate between writes is a crash). Under `interval` a node counts
//! what it wrote at once, and a power loss takes any suffix of what it wrote since its last
//! cut (`Action::PowerLoss`; a cut fsyncs first); back from it, the node holds back as rule 9
//! says (`Hold::Floor`): it surveys every member (`Action::Survey`); for its first wait it
//! neither stands nor votes; after it, it votes and stands only for a log at least as
//! complete as the most complete it heard (its floor), until it has caught up with a master.
//! The wait is time, which the model abstracts: it ends at any step once the node has heard
//! every member (`Action::HoldTimeEnds`). Before the survey the hold ended at a time whoever
//! held the lost tail (`Hold::UntilTime`), and the checker finds the loss that allowed.
//!
//! Abstracted: time. Timers fire whenever the model likes, so the election timeout, the
//! pre-vote ("a majority has also lost the master"), a voter's "heard from a master
//! recently" and the lease only make things possible earlier: every behaviour the real timers
//! allow is in the model, and more (safety must not rest on timing). A master steps down when
//! it knows a higher epoch (`guard_term`: one a vote request raised it to, or one a live member
//! is in, as a heartbeat's answer tells), as a step of its own; losing the lease is left to a
//! crash. Heartbeats are not messages here (the lease and a new incarnation's first count from
//! a heartbeat are not modelled). Only masters and candidates crash (a secondary's crash would
//! change only its incarnation); any node may lose power. Messages are values with no id (no
//! client retries).
//!
//! Invariants (`always`): at most one master per epoch; no two different messages
//! acknowledged with w ≥ majority under one key (with w = 1 that may happen: SPEC §11 lets
//! such a message be lost and its key reused); every message acknowledged with w ≥ majority is
//! in the log of every master of a later epoch when it is elected (Raft's leader
//! completeness) and when it takes office, and stays in the log of every master in office in a
//! later epoch; a node's log has no gap below its contiguous key, and a master's log none at
//! all; no batch meets another message under a key it carries. `sometimes` (so the check is
//! not vacuous): two elections, a w = majority acknowledgement before a failover, a message
//! acknowledged with w = 1 cut on rejoin; with power losses, a history left ahead of its keys
//! (`always`), a w = majority message lost by one node and a hold that ended (`interval`).
//!
//! The model found three counterexamples in the code as it was (`stale_master_counterexample`,
//! a routing race, and rule 9 letting a node back from a power loss vote); the code now has
//! all three fixes (review 13: batches carry the term's epoch, a master's writer refuses
//! entries sent to a secondary's endpoint; a37bbae: a node holding back refuses votes too). The
//! exhaustive check runs on the model of the code as it is now under `fsync = "always"`
//! (`ALWAYS`: a crash and a power loss) and under `fsync = "interval"` (`INTERVAL`: a power
//! loss, rule 9 with the survey and the floor; CI checks it with the w = 2 append only): both
//! hold. The tests of the models of the code before the fixes (`AS_CODED`,
//! `FIXED_ROUTING_RACE`, `INTERVAL_BEFORE_THE_VOTE_HOLD`, `INTERVAL_UNTIL_TIME`) and without
//! rules 3 and 9 keep showing that the check finds what the fixes closed: before the vote hold
//! a node back from a power loss still voted, and elected a member that never had what it
//! lost over the one member still holding it
//! (`under_interval_the_checker_finds_the_counterexample_against_rule_9_before_the_fix` has
//! the traces); with a hold ending at a time it votes so once its time is up
//! (`under_interval_the_checker_finds_the_counterexample_against_a_hold_ending_at_a_time`);
//! without rule 9 the checker finds the power-lost node itself elected.

use std::collections::BTreeMap;

use replog::domain::epoch::History;
use stateright::{Checker, Model, Property};

/// Members.
const N: usize = 3;
/// A majority of members.
const MAJORITY: usize = N / 2 + 1;
/// Elections end at this epoch (the first master holds epoch 1: two elections).
const MAX_EPOCH: u64 = 3;
/// Messages in flight at once.
const MAX_IN_FLIGHT: usize = 4;
/// Whether a message in flight may be dropped. Without it a lost message is one never
/// delivered (it stays in flight, unread), which reaches the same node states; dropping only
/// frees room under `MAX_IN_FLIGHT`.
const DROP: bool = false;
/// Whether a candidate reads its log at the pre-vote (one step) and stands later (another),
/// as `failover::stand` does, rather than in one step.
const PREVOTE_SNAPSHOT: bool = false;
/// Steps (actions) from the initial state that the check explores: every state reachable in
/// at most this many is checked. Enough for two elections, a w = 2 acknowledgement before a
/// failover, a w = 1 message cut, and the counterexample below (11 steps).
const MAX_STEPS: usize = 12;

/// stateright's `target_max_depth` for `steps` actions: the initial state is at depth 1, and
/// states at the target depth are neither checked nor expanded.
fn depth_for(steps: usize) -> usize {
    steps + 2
}
/// The client's appends: (value, write concern), each sent once to whichever node is master.
const APPENDS: [(u8, u8); 2] = [(1, 1), (2, MAJORITY as u8)];

type NodeId = u8;
/// (the epoch whose record the log holds, contiguous key): how elections compare logs (rule 3).
type Completeness = (u64, u64);

/// `storage.fsync`: what a power loss can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fsync {
    /// A node counts an entry toward `w` (a master for itself, a secondary in its answer) only
    /// once an fsync covers it, and a master replicates only what it fsynced: a power loss
    /// takes only what is being written (a batch whose answer has not gone out), never
    /// anything counted. A node never holds back after a restart (rule 9 is for the others).
    Always,
    /// A node counts an entry once written; the fsync runs in the background, so a power loss
    /// may take any suffix of what was written since the last fsync — here, since the node's
    /// last cut (a cut fsyncs the log first, `FileStore::cut_from` step 3), the only fsync
    /// the model pins down (the background one may have run or not). A node back from an
    /// unclean stop holds back (rule 9, `Hold`).
    Interval,
}

/// Rule 9: what a node back from an unclean stop under `interval` refrains from, and until
/// when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hold {
    /// Rule 9 switched off: it stands at once.
    Off,
    /// As the code did it before a37bbae (`failover::run`'s `hold_until` only): it stands for
    /// no election, but it still votes.
    Stand,
    /// The model of a37bbae's hold as this model had it: it neither stands nor grants a vote
    /// (or a pre-vote), until it is back in line with a master (`State::normalize`: the record
    /// of a later epoch, or every key it lost, held again). That end is an assumption about
    /// time the code did not make good (review t96, holes a, b, c): `UntilTime` is the code.
    StandAndVote,
    /// The code from a37bbae to the survey (`Failover::holding_back`: `hold_until`, the
    /// refusal at the top of `Node::answer_vote`): as `StandAndVote`, but the hold ends at a
    /// fixed time, whoever holds the lost tail — `Action::HoldTimeEnds`, at any step, the
    /// model having no time. The checker finds the loss
    /// (`under_interval_the_checker_finds_the_counterexample_against_a_hold_ending_at_a_time`).
    UntilTime,
    /// Rule 9 as designed now (the code): the node holds back until it has caught up (the
    /// record of an epoch above the one it came back in, or a log at least as complete as a
    /// master of an epoch at least that one answered its survey with); meanwhile it surveys
    /// every other member (`Action::Survey`) for a floor, the most complete log heard. For its
    /// first wait (`Action::HoldTimeEnds`, once it heard every member) it neither stands nor
    /// votes; after it, it votes only for a candidate at least as complete as its floor, and
    /// stands only when it is. (The code also stands only an election timeout after its wait;
    /// the model, without time, lets it stand at any step after, which includes that moment.)
    Floor,
}

/// Rule 9's state of a node holding back (`Node::held`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Held {
    /// The epoch it came back in.
    epoch: u64,
    /// The last key it held before it lost its tail (`Hold::StandAndVote`'s end).
    last: u64,
    /// `UntilTime`, `Floor`: its first wait (`master.recovery_wait_ms`) is not over.
    waiting: bool,
    /// `Floor`: per member, the log its survey heard from it last (`None`: not heard yet). The code forgets an entry not heard for `recovery_wait_ms`, so
    /// that a member gone for good does not hold the node back for ever: the loss the README
    /// allows (every member holding the tail away for a whole wait), not modelled.
    surveyed: [Option<Completeness>; N],
    /// `Floor`: the log of the first member that answered as the master of an epoch at least
    /// `epoch`; at least as complete as that, the node has caught up.
    target: Option<Completeness>,
}

impl Held {
    fn new(epoch: u64, last: u64, hold: Hold) -> Held {
        Held {
            epoch,
            last,
            waiting: matches!(hold, Hold::UntilTime | Hold::Floor),
            surveyed: [None; N],
            target: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Role {
    /// `claim`: the completeness a pre-vote read (`failover::stand` reads it once, before the
    /// pre-vote round, and sends it again with the vote request).
    Secondary {
        claim: Option<Completeness>,
    },
    Candidate {
        epoch: u64,
        votes: u8,
        claim: Completeness,
    },
    Master(Box<Term>),
}

/// A master's term (`MasterState`): its epoch, whether it took office, and its ack tracker.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Term {
    epoch: u64,
    in_office: bool,
    /// Per member: the end of the prefix counted for it (`AckTracker`), the incarnation that
    /// answered last, whether it holds the record of this epoch.
    counted: [u64; N],
    incarnation: [Option<u8>; N],
    holds_record: [bool; N],
    /// Appends waiting for their write concern: (key, value, w).
    waiting: Vec<(u64, u8, u8)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Node {
    // On disk.
    epoch: u64,
    voted_for: Option<NodeId>,
    history: History,
    /// key → message; entries beyond a gap are held aside (a reordered batch).
    log: BTreeMap<u64, u8>,
    /// Under `Fsync::Interval`, while a power loss may still come: keys from here on may be
    /// unsynced (1: all of them). A cut fsyncs the log first, so after a cut from `k`
    /// everything held is on disk and only keys from `k` on are written afresh. (Before the
    /// first power loss a node's log is a prefix `1..=contiguous` written in key order, so the
    /// unsynced part is a suffix in key order too.) 0 when no power loss can come any more.
    unsynced_from: u64,
    // In memory.
    up: bool,
    /// A new one at every start (`instance`).
    incarnation: u8,
    role: Role,
    /// Rule 9: back from an unclean stop under `interval`, it holds back (`Hold`, `Held`).
    held: Option<Held>,
}

impl Node {
    /// The store's contiguous key: every key up to it is held.
    fn contiguous(&self) -> u64 {
        (1..).find(|k| !self.log.contains_key(k)).unwrap_or(1) - 1
    }

    /// `WriterTask::completeness` and `Node::completeness` (no script keys in the model):
    /// with `held_epoch`, the epoch whose record this log holds (rule 3, as the code does it
    /// since review 13); without, the history's last epoch (as it did before).
    fn completeness(&self, held_epoch: bool) -> Completeness {
        let c = self.contiguous();
        if held_epoch {
            (self.history.held_epoch(c), c)
        } else {
            (self.history.last_epoch(), c)
        }
    }

    /// Rule 9 under `Hold::Floor`: the most complete of its own log and every member's its
    /// survey heard; `None` when it does not hold back.
    fn floor(&self, model: &FailoverModel) -> Option<Completeness> {
        let held = self.held.as_ref()?;
        let own = self.completeness(model.held_epoch);
        Some(
            held.surveyed
                .iter()
                .flatten()
                .copied()
                .fold(own, Completeness::max),
        )
    }

    /// Rule 9: whether it may stand now (besides the usual rules).
    fn may_stand(&self, model: &FailoverModel) -> bool {
        match (model.hold, &self.held) {
            (Hold::Off, _) | (_, None) => true,
            (Hold::Stand | Hold::StandAndVote | Hold::UntilTime, Some(_)) => false,
            (Hold::Floor, Some(h)) => {
                !h.waiting && self.floor(model) <= Some(self.completeness(model.held_epoch))
            }
        }
    }

    /// Rule 9: whether it refuses a vote or a pre-vote for a log of completeness `claim` at
    /// the top of `Node::answer_vote` (without taking the candidate's epoch).
    fn holds_back_from_voting(&self, model: &FailoverModel, claim: Completeness) -> bool {
        match (model.hold, &self.held) {
            (Hold::Off | Hold::Stand, _) | (_, None) => false,
            (Hold::StandAndVote | Hold::UntilTime, Some(_)) => true,
            (Hold::Floor, Some(h)) => h.waiting || self.floor(model) > Some(claim),
        }
    }

    /// The greatest key held, 0 when none.
    fn last_key(&self) -> u64 {
        self.log.keys().next_back().copied().unwrap_or(0)
    }

    /// A cut from `from` (`FileStore::cut_from`): fsyncs the log, then removes every key from
    /// `from` on; returns what it removed.
    fn cut_from(&mut self, from: u64) -> Vec<(u64, u8)> {
        let cut: Vec<(u64, u8)> = self.log.range(from..).map(|(k, v)| (*k, *v)).collect();
        if !cut.is_empty() {
            for (k, _) in &cut {
                self.log.remove(k);
            }
            self.unsynced_from = from;
        }
        cut
    }

    fn term(&self) -> Option<&Term> {
        match &self.role {
            Role::Master(t) => Some(t),
            _ => None,
        }
    }

    /// `Epochs::raised_to`, written to disk by the caller's step.
    fn raise(&mut self, epoch: u64) {
        if epoch > self.epoch {
            self.epoch = epoch;
            self.voted_for = None;
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Msg {
    /// `POST /vote` (the pre-vote round is folded into `Stand`: it only restricts).
    VoteReq { epoch: u64, claim: Completeness },
    /// `round` awaits the answers of this candidacy only: `asked` names it.
    VoteReply {
        asked: u64,
        epoch: u64,
        granted: bool,
    },
    /// `POST /replicate`: the header epoch is the sender's *current* epoch (`Peer::replicate`
    /// sends `epochs.current`); `term` routes the answer to the term's replication task.
    Replicate {
        term: u64,
        epoch: u64,
        history: Vec<(u64, u64)>,
        entries: Vec<(u64, u8)>,
        last_then: u64,
    },
    /// 2xx: the secondary's contiguous key after storing, and its incarnation.
    Stored {
        term: u64,
        history: Vec<(u64, u64)>,
        last_then: u64,
        contiguous: u64,
        incarnation: u8,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Envelope {
    src: NodeId,
    dst: NodeId,
    msg: Msg,
}

/// What the model remembers beyond the nodes (history variables for the properties).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Ghost {
    /// (epoch, node) for every node that became master.
    masters: Vec<(u64, NodeId)>,
    /// Acknowledged appends: (key, value, w, epoch of the master that acknowledged it).
    acks: Vec<(u64, u8, u8, u64)>,
    /// Appends the client has sent (bitmask over `APPENDS`).
    sent: u8,
    crashes: u8,
    power_losses: u8,
    /// A power loss left a node with a history ahead of its keys: its last epoch's record is
    /// not held (rule 3's case).
    history_ahead: bool,
    /// A power loss took a message acknowledged with w ≥ majority from a node's log (rule 9's
    /// case).
    lost_majority_ack: bool,
    /// A node held back after an unclean stop was let go (rule 9's wait ended; under
    /// `Hold::Floor`: it caught up).
    hold_ended: bool,
    /// Under `Hold::Floor`, a node past its first wait refused a candidate below its floor.
    floor_refused: bool,
    /// A node was elected without a message acknowledged with w ≥ majority in an earlier
    /// epoch (Raft's leader completeness; caught three steps before `lost_at_office`).
    lost_at_election: bool,
    /// A master took office without a message acknowledged with w ≥ majority in an earlier
    /// epoch.
    lost_at_office: bool,
    /// A master took office after a w ≥ majority acknowledgement in an earlier epoch.
    majority_ack_then_failover: bool,
    /// A message acknowledged only with w = 1 was cut by a secondary reconciling.
    cut_w1: bool,
    /// A secondary refused a batch because a key held another message (log matching broken).
    conflict: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    nodes: Vec<Node>,
    /// The network: a multiset of envelopes (sorted, so equal networks hash alike).
    net: Vec<Envelope>,
    ghost: Ghost,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Action {
    Deliver(Envelope),
    /// A batch routed while its receiver was a secondary reaches its writer after the
    /// receiver became master (`routing_race`).
    DeliverRoutedEarlier(Envelope),
    Drop(Envelope),
    /// The election timer fired and a pre-vote round began: the candidate reads its log.
    PreVote(NodeId),
    /// The pre-vote passed: take the next epoch, vote for itself (on disk), ask for votes.
    Stand(NodeId),
    /// The vote round ended without a majority (timeouts).
    GiveUp(NodeId),
    /// The term's replication task sends what the secondary misses (or the record alone).
    Send(NodeId, NodeId),
    /// A client's append reaches the master (in office, lease held).
    Append(NodeId, usize),
    /// Lease lost, or a higher epoch seen (`guard_term`): a secondary again.
    StepDown(NodeId),
    Crash(NodeId),
    /// `Fsync::Interval`: the node loses power and every key it holds from this one on (an
    /// unsynced suffix of its log).
    PowerLoss(NodeId, u64),
    /// The receiver of a batch loses power while it handles it (before its answer went out):
    /// what `reconcile` made durable first stays. `Tear::From` only under `Fsync::Always`
    /// (under `interval`, a delivery and then `PowerLoss`, its answer never delivered, reach
    /// the same states).
    DeliverTorn(Envelope, Tear),
    Restart(NodeId),
    /// Rule 9 under `Hold::Floor`: the node holding back (first) hears the completeness of
    /// the member (second) in answer to its survey (`GET /heartbeat`), and whether that member
    /// is a master and of which epoch. Read atomically at this step.
    Survey(NodeId, NodeId),
    /// Rule 9 under `Hold::UntilTime` and `Hold::Floor`: the node's first wait
    /// (`master.recovery_wait_ms`) is over.
    HoldTimeEnds(NodeId),
}

/// Where a power loss tears a batch's write (`Action::DeliverTorn`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Tear {
    /// After `reconcile`'s cut (the log fsynced, the cut recorded), before the master's
    /// history was taken.
    AfterCut,
    /// After the history was taken (on disk) and the entries written: the entries from this
    /// key on were not yet fsynced and are lost.
    From(u64),
}

/// The model; `term_epoch_in_batches` chooses how a master labels its batches, the other
/// fields the faults and the rules 3 and 9.
struct FailoverModel {
    /// `false`: as the code did it before review 13 (`Peer::replicate` sent the writer's
    /// *current* epoch, which a vote request of a higher epoch raises while the master is
    /// still in office). `true`: as the code does it, the epoch of the master's term.
    term_epoch_in_batches: bool,
    /// Whether a batch may reach the writer of a node that became master after the request
    /// was routed (`post_replicate` checks the role before it reads the body; the writer of a
    /// failover master then answers through `adopt`: nothing stored, `Ok(0)`, and the handler
    /// answers 200 with the master's own contiguous key).
    routing_race: bool,
    /// `storage.fsync`: what a power loss takes.
    fsync: Fsync,
    /// Crashes (kill -9) of a master or a candidate in a run.
    max_crashes: u8,
    /// Power losses in a run (of any node).
    max_power_losses: u8,
    /// Rule 3: logs ranked by the epoch whose record they hold (`true`, the code) or by the
    /// history's last epoch (`false`, before review 13).
    held_epoch: bool,
    /// Rule 9: `Hold::Floor` in the code now (`Hold::UntilTime` from a37bbae to the survey).
    hold: Hold,
    /// Which of `APPENDS` the client sends (a bitmask; a smaller model reaches deeper).
    appends: u8,
}

/// The model of the code before review 13 (batches labelled with the writer's current epoch).
const AS_CODED: FailoverModel = FailoverModel {
    term_epoch_in_batches: false,
    routing_race: false,
    ..FIXED
};
/// The model of the code as it is: the fixes of `stale_master_counterexample` and the
/// routing race (review 13), and rule 9's hold with the survey and the floor.
const FIXED: FailoverModel = FailoverModel {
    term_epoch_in_batches: true,
    routing_race: false,
    fsync: Fsync::Always,
    max_crashes: 1,
    max_power_losses: 0,
    held_epoch: true,
    hold: Hold::Floor,
    appends: 0b11,
};
/// `FIXED`, and a batch routed while its receiver was a secondary reaching it as a master.
const FIXED_ROUTING_RACE: FailoverModel = FailoverModel {
    routing_race: true,
    ..FIXED
};
/// The code as it is under `storage.fsync = "always"`, with a power loss besides the crash:
/// the exhaustive check. The promise: nothing counted is lost to power losses, however many.
const ALWAYS: FailoverModel = FailoverModel {
    max_power_losses: 1,
    ..FIXED
};
/// `ALWAYS` ranking logs by the history's last epoch (rule 3 as it was before review 13).
const ALWAYS_WITHOUT_RULE_3: FailoverModel = FailoverModel {
    held_epoch: false,
    ..ALWAYS
};
/// The code as it is under `storage.fsync = "interval"` (the default), with one power loss
/// (of any node) and no other crash: the promise (README, Durability) is that a message
/// acknowledged with w ≥ 2 survives a power loss of one machine unless every other node
/// holding it stays away for the whole recovery wait. (A power loss of a majority at once
/// may lose it: not modelled.) It holds (`under_interval_rule_9_holds_its_invariants_*`).
const INTERVAL: FailoverModel = FailoverModel {
    fsync: Fsync::Interval,
    max_crashes: 0,
    max_power_losses: 1,
    ..FIXED
};
/// `INTERVAL` with rule 9 as the code had it before a37bbae: a node holding back stands for
/// no election but still votes. The promise does not hold: see
/// `under_interval_the_checker_finds_the_counterexample_against_rule_9_before_the_fix`.
const INTERVAL_BEFORE_THE_VOTE_HOLD: FailoverModel = FailoverModel {
    hold: Hold::Stand,
    ..INTERVAL
};
/// `INTERVAL` with rule 9 as the code had it from a37bbae until the survey: a node holding
/// back neither stands nor votes until a fixed time. The promise does not hold: see
/// `under_interval_the_checker_finds_the_counterexample_against_a_hold_ending_at_a_time`.
const INTERVAL_UNTIL_TIME: FailoverModel = FailoverModel {
    hold: Hold::UntilTime,
    ..INTERVAL
};
/// `INTERVAL` with the hold as this model had it before the survey: as `INTERVAL_UNTIL_TIME`,
/// but ending once the node is back in line with a master (an assumption about time).
const INTERVAL_HOLD_UNTIL_REFILL: FailoverModel = FailoverModel {
    hold: Hold::StandAndVote,
    ..INTERVAL
};
/// `INTERVAL` with rule 9 switched off.
const INTERVAL_WITHOUT_RULE_9: FailoverModel = FailoverModel {
    hold: Hold::Off,
    ..INTERVAL
};

/// Whether the message `v` at key `k` was acknowledged, and only with w = 1.
fn only_w1(acks: &[(u64, u8, u8, u64)], k: u64, v: u8) -> bool {
    acks.iter().any(|a| a.0 == k && a.1 == v)
        && acks.iter().all(|a| !(a.0 == k && a.1 == v) || a.2 == 1)
}

fn hist(pairs: &[(u64, u64)]) -> History {
    History::from_pairs(pairs.to_vec()).expect("the model only builds valid histories")
}

impl FailoverModel {
    /// Whether nodes track what a power loss may still take (`Node::unsynced_from`).
    fn tracks_unsynced(&self) -> bool {
        self.fsync == Fsync::Interval && self.max_power_losses > 0
    }
}

impl State {
    /// After every step: lets go of a hold whose wait is over, and forgets what no later step
    /// can use (so that states differing only there are one).
    ///
    /// Rule 9's wait is time (`master.recovery_wait_ms`), which the model does not have. Under
    /// `Hold::Stand` and `Hold::StandAndVote` (this model before the survey) it is let go by
    /// what the wait is for: that a member holding what this node lost is elected first and
    /// brings this node's log in line with its own, or the master of the node's epoch sends
    /// back what it lost. So a hold ends once the node holds the record of an epoch above the one
    /// it came back in (it reconciled with a master elected since, and holds every key before
    /// that master's first), or holds again up to the last key it held before (a master
    /// refilled it). This assumes the wait outlasts an election and a refill among members
    /// that are up and can talk; a run in which every member holding the lost tail stays away
    /// for the whole wait is the loss the README allows (Durability), and is not in the
    /// model.
    ///
    /// Under `Hold::Floor` (the code now) the hold ends as the code ends it, once the node has
    /// caught up: it holds the record of an epoch above the one it came back in, or its log
    /// is at least as complete as the `target` its survey of a master set. Under
    /// `Hold::UntilTime` it ends at a time (`Action::HoldTimeEnds`), nothing else.
    fn normalize(&mut self, model: &FailoverModel) {
        for node in &mut self.nodes {
            if let Some(h) = &node.held
                && node.up
            {
                let later_record = node.history.held_epoch(node.contiguous()) > h.epoch;
                let over = match model.hold {
                    Hold::Stand | Hold::StandAndVote => later_record || node.contiguous() >= h.last,
                    Hold::Floor => {
                        later_record
                            || h.target
                                .is_some_and(|t| node.completeness(model.held_epoch) >= t)
                    }
                    Hold::Off | Hold::UntilTime => false,
                };
                if over {
                    node.held = None;
                    self.ghost.hold_ended = true;
                }
            }
            if !model.tracks_unsynced() || self.ghost.power_losses >= model.max_power_losses {
                node.unsynced_from = 0;
            }
        }
    }

    fn send(&mut self, src: NodeId, dst: NodeId, msg: Msg) {
        let env = Envelope { src, dst, msg };
        if !DROP && self.net.contains(&env) {
            // Without drops the network is a set: a second copy of a message in flight is
            // one more delivery of it, which no handler tells from the first.
            return;
        }
        let at = self.net.partition_point(|e| *e <= env);
        self.net.insert(at, env);
    }

    fn take(&mut self, env: &Envelope) -> bool {
        match self.net.iter().position(|e| e == env) {
            Some(i) => {
                self.net.remove(i);
                true
            }
            None => false,
        }
    }

    /// Answers the appends a master's counts now satisfy (`AckTracker::wait`).
    fn settle(&mut self, n: NodeId) {
        let node = &mut self.nodes[n as usize];
        let own = node.contiguous();
        let Role::Master(t) = &mut node.role else {
            return;
        };
        let mut acked = Vec::new();
        t.waiting.retain(|&(key, value, w)| {
            let holders = (0..N)
                .filter(|&p| {
                    if p == n as usize {
                        own >= key
                    } else {
                        t.counted[p] >= key
                    }
                })
                .count();
            if holders >= w as usize {
                acked.push((key, value, w, t.epoch));
                false
            } else {
                true
            }
        });
        self.ghost.acks.extend(acked);
        self.ghost.acks.sort();
    }

    /// `guard_term`: takes office once a majority (the master included) holds the record.
    fn maybe_take_office(&mut self, n: NodeId) {
        let node = &self.nodes[n as usize];
        let Some(t) = node.term() else { return };
        if t.in_office {
            return;
        }
        let holding = 1
            + (0..N)
                .filter(|&p| p != n as usize && t.holds_record[p])
                .count();
        if holding < MAJORITY {
            return;
        }
        let epoch = t.epoch;
        for &(key, value, w, e) in &self.ghost.acks {
            if w as usize >= MAJORITY && e < epoch {
                self.ghost.majority_ack_then_failover = true;
                if node.log.get(&key) != Some(&value) {
                    self.ghost.lost_at_office = true;
                }
            }
        }
        if let Role::Master(t) = &mut self.nodes[n as usize].role {
            t.in_office = true;
        }
    }

    /// `WriterTask::vote` and `Node::answer_vote`.
    fn on_vote_req(
        &mut self,
        model: &FailoverModel,
        v: NodeId,
        cand: NodeId,
        epoch: u64,
        claim: Completeness,
    ) {
        let node = &mut self.nodes[v as usize];
        let is_master = node.term().is_some();
        // Rule 9: a node holding back refuses at the top of `Node::answer_vote`, before the
        // writer sees the request, so its epoch stays as it was: during its wait any
        // candidate, after it one below its floor (`Hold::Floor`). (Before the fix,
        // `Hold::Stand`, it voted as any other.)
        let held = node.holds_back_from_voting(model, claim);
        if held && model.hold == Hold::Floor && node.held.as_ref().is_some_and(|h| !h.waiting) {
            self.ghost.floor_refused = true;
        }
        let reply = if held || epoch < node.epoch || (epoch == node.epoch && is_master) {
            (node.epoch, false)
        } else {
            let complete = claim >= node.completeness(model.held_epoch);
            // A master hears itself; a secondary's "heard recently" is time, abstracted away:
            // it may always have timed out.
            let why_not = is_master || !complete;
            node.raise(epoch);
            let free = node.voted_for.is_none_or(|c| c == cand);
            let granted = !why_not && free;
            if granted {
                node.voted_for = Some(cand);
            }
            // A master that learns of a higher epoch steps down, but later (`guard_term`
            // wakes on the signal): `StepDown` is an action of its own.
            (node.epoch, granted)
        };
        self.send(
            v,
            cand,
            Msg::VoteReply {
                asked: epoch,
                epoch: reply.0,
                granted: reply.1,
            },
        );
    }

    fn on_vote_reply(&mut self, c: NodeId, from: NodeId, asked: u64, epoch: u64, granted: bool) {
        let node = &mut self.nodes[c as usize];
        let Role::Candidate {
            epoch: standing,
            votes,
            ..
        } = &mut node.role
        else {
            return;
        };
        let standing = *standing;
        if asked != standing {
            return; // an answer to an earlier candidacy: its round is over
        }
        if epoch > standing {
            // `round`: a higher epoch ends the candidacy and is taken.
            node.raise(epoch);
            node.role = Role::Secondary { claim: None };
            return;
        }
        if !granted {
            return;
        }
        *votes |= 1 << from;
        let count = votes.count_ones() as usize;
        if count < MAJORITY {
            return;
        }
        // `stand`: still this epoch's candidate?
        if node.epoch != standing || node.voted_for != Some(c) {
            node.role = Role::Secondary { claim: None };
            return;
        }
        // `Writer::become_master(Some(epoch))`: the epoch must be above the history's last
        // and at least the current one; with failover the epoch opens at once.
        if standing <= node.history.last_epoch() || standing < node.epoch {
            node.role = Role::Secondary { claim: None };
            return;
        }
        let first = node.contiguous() + 1;
        // `WriterTask::become_master`: what it holds aside beyond a gap (only after a power
        // loss here) is cut before its epoch opens at `first`.
        let cut = node.cut_from(first);
        if cut.iter().any(|&(k, v)| only_w1(&self.ghost.acks, k, v)) {
            self.ghost.cut_w1 = true;
        }
        let node = &mut self.nodes[c as usize];
        if self.ghost.acks.iter().any(|&(key, value, w, e)| {
            w as usize >= MAJORITY && e < standing && node.log.get(&key) != Some(&value)
        }) {
            self.ghost.lost_at_election = true;
        }
        let mut h = node.history.clone();
        h.truncate_from(first);
        h.push(standing, first)
            .expect("a higher epoch at a later key");
        node.history = h;
        node.role = Role::Master(Box::new(Term {
            epoch: standing,
            in_office: false,
            counted: [0; N],
            incarnation: [None; N],
            holds_record: [false; N],
            waiting: Vec::new(),
        }));
        self.ghost.masters.push((standing, c));
        self.ghost.masters.sort();
    }

    /// `secondary::replicate`: `heard_from_master`, then the writer's `reconcile` and store.
    /// With `tear`, the node loses power in the middle (`Action::DeliverTorn`); returns
    /// whether the tear changed anything (else the action is no different from a delivery and
    /// a crash, and is left out).
    fn on_replicate(&mut self, s: NodeId, m: NodeId, batch: Msg, tear: Option<Tear>) -> bool {
        let Msg::Replicate {
            term,
            epoch,
            history: pairs,
            entries,
            last_then,
        } = batch
        else {
            return false;
        };
        let node = &mut self.nodes[s as usize];
        if node.term().is_some() {
            // A master answers `POST /replicate` with 405 (the route checks the role).
            return false;
        }
        let from = hist(&pairs);
        // `reconcile`.
        if epoch < node.epoch {
            return false; // 409 StaleEpoch: the replication task retries later.
        }
        if from == node.history {
            node.raise(epoch);
        } else {
            let d = node.history.divergence(&from);
            if epoch == node.epoch
                && node.history.last_epoch() == node.epoch
                && from.last_epoch() < epoch
            {
                if d.is_some_and(|d| entries.iter().any(|e| e.0 >= d)) {
                    return false; // 409 StaleHistory
                }
            } else {
                let cut = d.map(|d| node.cut_from(d)).unwrap_or_default();
                if cut.iter().any(|&(k, v)| only_w1(&self.ghost.acks, k, v)) {
                    self.ghost.cut_w1 = true;
                }
                let node = &mut self.nodes[s as usize];
                if tear == Some(Tear::AfterCut) {
                    // The cut is on disk, the master's history not yet. The cut fsynced the
                    // log first, so nothing else is lost, under `interval` too, and rule 9's
                    // wait would end as it begins (`State::normalize`): no hold.
                    if cut.is_empty() {
                        return false;
                    }
                    self.power_off(s);
                    return true;
                }
                node.history = from;
                node.raise(epoch);
            }
        }
        if tear == Some(Tear::AfterCut) {
            return false;
        }
        let node = &mut self.nodes[s as usize];
        // A candidate that took a master's word in a higher epoch is no candidate any more
        // (`stand` checks its epoch and vote after the round).
        if let Role::Candidate { epoch: e, .. } = node.role
            && node.epoch > e
        {
            node.role = Role::Secondary { claim: None };
        }
        // The store never overwrites: a different message under a held key is a 409.
        if entries
            .iter()
            .any(|(k, v)| node.log.get(k).is_some_and(|h| h != v))
        {
            self.ghost.conflict = true;
            return false;
        }
        let mut written = Vec::new();
        for (k, v) in entries {
            if node.log.insert(k, v).is_none() {
                written.push(k);
            }
        }
        if let Some(Tear::From(lost)) = tear {
            // What this write added from `lost` on was not fsynced: gone, with no answer.
            if !written.iter().any(|&k| k >= lost) {
                return false;
            }
            for k in written.into_iter().filter(|&k| k >= lost) {
                node.log.remove(&k);
            }
            self.power_off(s);
            return true;
        }
        let contiguous = node.contiguous();
        let incarnation = node.incarnation;
        self.send(
            s,
            m,
            Msg::Stored {
                term,
                history: pairs,
                last_then,
                contiguous,
                incarnation,
            },
        );
        true
    }

    /// A power loss of `n`, once what it lost is gone from its log: the process is gone too
    /// (as in a crash; `Action::PowerLoss` sets rule 9's hold).
    fn power_off(&mut self, n: NodeId) {
        self.ghost.power_losses += 1;
        let node = &mut self.nodes[n as usize];
        node.up = false;
        node.role = Role::Secondary { claim: None };
        let held = node.history.held_epoch(node.contiguous());
        if node.history.last_epoch() > held {
            self.ghost.history_ahead = true;
        }
    }

    /// `ReplicationTask::on_outcome` with failover on.
    fn on_stored(&mut self, m: NodeId, s: NodeId, answer: Msg) {
        let Msg::Stored {
            term,
            history: pairs,
            last_then,
            contiguous,
            incarnation,
        } = answer
        else {
            return;
        };
        let node = &mut self.nodes[m as usize];
        let now = node.history.clone();
        let Role::Master(t) = &mut node.role else {
            return;
        };
        if t.epoch != term {
            return; // that term's task is gone
        }
        let then = hist(&pairs);
        let below = then.divergence(&now).map_or(u64::MAX, |d| d - 1);
        let contiguous = contiguous.min(last_then).min(below);
        let p = s as usize;
        if t.incarnation[p] != Some(incarnation) {
            t.incarnation[p] = Some(incarnation);
            t.counted[p] = contiguous; // reset_node
        }
        t.counted[p] = t.counted[p].max(contiguous); // record(1, contiguous)
        if then.last_epoch() == t.epoch
            && let Some(&(_, first)) = then.pairs().last()
            && contiguous + 1 >= first
        {
            t.holds_record[p] = true;
        }
        self.maybe_take_office(m);
        self.settle(m);
    }
}

impl Model for FailoverModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        // Node 0 was configured as the master: epoch 1 at its first start, opened at once;
        // the others took its record already (the shortest way into a running cluster).
        let h = hist(&[(1, 1)]);
        let node = |role| Node {
            epoch: 1,
            voted_for: None,
            history: h.clone(),
            log: BTreeMap::new(),
            unsynced_from: self.tracks_unsynced() as u64,
            up: true,
            incarnation: 0,
            role,
            held: None,
        };
        let term = Term {
            epoch: 1,
            in_office: true,
            counted: [0; N],
            incarnation: [None; N],
            holds_record: [false, true, true],
            waiting: Vec::new(),
        };
        vec![State {
            nodes: vec![
                node(Role::Master(Box::new(term))),
                node(Role::Secondary { claim: None }),
                node(Role::Secondary { claim: None }),
            ],
            net: Vec::new(),
            ghost: Ghost {
                masters: vec![(1, 0)],
                ..Ghost::default()
            },
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        let mut last: Option<&Envelope> = None;
        for env in &s.net {
            if last == Some(env) {
                continue;
            }
            last = Some(env);
            actions.push(Action::Deliver(env.clone()));
            if self.routing_race
                && let Msg::Replicate { term, .. } = env.msg
                && let dst = &s.nodes[env.dst as usize]
                && dst.up
                && dst.term().is_some_and(|t| t.epoch > term)
            {
                actions.push(Action::DeliverRoutedEarlier(env.clone()));
            }
            if DROP {
                actions.push(Action::Drop(env.clone()));
            }
            // A power loss while the receiver handles the batch.
            if s.ghost.power_losses < self.max_power_losses
                && let Msg::Replicate { entries, .. } = &env.msg
                && s.nodes[env.dst as usize].up
            {
                actions.push(Action::DeliverTorn(env.clone(), Tear::AfterCut));
                if self.fsync == Fsync::Always {
                    for &(k, _) in entries {
                        actions.push(Action::DeliverTorn(env.clone(), Tear::From(k)));
                    }
                }
            }
        }
        let room = s.net.len() < MAX_IN_FLIGHT;
        for (i, node) in s.nodes.iter().enumerate() {
            let n = i as NodeId;
            if !node.up {
                actions.push(Action::Restart(n));
                continue;
            }
            // A secondary's crash changes only its incarnation (its log and epochs are on disk)
            // and what it would have read (messages never delivered): crashing masters and
            // candidates is what tells.
            if s.ghost.crashes < self.max_crashes && !matches!(node.role, Role::Secondary { .. }) {
                actions.push(Action::Crash(n));
            }
            // `interval`: a power loss takes an unsynced suffix of the log (at least one key:
            // losing none is a crash). Of any node: a secondary's written entries count.
            if self.fsync == Fsync::Interval && s.ghost.power_losses < self.max_power_losses {
                for k in node.unsynced_from.max(1)..=node.last_key() {
                    if node.log.contains_key(&k) {
                        actions.push(Action::PowerLoss(n, k));
                    }
                }
            }
            // Rule 9: a node holding back surveys the members, and its wait ends at a time
            // (under `Floor` a time by which it heard every member: the wait is longer than a
            // round of the survey; a member away for all of it is the loss the README
            // allows).
            if let Some(h) = &node.held {
                if self.hold == Hold::Floor {
                    for m in 0..N {
                        if m != i && s.nodes[m].up {
                            actions.push(Action::Survey(n, m as NodeId));
                        }
                    }
                }
                let heard_all = (0..N).all(|m| m == i || h.surveyed[m].is_some());
                if h.waiting && (self.hold == Hold::UntilTime || heard_all) {
                    actions.push(Action::HoldTimeEnds(n));
                }
            }
            // Rule 9: a node holding back stands for no election (under `Floor`, after its
            // wait, for one when it is as complete as its floor).
            let held = !node.may_stand(self);
            let vote_room = s.net.len() + N - 1 <= MAX_IN_FLIGHT;
            match &node.role {
                Role::Secondary { claim: None } | Role::Candidate { .. }
                    if node.epoch < MAX_EPOCH && !held =>
                {
                    // A candidate whose round failed stands again (`GiveUp` then `Stand`
                    // reaches nothing more: replies it waits for may simply never come).
                    if PREVOTE_SNAPSHOT {
                        actions.push(Action::PreVote(n));
                    } else if vote_room {
                        actions.push(Action::Stand(n));
                    }
                }
                Role::Secondary { claim: Some(_) } => {
                    if vote_room && !held {
                        actions.push(Action::Stand(n));
                    }
                    actions.push(Action::GiveUp(n));
                }
                Role::Secondary { claim: None } | Role::Candidate { .. } => {}
                Role::Master(t) => {
                    // `guard_term` steps down on a higher epoch: one it took (a vote request)
                    // or one a member is in (a heartbeat's answer). The lease's step-down is
                    // left to `Crash` (see the module docs).
                    if node.epoch > t.epoch || s.nodes.iter().any(|o| o.up && o.epoch > t.epoch) {
                        actions.push(Action::StepDown(n));
                    }
                    if t.in_office {
                        for (j, _) in APPENDS.iter().enumerate() {
                            if s.ghost.sent & (1 << j) == 0 && self.appends & (1 << j) != 0 {
                                actions.push(Action::Append(n, j));
                            }
                        }
                    }
                    if room {
                        for p in 0..N {
                            // One batch in flight per secondary (the window after a failure).
                            if p != i
                                && replicate_msg(self, node, t, p).is_some()
                                && !s.net.iter().any(|e| {
                                    e.src == n
                                        && e.dst == p as NodeId
                                        && matches!(e.msg, Msg::Replicate { .. })
                                })
                            {
                                actions.push(Action::Send(n, p as NodeId));
                            }
                        }
                    }
                }
            }
        }
    }

    fn next_state(&self, s: &State, action: Action) -> Option<State> {
        let mut s = s.clone();
        match action {
            Action::Drop(env) => {
                s.take(&env);
            }
            Action::Deliver(env) => {
                s.take(&env);
                if !s.nodes[env.dst as usize].up {
                    return Some(s); // nobody listens: lost
                }
                match env.msg {
                    Msg::VoteReq { epoch, claim } => {
                        s.on_vote_req(self, env.dst, env.src, epoch, claim)
                    }
                    Msg::VoteReply {
                        asked,
                        epoch,
                        granted,
                    } => s.on_vote_reply(env.dst, env.src, asked, epoch, granted),
                    batch @ Msg::Replicate { .. } => {
                        s.on_replicate(env.dst, env.src, batch, None);
                    }
                    answer @ Msg::Stored { .. } => s.on_stored(env.dst, env.src, answer),
                }
            }
            Action::DeliverTorn(env, tear) => {
                s.take(&env);
                if !s.on_replicate(env.dst, env.src, env.msg, Some(tear)) {
                    return None;
                }
            }
            Action::DeliverRoutedEarlier(env) => {
                s.take(&env);
                let Msg::Replicate {
                    term,
                    history,
                    last_then,
                    ..
                } = env.msg
                else {
                    return None;
                };
                // `WriterTask::adopt` of a master whose epoch is open: nothing is stored,
                // and the answer is 200 with this master's contiguous key.
                let node = &s.nodes[env.dst as usize];
                let answer = Msg::Stored {
                    term,
                    history,
                    last_then,
                    contiguous: node.contiguous(),
                    incarnation: node.incarnation,
                };
                s.send(env.dst, env.src, answer);
            }
            Action::PreVote(n) => {
                let node = &mut s.nodes[n as usize];
                node.role = Role::Secondary {
                    claim: Some(node.completeness(self.held_epoch)),
                };
            }
            Action::Stand(n) => {
                let node = &mut s.nodes[n as usize];
                let claim = match node.role {
                    Role::Secondary { claim: Some(c) } => c,
                    Role::Secondary { claim: None } | Role::Candidate { .. } => {
                        node.completeness(self.held_epoch)
                    }
                    Role::Master(_) => return None,
                };
                // `Writer::stand`: the next epoch, voting for itself, on disk.
                node.raise(node.epoch + 1);
                node.voted_for = Some(n);
                let epoch = node.epoch;
                node.role = Role::Candidate {
                    epoch,
                    votes: 1 << n,
                    claim,
                };
                for p in 0..N as NodeId {
                    if p != n {
                        s.send(n, p, Msg::VoteReq { epoch, claim });
                    }
                }
            }
            Action::GiveUp(n) => s.nodes[n as usize].role = Role::Secondary { claim: None },
            Action::Send(n, p) => {
                let node = &s.nodes[n as usize];
                let t = node.term()?;
                let msg = replicate_msg(self, node, t, p as usize)?;
                s.send(n, p, msg);
            }
            Action::Append(n, j) => {
                let (value, w) = APPENDS[j];
                s.ghost.sent |= 1 << j;
                let node = &mut s.nodes[n as usize];
                let key = node.contiguous() + 1;
                node.log.insert(key, value);
                if let Role::Master(t) = &mut node.role {
                    t.waiting.push((key, value, w));
                }
                s.settle(n);
            }
            Action::StepDown(n) => {
                // `guard_term`: the highest epoch seen is taken (on disk), then a secondary;
                // waiting appends are answered "outcome unknown": not acknowledged.
                let highest = s
                    .nodes
                    .iter()
                    .filter(|o| o.up)
                    .map(|o| o.epoch)
                    .max()
                    .unwrap_or(0);
                let node = &mut s.nodes[n as usize];
                node.raise(highest);
                node.role = Role::Secondary { claim: None };
            }
            Action::Crash(n) => {
                s.ghost.crashes += 1;
                let node = &mut s.nodes[n as usize];
                node.up = false;
                node.role = Role::Secondary { claim: None };
                // kill -9 is an unclean stop too, and under `interval` the code holds back
                // after it; but nothing was lost, and a hold only keeps a node from things
                // (standing, voting), so the model leaves it out: every behaviour the hold
                // allows is in the model without it. A node that still held back starts its
                // hold again (a stop while holding back is unclean), in the epoch it has now.
                if let Some(h) = &node.held
                    && matches!(self.hold, Hold::UntilTime | Hold::Floor)
                {
                    node.held = Some(Held::new(node.epoch, h.last, self.hold));
                }
            }
            Action::PowerLoss(n, from) => {
                let node = &mut s.nodes[n as usize];
                let before = node.last_key();
                let lost: Vec<(u64, u8)> = node.log.split_off(&from).into_iter().collect();
                if self.hold != Hold::Off {
                    node.held = Some(Held::new(node.epoch, before, self.hold));
                }
                if lost.iter().any(|&(k, v)| {
                    s.ghost
                        .acks
                        .iter()
                        .any(|a| a.0 == k && a.1 == v && a.2 as usize >= MAJORITY)
                }) {
                    s.ghost.lost_majority_ack = true;
                }
                s.power_off(n);
            }
            Action::Restart(n) => {
                let node = &mut s.nodes[n as usize];
                node.up = true;
                node.incarnation += 1;
            }
            Action::Survey(n, m) => {
                let other = &s.nodes[m as usize];
                let heard = other.completeness(self.held_epoch);
                let master_epoch = other.term().map(|_| other.history.last_epoch());
                let h = s.nodes[n as usize].held.as_mut()?;
                let mut changed = false;
                // The code keeps a member's latest answer (`Failover::surveyed`), not the most
                // complete one since.
                let entry = &mut h.surveyed[m as usize];
                if *entry != Some(heard) {
                    *entry = Some(heard);
                    changed = true;
                }
                // The first master's answer, never replaced (`Survey::target`).
                if master_epoch.is_some_and(|e| e >= h.epoch) && h.target.is_none() {
                    h.target = Some(heard);
                    changed = true;
                }
                if !changed {
                    return None; // the same state: left out
                }
            }
            Action::HoldTimeEnds(n) => {
                let node = &mut s.nodes[n as usize];
                match self.hold {
                    Hold::UntilTime => {
                        node.held = None;
                        s.ghost.hold_ended = true;
                    }
                    _ => node.held.as_mut()?.waiting = false,
                }
            }
        }
        s.normalize(self);
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut properties = vec![
            Property::always("at most one master per epoch", |_, s: &State| {
                s.ghost.masters.windows(2).all(|w| w[0].0 != w[1].0)
            }),
            Property::always(
                "no two messages acknowledged with w >= majority under one key",
                |_, s: &State| {
                    let maj: Vec<_> = s
                        .ghost
                        .acks
                        .iter()
                        .filter(|a| a.2 as usize >= MAJORITY)
                        .collect();
                    maj.iter()
                        .all(|a| maj.iter().all(|b| a.0 != b.0 || a.1 == b.1))
                },
            ),
            Property::always(
                "a w >= majority message is in every later master's log when it is elected",
                |_, s: &State| !s.ghost.lost_at_election,
            ),
            Property::always(
                "a w >= majority message is in every later master's log when it takes office",
                |_, s: &State| !s.ghost.lost_at_office,
            ),
            Property::always(
                "a w >= majority message stays in the log of every later master in office",
                |_, s: &State| {
                    s.ghost
                        .acks
                        .iter()
                        .filter(|a| a.2 as usize >= MAJORITY)
                        .all(|&(key, value, _, e)| {
                            s.nodes.iter().all(|n| match n.term() {
                                Some(t) if t.in_office && t.epoch > e => {
                                    n.log.get(&key) == Some(&value)
                                }
                                _ => true,
                            })
                        })
                },
            ),
            Property::always(
                "no gap below a node's contiguous key; a master's log is contiguous",
                |_, s: &State| {
                    s.nodes.iter().all(|n| {
                        let c = n.contiguous();
                        (1..=c).all(|k| n.log.contains_key(&k))
                            && (n.term().is_none() || n.log.len() as u64 == c)
                    })
                },
            ),
            Property::always(
                "no batch meets another message under a held key",
                |_, s: &State| !s.ghost.conflict,
            ),
            Property::sometimes("two elections", |_, s: &State| {
                s.ghost.masters.iter().any(|m| m.0 == 2) && s.ghost.masters.iter().any(|m| m.0 == 3)
            }),
            Property::sometimes("a w = majority ack, then a failover", |_, s: &State| {
                s.ghost.majority_ack_then_failover
            }),
        ];
        if self.appends & 1 != 0 {
            properties.push(Property::sometimes(
                "a w = 1 message cut on rejoin",
                |_, s: &State| s.ghost.cut_w1,
            ));
        }
        if self.max_power_losses > 0 {
            properties.push(match self.fsync {
                Fsync::Always => Property::sometimes(
                    "a power loss left a history ahead of the keys before its last epoch",
                    |_, s: &State| s.ghost.history_ahead,
                ),
                Fsync::Interval => Property::sometimes(
                    "a power loss took a w >= majority message from a node",
                    |_, s: &State| s.ghost.lost_majority_ack,
                ),
            });
            if self.fsync == Fsync::Interval && self.hold != Hold::Off {
                properties.push(Property::sometimes(
                    "a node holding back after a power loss was let go",
                    |_, s: &State| s.ghost.hold_ended,
                ));
            }
            if self.fsync == Fsync::Interval && self.hold == Hold::Floor {
                properties.push(Property::sometimes(
                    "a node past its wait refused a candidate below its floor",
                    |_, s: &State| s.ghost.floor_refused,
                ));
            }
        }
        properties
    }
}

/// What the term's replication task sends `p` now: every key from the first not counted for
/// it, labelled by the master's history and its *current* epoch; with nothing to send, the
/// record alone until `p` holds it.
fn replicate_msg(model: &FailoverModel, node: &Node, t: &Term, p: usize) -> Option<Msg> {
    let last = node.contiguous();
    let from = t.counted[p] + 1;
    let entries: Vec<(u64, u8)> = (from..=last)
        .filter_map(|k| node.log.get(&k).map(|v| (k, *v)))
        .collect();
    if entries.is_empty() && t.holds_record[p] {
        return None;
    }
    Some(Msg::Replicate {
        term: t.epoch,
        epoch: if model.term_epoch_in_batches {
            t.epoch
        } else {
            node.epoch
        },
        history: node.history.pairs().to_vec(),
        entries,
        last_then: last,
    })
}

/// Checks `model` breadth first over every state within `steps` actions, prints the counts,
/// the time and a path to each discovery, and asserts every property. For runs by hand, the
/// environment may set `MODEL_STEPS` (another bound), `MODEL_CRASHES` and
/// `MODEL_POWER_LOSSES` (other fault budgets) and `MODEL_MAX_STATES` (stop there).
fn check_exhaustively(name: &str, model: FailoverModel, steps: usize) {
    let started = std::time::Instant::now();
    let env = |var: &str| {
        std::env::var(var)
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
    };
    let steps = env("MODEL_STEPS").unwrap_or(steps);
    let model = FailoverModel {
        max_crashes: env("MODEL_CRASHES").map_or(model.max_crashes, |n| n as u8),
        max_power_losses: env("MODEL_POWER_LOSSES").map_or(model.max_power_losses, |n| n as u8),
        ..model
    };
    let mut builder = model
        .checker()
        .threads(1)
        .target_max_depth(depth_for(steps));
    // For exploring a larger model by hand: stop after this many states.
    if let Some(n) = env("MODEL_MAX_STATES") {
        builder = builder.target_state_count(n);
    }
    let checker = builder.spawn_bfs().join();
    let elapsed = started.elapsed();
    println!(
        "{name}: {} unique states ({} visited) within {steps} actions, max depth {}, in {:.1?}",
        checker.unique_state_count(),
        checker.state_count(),
        checker.max_depth(),
        elapsed
    );
    for (property, path) in checker.discoveries() {
        println!("{name}: discovery {property:?}:");
        for action in path.clone().into_actions() {
            println!("  {action:?}");
        }
    }
    checker.assert_properties();
}

/// Breadth first to `steps` actions, stopping at the first failure: asserts that `property`
/// fails and returns the path found.
fn find_counterexample(
    name: &str,
    model: FailoverModel,
    steps: usize,
    property: &'static str,
) -> Vec<Action> {
    let checker = model
        .checker()
        .threads(1)
        .target_max_depth(depth_for(steps))
        .finish_when(stateright::HasDiscoveries::AnyFailures)
        .spawn_bfs()
        .join();
    println!(
        "{name}: {} unique states up to the first counterexample",
        checker.unique_state_count()
    );
    let actions = checker.assert_any_discovery(property).into_actions();
    for action in &actions {
        println!("  {action:?}");
    }
    actions
}

/// The code as it is under `fsync = "always"`: crashes, one power loss (a torn write), every
/// state within `MAX_STEPS` actions.
#[test]
fn failover_model_holds_its_invariants_exhaustively() {
    check_exhaustively("failover model (fsync always)", ALWAYS, MAX_STEPS);
}

/// The model of the code before review 13: breadth first, the check finds the counterexample
/// of `stale_master_counterexample` by itself (its shortest form is 11 steps to the new
/// master's taking office, 8 to its election, where leader completeness already fails).
#[test]
fn the_model_of_the_code_as_it_is_finds_the_stale_master_counterexample() {
    // The counterexample has no crash: a model without crashes finds it sooner.
    find_counterexample(
        "failover model as coded before review 13",
        FailoverModel {
            max_crashes: 0,
            ..AS_CODED
        },
        11,
        "a w >= majority message is in every later master's log when it is elected",
    );
}

/// The second counterexample: a batch of the master of epoch 1, routed while its receiver was
/// a secondary, reaches the receiver's writer once it is the master of epoch 2 (and has
/// written its own key 1): `adopt` stores nothing and the handler answers 200 with the new
/// master's contiguous key, which the old master counts as holding its key 1 and acknowledges
/// its message with w = 2 — while the master in office holds another one there. Reproduced with
/// real processes in `tests/it/t95_failover_model.rs`. The fix (review 13: a master's writer
/// refuses a replication batch, as the route does) is `routing_race: false` in `FIXED`.
#[test]
fn the_model_with_the_routing_race_finds_a_second_counterexample() {
    find_counterexample(
        "failover model with the routing race",
        FailoverModel {
            max_crashes: 0,
            ..FIXED_ROUTING_RACE
        },
        11,
        "a w >= majority message stays in the log of every later master in office",
    );
}

/// Applies `actions` to `model` from its initial state (each must be enabled) and returns
/// the states, the initial one first.
fn replay(model: &FailoverModel, actions: &[Action]) -> Vec<State> {
    let mut states = model.init_states();
    for a in actions {
        let s = states.last().expect("a state");
        let mut enabled = Vec::new();
        model.actions(s, &mut enabled);
        assert!(enabled.contains(a), "{a:?} is not enabled in {s:#?}");
        states.push(model.next_state(s, a.clone()).expect("a next state"));
    }
    states
}

/// The `always` properties that fail in `s`.
fn failing(model: &FailoverModel, s: &State) -> Vec<&'static str> {
    model
        .properties()
        .into_iter()
        .filter(|p| p.expectation == stateright::Expectation::Always && !(p.condition)(model, s))
        .map(|p| p.name)
        .collect()
}

/// The counterexample the model found in the code (reproduced with real processes in
/// `tests/it/t95_failover_model.rs`): a vote request of epoch 2 raises the epoch-1 master's
/// *current* epoch (`WriterTask::vote` raises it even when it refuses), and until
/// `guard_term` steps it down its batches carry `x-replog-epoch: 2`; a secondary that voted
/// in epoch 2 holds the same history, so `reconcile` takes the batch, and the master counts it
/// toward w = 2. The candidate of epoch 2, elected with that secondary's vote before it stored
/// the entry, takes office without it: the secondary cuts it when it takes the new record.
#[test]
fn stale_master_counterexample() {
    use Action::*;
    let env = |src, dst, msg| Envelope { src, dst, msg };
    let vote = |epoch| Msg::VoteReq {
        epoch,
        claim: (1, 0),
    };
    let trace = |header_epoch| {
        vec![
            // The master (node 0) appends message 2 with w = 2.
            Append(0, 1),
            // Node 2 stands in epoch 2; node 1 votes for it; the master refuses, in epoch 2.
            Stand(2),
            Deliver(env(2, 1, vote(2))),
            Deliver(env(2, 0, vote(2))),
            // The master, still in office, sends key 1 to node 1 labelled epoch 1 …
            Send(0, 1),
            Deliver(env(
                0,
                1,
                Msg::Replicate {
                    term: 1,
                    epoch: header_epoch,
                    history: vec![(1, 1)],
                    entries: vec![(1, 2)],
                    last_then: 1,
                },
            )),
            // … which node 1 stores, and the master acknowledges message 2 (w = 2).
            Deliver(env(
                1,
                0,
                Msg::Stored {
                    term: 1,
                    history: vec![(1, 1)],
                    last_then: 1,
                    contiguous: 1,
                    incarnation: 0,
                },
            )),
            // Node 2 is elected with node 1's vote, with an empty log, and takes office.
            Deliver(env(
                1,
                2,
                Msg::VoteReply {
                    asked: 2,
                    epoch: 2,
                    granted: true,
                },
            )),
            Send(2, 1),
            Deliver(env(
                2,
                1,
                Msg::Replicate {
                    term: 2,
                    epoch: 2,
                    history: vec![(2, 1)],
                    entries: vec![],
                    last_then: 0,
                },
            )),
            Deliver(env(
                1,
                2,
                Msg::Stored {
                    term: 2,
                    history: vec![(2, 1)],
                    last_then: 0,
                    contiguous: 0,
                    incarnation: 0,
                },
            )),
        ]
    };
    // As coded: message 2, acknowledged with w = 2, is not in the log of the master of epoch
    // 2 when it takes office (node 1 cut it).
    let states = replay(&AS_CODED, &trace(2));
    let last = states.last().expect("a state");
    assert_eq!(last.ghost.acks, vec![(1, 2, 2, 1)]);
    assert_eq!(
        failing(&AS_CODED, last),
        vec![
            "a w >= majority message is in every later master's log when it is elected",
            "a w >= majority message is in every later master's log when it takes office",
            "a w >= majority message stays in the log of every later master in office"
        ]
    );
    // With the fix the batch says epoch 1, node 1 refuses it (409), nothing is acknowledged.
    let fixed = replay(&FIXED, &trace(1)[..6]);
    let last = fixed.last().expect("a state");
    assert!(last.nodes[1].log.is_empty(), "{:?}", last.nodes[1]);
    assert!(
        !last.net.iter().any(|e| matches!(e.msg, Msg::Stored { .. })),
        "{:?}",
        last.net
    );
    assert!(failing(&FIXED, last).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Power loss

fn env(src: NodeId, dst: NodeId, msg: Msg) -> Envelope {
    Envelope { src, dst, msg }
}

fn vote_req(epoch: u64, claim: Completeness) -> Msg {
    Msg::VoteReq { epoch, claim }
}

fn vote_reply(asked: u64, epoch: u64, granted: bool) -> Msg {
    Msg::VoteReply {
        asked,
        epoch,
        granted,
    }
}

fn batch(term: u64, history: &[(u64, u64)], entries: &[(u64, u8)], last_then: u64) -> Msg {
    Msg::Replicate {
        term,
        epoch: term,
        history: history.to_vec(),
        entries: entries.to_vec(),
        last_then,
    }
}

fn stored(term: u64, history: &[(u64, u64)], last_then: u64, contiguous: u64, inc: u8) -> Msg {
    Msg::Stored {
        term,
        history: history.to_vec(),
        last_then,
        contiguous,
        incarnation: inc,
    }
}

/// The first four steps of every power-loss trace below: the master of epoch 1 (node 0)
/// appends message 2 with w = 2 at key 1, node 1 stores it, and the master acknowledges it.
fn majority_ack_on_nodes_0_and_1() -> Vec<Action> {
    use Action::*;
    vec![
        Append(0, 1),
        Send(0, 1),
        Deliver(env(0, 1, batch(1, &[(1, 1)], &[(1, 2)], 1))),
        Deliver(env(1, 0, stored(1, &[(1, 1)], 1, 1, 0))),
    ]
}

const ELECTED: &str = "a w >= majority message is in every later master's log when it is elected";
const IN_OFFICE: &str =
    "a w >= majority message is in every later master's log when it takes office";
const STAYS: &str = "a w >= majority message stays in the log of every later master in office";

/// Under `fsync = "interval"` with rule 9 as the code has it (`Hold::Floor`: a node back from
/// an unclean stop surveys the members, neither stands nor votes for its first wait, then
/// votes and stands only for a log as complete as the most complete it heard, until it has
/// caught up): one power loss of any node, every state within `MAX_STEPS` actions, the client
/// sending only the w = 2 append (whose loss the properties are about; the full model is the
/// ignored test below, too slow for CI).
#[test]
fn under_interval_rule_9_holds_its_invariants_for_a_majority_append() {
    check_exhaustively(
        "failover model (fsync interval, the w = 2 append)",
        FailoverModel {
            appends: 0b10,
            ..INTERVAL
        },
        MAX_STEPS,
    );
}

/// `under_interval_rule_9_holds_its_invariants_for_a_majority_append` with both appends
/// (`MODEL_CRASHES=1`: a kill -9 besides). Holds; by hand, as it takes longer than CI gives
/// (the figures are in `docs/failover.md`).
#[test]
#[ignore = "by hand: cargo test --release --test failover_model -- --ignored"]
fn under_interval_rule_9_holds_its_invariants_exhaustively() {
    check_exhaustively("failover model (fsync interval)", INTERVAL, MAX_STEPS);
}

/// **The counterexample against rule 9 before the fix** (fixed in a37bbae; reproduced with
/// real processes by `tests/it/t95_failover_model.rs`,
/// `t95_a_master_back_from_a_power_loss_does_not_vote_a_member_without_its_lost_tail_into_office`,
/// which failed before the fix and runs in CI now). Under `fsync = "interval"` a node counts
/// an entry once written, and a power loss may take it from that node; rule 9 as it was
/// coded kept the node from *standing* until its wait was over, but it still *voted*
/// (`INTERVAL_BEFORE_THE_VOTE_HOLD`), and its vote elected a third member that never had the
/// entry, over the one member still holding it. The checker finds it breadth first, so the
/// shortest: trace 2, 9 steps. Two traces (`before_the_fix_rule_9_let_*` replay them, and
/// show the code's node refusing the vote):
///
/// 1. A power loss of the **master** (12 steps to a master in office without the message):
///    `Append(0, 1)` (node 0, master of epoch 1, writes message 2 at key 1, w = 2); `Send(0, 1)`;
///    node 1 stores it; node 0 counts node 1 and acknowledges (w = 2); `PowerLoss(0, 1)`: key
///    1 was not yet fsynced on node 0; `Restart(0)` (unclean: it holds back, but votes);
///    `Stand(2)` (node 2, which never got key 1, stands in epoch 2 with (1, 0)); node 0 grants
///    (its log, (1, 0), is no more complete); node 2 is elected and opens epoch 2 at key 1;
///    `Send(2, 1)`; node 1 reconciles with history `[(2, 1)]` and cuts key 1 — the message
///    acknowledged with w = 2, held by a live member all along; node 1's answer puts node 2
///    in office.
/// 2. A power loss of the **secondary** that counted (9 steps to the election): the same
///    four steps; `PowerLoss(1, 1)`; `Restart(1)`; `Stand(2)`; node 1 grants; node 2 is
///    elected without key 1 while node 0, the master that holds it, is alive (node 2 must
///    not have heard from it for the election timeout, and node 1's vote must come before
///    node 0's next heartbeat reaches it).
///
/// With real timing, trace 1 needed node 2's election timer to fire (or its retry) before
/// node 1's, after node 0 was back up: the wait kept node 0 from standing, not node 2 from
/// winning with node 0's vote; node 1 need not be away at all, let alone for the whole wait.
/// The fix: a node holding back refuses votes and pre-votes too (`Hold::StandAndVote` in this
/// model, `Hold::UntilTime` as coded, whose end at a time lost the tail another way:
/// `under_interval_the_checker_finds_the_counterexample_against_a_hold_ending_at_a_time`; the
/// code's rule 9 now, `Hold::Floor`, is checked by `under_interval_rule_9_holds_*`).
#[test]
fn under_interval_the_checker_finds_the_counterexample_against_rule_9_before_the_fix() {
    let found = find_counterexample(
        "failover model (fsync interval, rule 9 before the fix)",
        INTERVAL_BEFORE_THE_VOTE_HOLD,
        9,
        ELECTED,
    );
    assert!(
        found.iter().any(|a| matches!(a, Action::PowerLoss(..))),
        "{found:?}"
    );
}

/// **The counterexample against a hold ending at a time** (rule 9 as coded from a37bbae to
/// the survey, `INTERVAL_UNTIL_TIME`; review t96's holes a, b and c are three ways to get
/// there with real timing). The node back from a power loss neither stands nor votes — but
/// only until its wait is over, whoever holds what it lost; the model has no time, so the
/// wait may end at any step (`HoldTimeEnds`). The checker finds, breadth first (10 steps to
/// the election):
///
/// `Append(0, 1)` (node 0, master of epoch 1, writes message 2 at key 1, w = 2); `Send(0, 1)`;
/// node 1 stores key 1; node 0 counts node 1 and acknowledges (w = 2); `PowerLoss(0, 1)`
/// (key 1 not yet fsynced on node 0); `Restart(0)` (it holds back); `HoldTimeEnds(0)` (node 1,
/// holding key 1, has not been elected meanwhile: hole a, a longer election timeout; b, away
/// just then; c, held back as long); `Stand(2)` (node 2, which never had key 1, stands in
/// epoch 2 with (1, 0)); node 0 grants (its own log is (1, 0) too); node 2 is elected without
/// key 1, and node 1 cuts it when it takes node 2's record.
///
/// With the survey (`Hold::Floor`, the code now) node 0 must have heard every member before
/// its wait ends; node 1 answered (1, 1), so node 0's floor is (1, 1) and it refuses node 2
/// (`a_hold_ending_at_a_time_elects_a_member_without_the_lost_tail_and_the_floor_refuses_it`).
#[test]
fn under_interval_the_checker_finds_the_counterexample_against_a_hold_ending_at_a_time() {
    let found = find_counterexample(
        "failover model (fsync interval, a hold ending at a time)",
        INTERVAL_UNTIL_TIME,
        10,
        ELECTED,
    );
    assert!(
        found.iter().any(|a| matches!(a, Action::HoldTimeEnds(..))),
        "{found:?}"
    );
}

/// The trace of `under_interval_the_checker_finds_the_counterexample_against_a_hold_ending_at_a_time`
/// replayed: with the hold ending at a time node 0's vote elects node 2 without key 1; with
/// the floor (the code), node 0 first hears node 1's (1, 1) and node 2's (1, 0), its wait
/// ends, and it refuses node 2 (without taking epoch 2); node 2 cannot stand either.
#[test]
fn a_hold_ending_at_a_time_elects_a_member_without_the_lost_tail_and_the_floor_refuses_it() {
    use Action::*;
    let mut trace = majority_ack_on_nodes_0_and_1();
    trace.extend([PowerLoss(0, 1), Restart(0)]);
    let request = [Stand(2), Deliver(env(2, 0, vote_req(2, (1, 0))))];
    let mut until_time = trace.clone();
    until_time.push(HoldTimeEnds(0));
    until_time.extend(request.clone());
    until_time.push(Deliver(env(0, 2, vote_reply(2, 2, true))));
    let states = replay(&INTERVAL_UNTIL_TIME, &until_time);
    let last = states.last().expect("a state");
    assert_eq!(last.ghost.acks, vec![(1, 2, 2, 1)]);
    assert!(last.nodes[2].term().is_some(), "node 2 is elected");
    assert_eq!(failing(&INTERVAL_UNTIL_TIME, last), vec![ELECTED]);

    let mut floor = trace;
    floor.extend([Survey(0, 1), Survey(0, 2), HoldTimeEnds(0)]);
    let states = replay(&INTERVAL, &floor);
    let node0 = &states.last().expect("a state").nodes[0];
    assert_eq!(node0.floor(&INTERVAL), Some((1, 1)));
    assert!(!node0.may_stand(&INTERVAL), "node 0 is below its floor");
    floor.extend(request);
    floor.push(Deliver(env(0, 2, vote_reply(2, 1, false))));
    let states = replay(&INTERVAL, &floor);
    let last = states.last().expect("a state");
    assert!(last.nodes[2].term().is_none(), "{:?}", last.nodes[2]);
    assert!(last.ghost.floor_refused);
    assert!(failing(&INTERVAL, last).is_empty());
}

/// Teeth: with rule 9 switched off the checker finds a counterexample too; among them the one
/// rule 9's stand hold is there for (replayed in `without_rule_9_the_power_lost_master_wins`).
#[test]
fn under_interval_without_rule_9_the_checker_finds_a_counterexample() {
    find_counterexample(
        "failover model (fsync interval, no rule 9)",
        INTERVAL_WITHOUT_RULE_9,
        9,
        ELECTED,
    );
}

/// Without rule 9 the master that lost key 1 in a power loss stands at once, node 2 (which
/// never had key 1) votes for it, and it opens epoch 2 at key 1 (review 13's
/// `t93_review_13_a_master_back_from_a_power_loss_does_not_win_over_a_holder_of_its_lost_tail`).
/// With rule 9 (before the fix or now) it cannot stand.
#[test]
fn without_rule_9_the_power_lost_master_wins() {
    use Action::*;
    let mut trace = majority_ack_on_nodes_0_and_1();
    trace.extend([
        PowerLoss(0, 1),
        Restart(0),
        Stand(0),
        Deliver(env(0, 2, vote_req(2, (1, 0)))),
        Deliver(env(2, 0, vote_reply(2, 2, true))),
        Send(0, 1),
        Deliver(env(0, 1, batch(2, &[(2, 1)], &[], 0))),
        Deliver(env(1, 0, stored(2, &[(2, 1)], 0, 0, 0))),
    ]);
    let states = replay(&INTERVAL_WITHOUT_RULE_9, &trace);
    let last = states.last().expect("a state");
    assert_eq!(last.ghost.acks, vec![(1, 2, 2, 1)]);
    assert!(last.nodes[1].log.is_empty(), "node 1 cut key 1");
    assert_eq!(
        failing(&INTERVAL_WITHOUT_RULE_9, last),
        vec![ELECTED, IN_OFFICE, STAYS]
    );
    for model in [
        &INTERVAL_BEFORE_THE_VOTE_HOLD,
        &INTERVAL_HOLD_UNTIL_REFILL,
        &INTERVAL_UNTIL_TIME,
        &INTERVAL,
    ] {
        let states = replay(model, &trace[..6]);
        let mut enabled = Vec::new();
        model.actions(states.last().expect("a state"), &mut enabled);
        assert!(!enabled.contains(&Stand(0)), "{enabled:?}");
    }
}

/// Trace 1 of `under_interval_the_checker_finds_the_counterexample_against_rule_9_before_the_fix`:
/// the master loses power, comes back holding back — and, before the fix, votes for node 2,
/// which never had key 1. The code's node refuses.
#[test]
fn before_the_fix_rule_9_let_a_power_lost_master_elect_a_member_without_its_lost_tail() {
    use Action::*;
    let mut trace = majority_ack_on_nodes_0_and_1();
    let vote = |epoch, granted| Deliver(env(0, 2, vote_reply(2, epoch, granted)));
    trace.extend([
        PowerLoss(0, 1),
        Restart(0),
        Stand(2),
        Deliver(env(2, 0, vote_req(2, (1, 0)))),
    ]);
    let mut before = trace.clone();
    before.extend([
        vote(2, true),
        Send(2, 1),
        Deliver(env(2, 1, batch(2, &[(2, 1)], &[], 0))),
        Deliver(env(1, 2, stored(2, &[(2, 1)], 0, 0, 0))),
    ]);
    let states = replay(&INTERVAL_BEFORE_THE_VOTE_HOLD, &before);
    let last = states.last().expect("a state");
    assert_eq!(last.ghost.acks, vec![(1, 2, 2, 1)]);
    assert!(last.nodes[1].log.is_empty(), "node 1 cut key 1");
    assert!(last.nodes[2].term().is_some_and(|t| t.in_office));
    assert_eq!(
        failing(&INTERVAL_BEFORE_THE_VOTE_HOLD, last),
        vec![ELECTED, IN_OFFICE, STAYS]
    );
    // The code: node 0 refuses (it holds back) and stays in epoch 1; node 2 is not elected.
    let mut fixed = trace;
    fixed.push(vote(1, false));
    let states = replay(&INTERVAL, &fixed);
    let last = states.last().expect("a state");
    assert!(last.nodes[2].term().is_none(), "{:?}", last.nodes[2]);
}

/// Trace 2 of `under_interval_the_checker_finds_the_counterexample_against_rule_9_before_the_fix`:
/// the secondary that counted loses power, and before the fix its vote elects node 2 while
/// the master holding key 1 is alive. The code's node refuses.
#[test]
fn before_the_fix_rule_9_let_a_power_lost_secondary_elect_a_member_without_its_lost_tail() {
    use Action::*;
    let mut trace = majority_ack_on_nodes_0_and_1();
    let vote = |epoch, granted| Deliver(env(1, 2, vote_reply(2, epoch, granted)));
    trace.extend([
        PowerLoss(1, 1),
        Restart(1),
        Stand(2),
        Deliver(env(2, 1, vote_req(2, (1, 0)))),
    ]);
    let mut before = trace.clone();
    before.push(vote(2, true));
    let states = replay(&INTERVAL_BEFORE_THE_VOTE_HOLD, &before);
    let last = states.last().expect("a state");
    assert!(last.nodes[2].term().is_some(), "node 2 is elected");
    assert_eq!(failing(&INTERVAL_BEFORE_THE_VOTE_HOLD, last), vec![ELECTED]);
    let mut fixed = trace;
    fixed.push(vote(1, false));
    let states = replay(&INTERVAL, &fixed);
    assert!(states.last().expect("a state").nodes[2].term().is_none());
}

/// Teeth for rule 3: ranking logs by the history's last epoch, the checker finds a message
/// acknowledged with w = 2 missing from a node elected after a torn write (14 steps, beyond
/// the exhaustive bound of the full model: the client sends only the w = 2 append and no
/// process crashes besides the power loss). The same small model with the code's rule 3
/// holds at that depth (`rule_3_holds_in_the_small_model_at_that_depth`, by hand).
#[test]
fn without_rule_3_the_checker_finds_a_counterexample_after_a_torn_write() {
    find_counterexample(
        "failover model (fsync always, no rule 3, the w = 2 append)",
        FailoverModel {
            appends: 0b10,
            max_crashes: 0,
            ..ALWAYS_WITHOUT_RULE_3
        },
        14,
        ELECTED,
    );
}

/// The small model of `without_rule_3_the_checker_finds_a_counterexample_after_a_torn_write`
/// with the code's rule 3: every state within 14 actions. Holds.
#[test]
#[ignore = "by hand: cargo test --release --test failover_model -- --ignored"]
fn rule_3_holds_in_the_small_model_at_that_depth() {
    check_exhaustively(
        "failover model (fsync always, the w = 2 append)",
        FailoverModel {
            appends: 0b10,
            max_crashes: 0,
            ..ALWAYS
        },
        14,
    );
}

/// Rule 3's counterexample written out (under `fsync = "always"`, 15 steps). Node 0 (master of epoch 1) acknowledges key 1 with w = 2 (itself and node 2);
/// node 2 is elected in epoch 2 (node 1's vote, cast before it had key 1) and sends node 1
/// its history `[(1, 1), (2, 2)]` with key 1; node 1 takes the history (on disk) and loses
/// power while key 1 is being written. Back, its log is empty under epoch 2's history. It
/// stands in epoch 3: ranked by the history's last epoch its claim is (2, 0), above node 0's
/// (1, 1), and node 0 elects it without key 1. Ranked by the epoch whose record it holds
/// (rule 3), its claim is (1, 0) and node 0 refuses.
#[test]
fn without_rule_3_a_torn_write_elects_a_log_without_a_majority_ack() {
    use Action::*;
    let h2 = [(1, 1), (2, 2)];
    let trace = |claim: Completeness, granted: bool| {
        vec![
            Append(0, 1),
            Send(0, 2),
            Send(0, 1),
            Deliver(env(0, 2, batch(1, &[(1, 1)], &[(1, 2)], 1))),
            Stand(2),
            Deliver(env(2, 1, vote_req(2, (1, 1)))),
            Deliver(env(2, 0, stored(1, &[(1, 1)], 1, 1, 0))),
            StepDown(0),
            Deliver(env(1, 2, vote_reply(2, 2, true))),
            Send(2, 1),
            DeliverTorn(env(2, 1, batch(2, &h2, &[(1, 2)], 1)), Tear::From(1)),
            Restart(1),
            Stand(1),
            Deliver(env(1, 0, vote_req(3, claim))),
            Deliver(env(0, 1, vote_reply(3, 3, granted))),
        ]
    };
    let states = replay(&ALWAYS_WITHOUT_RULE_3, &trace((2, 0), true));
    let last = states.last().expect("a state");
    assert_eq!(last.ghost.acks, vec![(1, 2, 2, 1)]);
    assert!(last.ghost.history_ahead);
    assert!(last.nodes[1].term().is_some(), "node 1 is elected");
    assert_eq!(failing(&ALWAYS_WITHOUT_RULE_3, last), vec![ELECTED]);
    let states = replay(&ALWAYS, &trace((1, 0), false));
    let last = states.last().expect("a state");
    assert!(last.nodes[1].term().is_none());
    assert!(failing(&ALWAYS, last).is_empty());
}
