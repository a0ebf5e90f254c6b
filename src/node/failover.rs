//! Failover (SPEC §11, `docs/failover.md`): elections, terms (epochs), the master's lease and
//! its stepping down. On only with `[failover] enabled = true`.
//!
//! Every node runs [`run`]: while it is a secondary it watches for word from the master of its
//! epoch ([`Failover::heard`], called by the handlers of the master's heartbeats and
//! replication requests); after `election_timeout` plus a random jitter without any, it runs a
//! pre-vote, then stands for the next epoch (its vote for itself on disk first) and asks every
//! member for its vote; with a majority it becomes the master ([`Node::become_master`]).
//! While it is a master it watches its term instead ([`Failover::guard_term`]): the lease (a
//! majority answered a heartbeat sent within `lease`), the taking of office (a majority holds
//! the record of its epoch), and any sign of a higher epoch, upon which it steps down at once.
//!
//! A node back from an unclean stop with a log not fsynced on every write *holds back*
//! (rule 9, [`Hold`]): it surveys the members' logs ([`survey`]) and, until it has caught up
//! with a master, votes and stands only for a log at least as complete as the best it heard.
//!
//! Names of the model (`tests/failover_model.rs`): `PreVote`, `Stand`, `Vote`, `TakeOffice`,
//! `StepDown`, `Lease`, `Survey`, `HoldTimeEnds`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{MasterState, Node};
use crate::config::SecondaryRef;
use crate::domain::epoch::History;
use crate::master::peer::Peer;
use crate::protocol::{Heartbeat, MasterRef, VoteBody, VoteReply};
use crate::storage::writer::VoteRequest;

/// A log as an election ranks it (rule 3): the epoch whose record it holds, and its contiguous
/// key below any key a script stored. Compared lexicographically.
pub type Completeness = (u64, u64);

/// Rule 3's rank of a log with `history`, holding every key up to `contiguous`, vouching for
/// its keys below `vouched_below` (see `Epochs::vouched_below`).
pub fn rank(history: &History, contiguous: u64, vouched_below: Option<u64>) -> Completeness {
    let vouched = vouched_below.map_or(u64::MAX, |k| k.saturating_sub(1));
    let held = contiguous.min(vouched);
    // Not the history's last epoch: the one whose record this log holds (`held_epoch`).
    (history.held_epoch(held), held)
}

/// Rule 9: this node came back from an unclean stop with a log not fsynced on every write,
/// and holds back (see [`Failover::new`]).
pub struct Hold {
    /// The end of the first wait (`master.recovery_wait_ms` after the start), during which it
    /// neither stands nor votes.
    pub until: Instant,
    /// Set until the node has caught up with a master ([`Failover::check_caught_up`]). Shared
    /// with the writer: a stop while it is set is recorded as unclean.
    pub holding: Arc<AtomicBool>,
    /// The epoch the node came back in (its `epochs` file at start).
    pub came_back_in: u64,
}

/// What a held node learnt from the members' `/heartbeat` ([`survey`]).
#[derive(Default)]
struct Survey {
    /// Per member: the completeness of its log as its last answer showed it.
    heard: HashMap<String, Heard>,
    /// The log of the first member that answered as the master of an epoch at least
    /// [`Hold::came_back_in`]: once this node's log is as complete, it has caught up. The
    /// first, not the largest since: that master already held every message acknowledged
    /// before this node's stop, and a target re-read every round would run ahead of a node
    /// that lags its master steadily, which would never catch up (review t97).
    target: Option<Completeness>,
}

/// A member's last answer to the survey.
struct Heard {
    completeness: Completeness,
    /// Since when every ask to it failed (`None`: the last one was answered). The entry
    /// counts toward the floor until asks have failed for `recovery_wait_ms`: silence is
    /// measured by asks that went unanswered, never by the time since the last answer, which
    /// also runs while this node itself is stopped (SIGSTOP, a stalled VM) and asks nothing —
    /// a held node paused past its wait forgot the member holding its lost tail and voted it
    /// away (review t97).
    silent_since: Option<Instant>,
}

/// The master of the current epoch as this node knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownMaster {
    pub epoch: u64,
    pub name: String,
    pub url: String,
}

/// A node's failover state; see the module docs.
pub struct Failover {
    /// Every member, this node included.
    pub members: Vec<SecondaryRef>,
    /// This node's member name and URL.
    pub me: SecondaryRef,
    pub election_timeout: Duration,
    /// A master takes appends only while a majority answered within this (rule 6).
    pub lease: Duration,
    /// When this node last heard from the master of its epoch (`None`: never since start).
    master_contact: Mutex<Option<Instant>>,
    /// The election timeout the master last heard from sent with its heartbeats (its own
    /// setting; the lease it keeps is 2/3 of it): no vote or candidacy before this long
    /// without word from it either, when it is longer than this node's (see [`Failover::quiet_for`]).
    master_timeout: Mutex<Option<Duration>>,
    /// The election timer runs from here: the last word from a master, a vote given, a
    /// failed candidacy, the end of this node's own term.
    timer_from: Mutex<Instant>,
    /// The master of the current epoch, if known (`None` while an election runs).
    master: Mutex<Option<KnownMaster>>,
    /// Set while this node stands for election.
    pub electing: AtomicBool,
    /// Candidacies so far: an election takes milliseconds, so a watcher that looks now and
    /// then (the event stream) learns from this that one ran between two looks.
    pub candidacies: AtomicU64,
    /// Wakes the election loop (a role change).
    pub nudge: Notify,
    /// Calls to other members (votes).
    peers: Vec<Peer>,
    /// The fingerprint of `members` (`protocol::members_fingerprint`), sent with votes and
    /// heartbeats.
    pub fingerprint: String,
    /// Back from an unclean stop with a log not fsynced on every write, this node holds back
    /// (rule 9; see [`Failover::new`]).
    hold: Option<Hold>,
    /// What the survey of a held node heard.
    survey: Mutex<Survey>,
    /// `master.recovery_wait_ms`: a held node's first wait, and how long a member's answer to
    /// the survey counts toward its floor.
    recovery_wait: Duration,
    /// Started with an empty log (new or wiped): no vote above epoch 1 until then, unless it
    /// heard from a master first (see [`Failover::new`]).
    fresh_until: Option<Instant>,
    /// Set once this node heard from a master of an epoch it accepts.
    heard_a_master: AtomicBool,
    /// Set once a master's heartbeat showed a member list other than this node's: the
    /// configuration is wrong somewhere, and majorities of two lists need not meet, so this
    /// node stands for no election until it is restarted (with the right list).
    pub lists_differ: AtomicBool,
}

impl Failover {
    /// `hold`: set when the node's last stop was not clean (kill -9, crash, power loss) and its
    /// log is not fsynced on every write (computed by `Node::with_store`, which also keeps a
    /// clean stop while it holds back from counting as clean). With such a log it may have
    /// lost a tail it had written — and counted toward a `w`, as master or secondary — that
    /// another member still holds. Its log ranks lower than that member's, but it could still
    /// be elected by the vote of a third, older log, or *give* its vote to such a log (its own
    /// no longer outranks it): either way the new epoch would cut that tail everywhere, a
    /// message acknowledged by a majority. So it holds back until it has caught up with a
    /// master: it surveys the members' logs ([`survey`]); for `master.recovery_wait_ms` (the
    /// wait a fixed master makes to take such a tail back) it neither stands nor votes; after
    /// that it votes and stands only for a log at least as complete as the most complete it
    /// heard within that long ([`Failover::floor`]). (Review 13 held back its candidacy only;
    /// the failover model's power loss found the vote; a hold that ended at a fixed time let
    /// the others elect a member without the tail when its holder stood late, was away at that
    /// moment, or held back too: review t96.)
    ///
    /// `empty`: the log is empty and knows no epoch — a new member, or one whose data was
    /// wiped. A wiped member has lost the votes it gave, too: in an epoch it voted in before,
    /// it could vote again, for another candidate, and two masters would hold that epoch; and
    /// holding nothing, every log is complete enough for it. So above epoch 1 (a new
    /// cluster's first election, where every member is new) it votes for no one until it
    /// hears from a master (which it then follows, learning the epochs), or for
    /// `master.recovery_wait_ms` at most: a candidacy it took part in before is over by then.
    /// (Review of this session, t96.)
    pub fn new(
        node_name: &str,
        settings: &crate::config::Settings,
        peers: Vec<Peer>,
        hold: Option<Hold>,
        empty: bool,
    ) -> Self {
        let me = settings
            .failover
            .members
            .iter()
            .find(|m| m.name == node_name)
            .cloned()
            .unwrap_or(SecondaryRef {
                name: node_name.to_string(),
                url: String::new(),
            });
        let election_timeout = settings.election_timeout();
        // Rule 9 works only if the hold outlasts the time a member holding the lost tail needs
        // to stand and win (t96: a 1 s wait against 1 s timeouts lost a w=2 ack). The other
        // members' timeouts are not known here: this node's own is the hint.
        let wait = Duration::from_millis(settings.master.recovery_wait_ms);
        if settings.storage.fsync != crate::config::FsyncPolicy::Always
            && wait < election_timeout * 3 / 2 + settings.heartbeat.timeout()
        {
            tracing::warn!(
                "master.recovery_wait_ms ({} ms) is shorter than 1.5 x the election timeout ({} ms) + heartbeat.timeout_ms: after an unclean stop under fsync = {:?} this node's hold may end before a member holding a tail it lost is elected, and a message acknowledged by a majority could be cut (docs/failover.md, rule 9); raise it above that for every member's election timeout",
                settings.master.recovery_wait_ms,
                election_timeout.as_millis(),
                format!("{:?}", settings.storage.fsync).to_lowercase(),
            );
        }
        let fresh_until =
            empty.then(|| Instant::now() + Duration::from_millis(settings.master.recovery_wait_ms));
        Failover {
            hold,
            survey: Mutex::new(Survey::default()),
            recovery_wait: wait,
            fresh_until,
            heard_a_master: AtomicBool::new(false),
            members: settings.failover.members.clone(),
            me,
            election_timeout,
            lease: election_timeout * 2 / 3,
            master_contact: Mutex::new(None),
            master_timeout: Mutex::new(None),
            timer_from: Mutex::new(Instant::now()),
            master: Mutex::new(None),
            electing: AtomicBool::new(false),
            candidacies: AtomicU64::new(0),
            nudge: Notify::new(),
            peers,
            fingerprint: crate::protocol::members_fingerprint(&settings.failover.members),
            lists_differ: AtomicBool::new(false),
        }
    }

    /// Whether the lease of master `m` holds now (`docs/failover.md`, rule 6): a majority of
    /// members, this one included, answered a heartbeat *sent* within the lease. Judged from
    /// the send times at the moment it is asked, never from [`MasterState::lease_ok`] alone:
    /// that is the verdict of the term's watch at its last tick, and after a pause of the
    /// process (SIGSTOP, a stalled VM) it is as old as the pause — a master resumed after a
    /// new one was elected would take appends on it before the watch runs again.
    pub fn lease_holds(&self, m: &MasterState) -> bool {
        let now = Instant::now();
        let answered = 1 + m
            .replicas
            .iter()
            .filter(|r| {
                r.last_ok_sent
                    .lock()
                    .is_some_and(|t| now.saturating_duration_since(t) < self.lease)
            })
            .count();
        answered >= self.majority()
    }

    /// How many members make a majority.
    pub fn majority(&self) -> usize {
        self.members.len() / 2 + 1
    }

    /// Word from the master of `epoch` (a heartbeat or replication request it sent): if
    /// `epoch` is at least this node's, the election timer starts again and `name` at `url` is
    /// the master; `timeout`: the master's election timeout, if it sent it. Returns whether
    /// the word counts.
    pub fn heard(
        &self,
        own_epoch: u64,
        epoch: u64,
        name: &str,
        url: &str,
        timeout: Option<Duration>,
    ) -> bool {
        if epoch < own_epoch {
            return false;
        }
        if let Some(t) = timeout {
            // At most a day: a number from the wire must not keep this node from ever voting.
            *self.master_timeout.lock() = Some(t.min(Duration::from_secs(86_400)));
        }
        let now = Instant::now();
        self.heard_a_master.store(true, Ordering::Release);
        *self.master_contact.lock() = Some(now);
        *self.timer_from.lock() = now;
        let mut m = self.master.lock();
        let known = KnownMaster {
            epoch,
            name: name.to_string(),
            url: url.to_string(),
        };
        if m.as_ref() != Some(&known) {
            *m = Some(known);
        }
        true
    }

    /// The shortest wait before standing again after a lost candidacy (a quarter of the
    /// election timeout; the loop adds up to as much again at random).
    fn retry_after_loss(&self) -> Duration {
        self.election_timeout / 4
    }

    fn restart_timer(&self) {
        *self.timer_from.lock() = Instant::now();
    }

    /// How long this node waits without word from its master before it stands or votes: its
    /// own election timeout, or the master's if that is longer. Election timeouts are set per
    /// node, and the lease argument (`docs/failover.md`, rule 6) holds only if the master's
    /// lease (2/3 of *its* timeout) ends before any member may vote for another.
    pub fn quiet_for(&self) -> Duration {
        self.master_timeout
            .lock()
            .map_or(self.election_timeout, |t| t.max(self.election_timeout))
    }

    /// A master's heartbeat carried the fingerprint `theirs` of its member list: if it is not
    /// this node's, the configuration differs between nodes (SPEC §11: "the same list on every
    /// node"), which this node says loudly and answers by standing for no election.
    pub fn check_members(&self, theirs: &str, master: &str) {
        if theirs != self.fingerprint && !self.lists_differ.swap(true, Ordering::AcqRel) {
            tracing::error!(
                master = %master,
                "the master {master} has another failover.members list than this node (fingerprint {theirs}, here {}): this node stands for no election until it is restarted with the same list as every other node",
                self.fingerprint
            );
        }
    }

    /// Whether this node heard from a master within [`Failover::quiet_for`].
    pub fn heard_recently(&self) -> bool {
        let quiet = self.quiet_for();
        self.master_contact
            .lock()
            .is_some_and(|t| t.elapsed() < quiet)
    }

    /// Whether this node still holds back after an unclean stop: it has not caught up with a
    /// master yet (rule 9).
    pub fn holding_back(&self) -> bool {
        self.hold
            .as_ref()
            .is_some_and(|h| h.holding.load(Ordering::Acquire))
    }

    /// Whether this node is in the first wait of its hold: no candidacy, no vote (rule 9).
    pub fn in_first_wait(&self) -> bool {
        self.hold
            .as_ref()
            .is_some_and(|h| h.holding.load(Ordering::Acquire) && Instant::now() < h.until)
    }

    /// The floor of a held node whose own log is `own`: the most complete of `own` and every
    /// member's log it heard, unless asks to that member have failed for `recovery_wait_ms`
    /// since, with the member it came from (`None`: its own).
    pub fn floor(&self, own: Completeness) -> (Completeness, Option<String>) {
        let now = Instant::now();
        let survey = self.survey.lock();
        let mut best = (own, None);
        for (name, h) in &survey.heard {
            let counts = h
                .silent_since
                .is_none_or(|t| now.saturating_duration_since(t) < self.recovery_wait);
            if counts && h.completeness > best.0 {
                best = (h.completeness, Some(name.clone()));
            }
        }
        best
    }

    /// Whether this node, whose log is `own`, holds back and would refuse a log `other` (a
    /// candidate's, or its own before it stands): `Some(why)` if so. Ends the hold first if
    /// the node has caught up.
    pub fn below_floor(&self, own: Completeness, other: Completeness) -> Option<String> {
        if !self.holding_back() || self.check_caught_up(own) {
            return None;
        }
        let (floor, whose) = self.floor(own);
        (other < floor).then(|| {
            format!(
                "this node is back from an unclean stop and has not caught up with a master yet: it takes part only in the election of a log at least as complete as the most complete it heard ({}: last epoch {}, contiguous key {})",
                whose.as_deref().unwrap_or("its own"),
                floor.0,
                floor.1
            )
        })
    }

    /// Ends the hold once this node, whose log is `own`, has caught up: it holds the record of
    /// an epoch above the one it came back in (a master elected since brought its log in
    /// line), or its log is at least as complete as a master's that answered the survey (that
    /// master held every message acknowledged before this node's stop). Returns whether it has.
    pub fn check_caught_up(&self, own: Completeness) -> bool {
        let Some(hold) = &self.hold else {
            return true;
        };
        if !hold.holding.load(Ordering::Acquire) {
            return true;
        }
        let target = self.survey.lock().target;
        let caught_up = own.0 > hold.came_back_in || target.is_some_and(|t| own >= t);
        if caught_up && hold.holding.swap(false, Ordering::AcqRel) {
            tracing::info!(
                last_epoch = own.0,
                contiguous_key = own.1,
                "caught up with a master after the unclean stop (log: last epoch {}, contiguous key {}): this node votes and stands as any other again",
                own.0,
                own.1
            );
        }
        caught_up
    }

    /// An answer of member `name` to the survey.
    fn surveyed(&self, name: &str, h: &Heartbeat) {
        let Ok(history) = History::from_pairs(h.epochs.clone()) else {
            return;
        };
        let c = rank(&history, h.contiguous_key, h.unlabelled_from);
        let mut survey = self.survey.lock();
        survey.heard.insert(
            name.to_string(),
            Heard {
                completeness: c,
                silent_since: None,
            },
        );
        let came_back_in = self.hold.as_ref().map_or(0, |h| h.came_back_in);
        if h.role == "master" && history.last_epoch() >= came_back_in && survey.target.is_none() {
            survey.target = Some(c);
        }
    }

    /// An ask of the survey to member `name` went unanswered (observed now, after this node
    /// waited for it: a stop of this node in between does not count as the member's silence).
    fn unanswered(&self, name: &str) {
        if let Some(h) = self.survey.lock().heard.get_mut(name) {
            h.silent_since.get_or_insert_with(Instant::now);
        }
    }

    /// Whether this node, started with an empty log, still votes in no epoch above 1 (see
    /// [`Failover::new`]).
    pub fn fresh_hold(&self) -> bool {
        self.fresh_until.is_some_and(|t| Instant::now() < t)
            && !self.heard_a_master.load(Ordering::Acquire)
    }

    /// Until when this node must not stand (see [`Failover::quiet_for`]).
    fn quiet_until(&self) -> Option<Instant> {
        let quiet = self.quiet_for();
        self.master_contact.lock().map(|t| t + quiet)
    }

    /// The master as far as this node knows.
    pub fn known_master(&self) -> Option<KnownMaster> {
        self.master.lock().clone()
    }

    /// The master as `/health` shows it.
    pub fn master_ref(&self) -> Option<MasterRef> {
        self.known_master().map(|m| MasterRef {
            name: m.name,
            url: m.url,
        })
    }

    fn forget_master(&self) {
        *self.master.lock() = None;
    }

    fn set_master(&self, m: KnownMaster) {
        *self.master.lock() = Some(m);
    }

    /// Asks every other member for its (pre-)vote; counts this node's own. True with a
    /// majority. An answer with a higher epoch is taken (and ends the round: false).
    ///
    /// The round ends as soon as the outcome is known — a majority granted, or an answer
    /// with a higher epoch — rather than when the last member answers: a paused or dead
    /// member would otherwise hold every election for a whole heartbeat timeout, twice
    /// (pre-vote and vote). Answers still in flight are dropped; a vote a member grants after
    /// that is harmless (its epoch is this one, which is already decided).
    async fn round(&self, node: &Arc<Node>, body: VoteBody) -> bool {
        use futures::StreamExt;
        let timeout = node.settings.heartbeat.timeout();
        let mut asks: futures::stream::FuturesUnordered<_> = self
            .peers
            .iter()
            .map(|p| {
                let body = body.clone();
                async move { (p.name.clone(), p.vote(&body, timeout).await) }
            })
            .collect();
        let mut yes = 1;
        let mut highest = 0;
        let stale = |highest: u64| {
            if body.pre_vote {
                highest >= body.epoch
            } else {
                highest > body.epoch
            }
        };
        while yes < self.majority() && !stale(highest) {
            let Some((name, a)) = asks.next().await else {
                break;
            };
            match a {
                Ok(VoteReply {
                    granted: true,
                    epoch,
                    ..
                }) => {
                    yes += 1;
                    highest = highest.max(epoch);
                }
                Ok(VoteReply { epoch, reason, .. }) => {
                    highest = highest.max(epoch);
                    tracing::debug!(member = %name, reason = %reason, "{name} refused its vote: {reason}");
                }
                Err(e) => {
                    tracing::debug!(member = %name, cause = %e, "{name} did not answer the vote: {e}")
                }
            }
        }
        if stale(highest) {
            let _ = node.writer.raise_epoch(highest).await;
            return false;
        }
        yes >= self.majority()
    }
}

/// How a candidacy ended.
enum Candidacy {
    /// Elected in this epoch.
    Won(u64),
    /// The pre-vote found no majority that lost the master too, or the node had moved on
    /// meanwhile (it voted for another candidate): nothing was stood for.
    NotStood,
    /// It stood and did not win (a split vote, or a member that did not answer in time).
    Lost,
}

/// The election loop of a node with failover on; see the module docs. `stand_first`: the node
/// configured as the master starts for the first time (no epoch yet) and stands at once.
pub async fn run(node: Arc<Node>, f: Arc<Failover>, stand_first: bool) {
    let mut rng_state = rand::random::<u64>() | 1;
    let mut jitter = move |max: Duration| {
        // xorshift: a jitter needs no better randomness.
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        Duration::from_millis(rng_state % (max.as_millis() as u64).max(1))
    };
    // A node that voted for itself in the last epoch it knows was a candidate or the master
    // there: it stands at once (docs/failover.md, rule 9).
    let e = node.writer.current_epochs();
    // Back from an unclean stop it holds back (see `Failover::new`). It stands only an
    // election timeout after its first wait: a member holding the tail it lost has been
    // standing meanwhile (refused by this node), and must win the race that starts once this
    // node votes; this node, standing at once, would race it with a log no better than
    // another held node's, and their two votes would elect one of them. Caught up with a
    // master, it need not wait.
    let stand_from = f.hold.as_ref().map(|h| h.until + f.election_timeout);
    if f.hold.is_some() {
        tracing::warn!(
            "the last stop was not clean and the log is not fsynced on every write: until this node has caught up with a master it holds back, so that a member holding a tail it lost is elected first: for {} ms (master.recovery_wait_ms) it stands for no election and votes in none, then only for a log at least as complete as the most complete a member showed it",
            node.settings.master.recovery_wait_ms
        );
        tokio::spawn(survey(node.clone(), f.clone()));
    }
    let hold_until = || stand_from.filter(|_| f.holding_back());
    let held = || hold_until().is_some_and(|h| Instant::now() < h);
    // After a lost candidacy (a split vote), the next one comes after a short random delay,
    // not a whole election timeout: no master is there to be disturbed, and the randomness
    // is what separates two candidates that stood together.
    let mut retry_at: Option<Instant> = None;
    let mut stand_now = hold_until().is_none()
        && (stand_first || (e.current > 0 && e.voted_for.as_deref() == Some(f.me.name.as_str())));
    loop {
        if node.shutdown.is_cancelled() {
            return;
        }
        if let Some(m) = node.master() {
            f.guard_term(&node, &m).await;
            // Stepped down (or shutting down): a new election timer starts now.
            f.restart_timer();
            continue;
        }
        let wait = if stand_now {
            Duration::ZERO
        } else if let Some(t) = retry_at.take() {
            let t = hold_until().map_or(t, |h| h.max(t));
            t.saturating_duration_since(Instant::now())
        } else {
            let j = jitter(f.election_timeout / 2);
            let timer = *f.timer_from.lock() + f.election_timeout + j;
            let deadline = f.quiet_until().map_or(timer, |q| (q + j).max(timer));
            let deadline = hold_until().map_or(deadline, |h| h.max(deadline));
            deadline.saturating_duration_since(Instant::now())
        };
        if !wait.is_zero() {
            tokio::select! {
                _ = node.shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                _ = f.nudge.notified() => {}
            }
            // The timer was restarted meanwhile (word from a master, a vote given).
            if f.timer_from.lock().elapsed() < f.election_timeout
                || node.is_master()
                || f.heard_recently()
                || held()
            {
                continue;
            }
        }
        stand_now = false;
        if f.lists_differ.load(Ordering::Acquire) {
            // See `Failover::check_members`: no candidacy on a list the others do not share.
            f.restart_timer();
            continue;
        }
        f.forget_master();
        f.candidacies.fetch_add(1, Ordering::AcqRel);
        f.electing.store(true, Ordering::Release);
        let elected = stand(&node, &f).await;
        f.electing.store(false, Ordering::Release);
        match elected {
            Candidacy::Won(epoch) => match node.become_master(Some(epoch)).await {
                Ok(_) => tracing::info!(epoch, "elected master in epoch {epoch}"),
                Err(e) => {
                    tracing::error!(cause = %e, "elected in epoch {epoch} but could not take office: {e}")
                }
            },
            Candidacy::Lost => {
                // A split vote or a member slow to answer: try again soon (see `retry_at`),
                // unless a master shows up or this node votes for another meanwhile (both
                // restart the timer, which the wake-up above checks).
                // The timer as if it ran out just now, so the wake-up check lets the retry
                // through unless it is restarted meanwhile.
                let now = Instant::now();
                *f.timer_from.lock() = now.checked_sub(f.election_timeout).unwrap_or(now);
                let base = f.retry_after_loss();
                retry_at = Some(now + base + jitter(base));
            }
            Candidacy::NotStood => {
                // Not this time: try again after another timeout, unless a master shows up.
                f.restart_timer();
                // The configured master's very first start (`stand_first`): while no member
                // has shown it an epoch (they are not all up yet), it tries again soon, so
                // that a new cluster starts with the master it was configured with.
                if stand_first
                    && node.writer.current_epochs().current == 0
                    && f.known_master().is_none()
                {
                    tokio::select! {
                        _ = node.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(node.settings.heartbeat.interval()) => {}
                    }
                    stand_now = true;
                }
            }
        }
    }
}

/// A held node's survey (rule 9): every heartbeat interval, until it has caught up with a
/// master, it asks every other member `GET /heartbeat` and keeps the completeness of its log
/// ([`Failover::floor`]). The request carries no master's name: it teaches the member nothing.
async fn survey(node: Arc<Node>, f: Arc<Failover>) {
    use futures::StreamExt;
    let timeout = node.settings.heartbeat.timeout();
    let every = node.settings.heartbeat.interval();
    while f.holding_back() {
        let epoch = node.writer.current_epochs().current;
        let mut asks: futures::stream::FuturesUnordered<_> = f
            .peers
            .iter()
            .map(|p| async move { (p, p.heartbeat(timeout, epoch).await) })
            .collect();
        let round = async {
            while let Some((p, answer)) = asks.next().await {
                match answer {
                    Ok(h) => f.surveyed(&p.name, &h),
                    Err(e) => {
                        tracing::debug!(member = %p.name, cause = %e, "survey: {} did not answer: {e}", p.name);
                        f.unanswered(&p.name);
                    }
                }
            }
        };
        tokio::select! {
            _ = node.shutdown.cancelled() => return,
            _ = round => {}
        }
        if f.check_caught_up(node.completeness()) {
            return;
        }
        tokio::select! {
            _ = node.shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// One candidacy: pre-vote, then stand and ask for votes.
async fn stand(node: &Arc<Node>, f: &Arc<Failover>) -> Candidacy {
    let e = node.writer.current_epochs();
    let (last_epoch, last_key) = node.completeness();
    // Held back, it stands only with a log at least as complete as any it heard (rule 9).
    if let Some(why) = f.below_floor((last_epoch, last_key), (last_epoch, last_key)) {
        tracing::info!("not standing: {why}");
        return Candidacy::NotStood;
    }
    let pre = VoteBody {
        epoch: e.current + 1,
        candidate: f.me.name.clone(),
        last_epoch,
        last_key,
        pre_vote: true,
        members: Some(f.fingerprint.clone()),
    };
    if !f.round(node, pre).await {
        tracing::debug!("pre-vote for epoch {} failed", e.current + 1);
        return Candidacy::NotStood;
    }
    // While the pre-vote ran, another candidate may have stood and had this node's vote (its
    // epoch is then above the one the pre-vote was for): standing now, one epoch higher,
    // would undo the election about to succeed. (Nemesis, failover seed 1000.)
    if node.writer.current_epochs().current != e.current || node.is_master() {
        tracing::debug!(
            "not standing: epoch {} moved on during the pre-vote",
            e.current
        );
        return Candidacy::NotStood;
    }
    let Ok(epoch) = node.writer.stand(f.me.name.clone()).await else {
        return Candidacy::NotStood;
    };
    tracing::info!(
        epoch,
        "standing for election in epoch {epoch} (log: last epoch {last_epoch}, contiguous key {last_key})"
    );
    let ask = VoteBody {
        epoch,
        candidate: f.me.name.clone(),
        last_epoch,
        last_key,
        pre_vote: false,
        members: Some(f.fingerprint.clone()),
    };
    let won = f.round(node, ask).await;
    // Still this epoch's candidate? (a higher epoch may have come in meanwhile)
    let now = node.writer.current_epochs();
    if won && now.current == epoch && now.voted_for.as_deref() == Some(f.me.name.as_str()) {
        Candidacy::Won(epoch)
    } else {
        Candidacy::Lost
    }
}

impl Failover {
    /// While this node is the master `m`: keeps its lease and office up to date, and steps
    /// down on a higher epoch or after `election_timeout` without a majority.
    async fn guard_term(&self, node: &Arc<Node>, m: &Arc<MasterState>) {
        self.set_master(KnownMaster {
            epoch: m.epoch,
            name: self.me.name.clone(),
            url: self.me.url.clone(),
        });
        let tick = node
            .settings
            .heartbeat
            .interval()
            .min(self.lease / 4)
            .max(Duration::from_millis(10));
        let mut majority_since = Instant::now();
        loop {
            tokio::select! {
                _ = node.shutdown.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
                _ = m.signals.changed.notified() => {}
            }
            if !node.master().is_some_and(|x| Arc::ptr_eq(&x, m)) {
                return;
            }
            let higher = m.signals.higher_epoch.load(Ordering::Acquire);
            if higher > m.epoch {
                tracing::warn!(
                    epoch = m.epoch,
                    higher,
                    "a member is in epoch {higher}: stepping down from epoch {}",
                    m.epoch
                );
                let _ = node.writer.raise_epoch(higher).await;
                let _ = node.become_secondary().await;
                return;
            }
            let now = Instant::now();
            let has_majority = self.lease_holds(m);
            m.lease_ok.store(has_majority, Ordering::Release);
            if has_majority {
                majority_since = now;
            } else if now.duration_since(majority_since) >= self.election_timeout {
                tracing::warn!(
                    epoch = m.epoch,
                    "no majority for {:?}: stepping down",
                    self.election_timeout
                );
                let _ = node.become_secondary().await;
                return;
            }
            if !m.in_office.load(Ordering::Acquire) {
                let holding = 1 + m
                    .replicas
                    .iter()
                    .filter(|r| r.holds_record.load(Ordering::Acquire))
                    .count();
                if holding >= self.majority() {
                    m.in_office.store(true, Ordering::Release);
                    tracing::info!(
                        epoch = m.epoch,
                        "took office in epoch {}: a majority holds its record",
                        m.epoch
                    );
                }
            }
        }
    }
}

impl Node {
    /// This node's log as an election compares it: the last epoch of its history and its
    /// contiguous key, below any key a script stored (`docs/failover.md`, rule 3).
    pub fn completeness(&self) -> Completeness {
        let e = self.writer.current_epochs();
        rank(&e.history, self.acknowledged_key(), e.vouched_below())
    }

    /// `POST /vote`: a member's answer to a candidate (`docs/failover.md`, rule 2). A master
    /// that learns of a higher epoch this way steps down.
    pub async fn answer_vote(
        self: &Arc<Self>,
        body: VoteBody,
    ) -> Result<VoteReply, crate::storage::writer::WriteError> {
        let Some(f) = &self.failover else {
            return Ok(VoteReply {
                epoch: 0,
                granted: false,
                reason: "failover is off on this node".into(),
            });
        };
        if !f.members.iter().any(|m| m.name == body.candidate) {
            return Ok(VoteReply {
                epoch: self.writer.current_epochs().current,
                granted: false,
                reason: format!("{} is not a member", body.candidate),
            });
        }
        if let Some(theirs) = &body.members
            && *theirs != f.fingerprint
        {
            return Ok(VoteReply {
                epoch: self.writer.current_epochs().current,
                granted: false,
                reason: format!(
                    "{} has another failover.members list than this node (fingerprint {theirs}, here {})",
                    body.candidate, f.fingerprint
                ),
            });
        }
        if f.in_first_wait() {
            return Ok(VoteReply {
                epoch: self.writer.current_epochs().current,
                granted: false,
                reason: format!(
                    "this node is back from an unclean stop and may have lost a tail another member holds: it votes in no election for master.recovery_wait_ms ({} ms) after its start",
                    self.settings.master.recovery_wait_ms
                ),
            });
        }
        if let Some(why) = f.below_floor(self.completeness(), (body.last_epoch, body.last_key)) {
            return Ok(VoteReply {
                epoch: self.writer.current_epochs().current,
                granted: false,
                reason: format!(
                    "{why}; {} has last epoch {}, contiguous key {}",
                    body.candidate, body.last_epoch, body.last_key
                ),
            });
        }
        if body.epoch > 1 && f.fresh_hold() {
            return Ok(VoteReply {
                epoch: self.writer.current_epochs().current,
                granted: false,
                reason: format!(
                    "this node started with an empty log (new or wiped) and may have voted in this epoch before it lost its data: it votes above epoch 1 only once it has heard from a master, or master.recovery_wait_ms ({} ms) after its start",
                    self.settings.master.recovery_wait_ms
                ),
            });
        }
        let master = self.master();
        let heard_master = master.is_some() || f.heard_recently();
        let answer = self
            .writer
            .vote(VoteRequest {
                epoch: body.epoch,
                candidate: body.candidate.clone(),
                last_epoch: body.last_epoch,
                last_key: body.last_key,
                pre_vote: body.pre_vote,
                heard_master,
            })
            .await?;
        if let Some(m) = master {
            m.signals.saw_epoch(answer.epoch);
        }
        if answer.granted && !body.pre_vote {
            tracing::info!(epoch = body.epoch, candidate = %body.candidate, "voted for {} in epoch {}", body.candidate, body.epoch);
            f.restart_timer();
        }
        Ok(VoteReply {
            epoch: answer.epoch,
            granted: answer.granted,
            reason: answer.reason,
        })
    }
}
