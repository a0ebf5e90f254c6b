//! The history checker: what replog promises, held against what a schedule recorded.
//!
//! Every rule is sound: it flags only what a correct replog could never do, whatever the
//! machine's timing. Times are the test's (`sent` before a request left, `recv` after its
//! answer arrived), so whatever a node did while serving a request happened in between.
//! A *promise* is an append answer that names a key: 201, 200 (duplicate) or 504.
//!
//! 1. **One log.** After healing every node shows keys 1..=n without a gap, the same value
//!    under each key, and no value twice (every message has a unique value).
//! 2. **Acknowledged means kept.** A promised message is in that log exactly once, under the
//!    key of every promise (kill -9 loses nothing under any fsync policy —
//!    `docs/durability.md` — and a 504 promises "appended, replication pending"; the
//!    master's data dir is never wiped). A 200 duplicate needs an earlier attempt of the same
//!    id that may have been appended, and a 201 never follows a 504 of the same id. Only a
//!    master power loss excuses anything here (below).
//! 3. **Refused means not appended.** A message whose every attempt was refused (503
//!    read-only or recovering) is not in the log; one with an attempt of unknown outcome (no
//!    answer, client timeout) is there at most once. Nothing else is in the log.
//! 4. **Reads.** A `GET /messages?from=K` answer holds consecutive keys from K; every
//!    (key, value) it shows is the final log's, and its message was sent before the read's
//!    answer arrived.
//! 5. **Write concern.** A 201/200 with w=k was held by ≥ k nodes when answered. Counted the
//!    safe way round: every node is assumed to hold it, except a secondary that a `/health`
//!    sent after the answer arrived — at any later time, as long as the secondary was not
//!    wiped or power-lost since the message's first attempt was sent (a 200 duplicate counts
//!    acks from then; the master cannot know that a secondary still down lost one) — shows
//!    without it (`contiguous_key` < K and `held_aside` 0: a secondary reports the two as
//!    one snapshot, and keeps what it acknowledged, through kill -9 too, so what it lacks
//!    later it lacked then).
//! 6. **Read-only only without quorum.** A 503 read-only needs, at some instant between its
//!    sending and its answer, at least `secondaries + 2 - quorum` secondaries that were down
//!    (paused, killed, restarting, partitioned off the network) or had been down until at
//!    most `interval + timeout + MARGIN` of the master's running time before (a resumed
//!    secondary is healthy again after its next heartbeat; the master's clock stands still
//!    while it is paused). While the master itself is partitioned off, every secondary
//!    counts as down (its heartbeats reach none), with the same slack after the reconnect.
//! 7. **Recovering only after a restart.** A 503 recovering needs a master restart that ended
//!    at most `interval + timeout + MARGIN` of master running time before the request — plus
//!    `master.recovery_wait_ms` after an unclean restart (kill -9 or power loss: every master
//!    restart of the nemesis) under fsync `interval` / `never`, where the master may wait
//!    that long for a secondary that does not answer its heartbeats.
//! 8. **No other answers.** The load sends only valid appends: any other status is a
//!    violation, and so is a 504 before its `timeout_ms` ran out (`recv - sent` <
//!    `timeout_ms`; without `timeout_ms` the master waits for ever) and a problem of the run
//!    itself (a node not back, no convergence, a master not taking appends after a power
//!    loss).
//! 9. **Real-time order.** A message promised key `a` at `recv` gets only keys above `a`
//!    for every message whose first attempt was sent after `recv`: the keys of its promises
//!    and its key in the final log. (Keys are assigned in order by one writer; a key assigned
//!    later is higher.)
//! 10. **Liveness after healing.** The schedule ends with a bounded phase of appends sent once
//!     every fault has healed and the cluster had time to settle (`settled_at`: every node up
//!     again, and heartbeat timing + MARGIN later — after the last master restart, plus the
//!     recovery wait of rule 7). Each of its attempts must be answered within
//!     `LIVENESS_ANSWER_S`, with a promise (201, 200, or 504 once its `timeout_ms` ran out):
//!     no answer, a 503 or any other status is a violation.
//!
//! **Power losses** (fsync `never` schedules: kill -9, then a random tail of the node's
//! newest segment cut, then a restart).
//!
//! - Of a **secondary**: the master holds everything it acknowledged and resends it, so
//!   every rule holds as it is; only rule 5 treats it like a wipe (what the secondary lacks
//!   afterwards it may have held when it answered).
//! - Of the **master**: right after the kill the runner reads every secondary's own gap-free
//!   prefix (`GET /messages`); every secondary is up then, and no fault touches a secondary
//!   until the restarted master takes appends again, so the master hears from each during
//!   its recovery and takes back the longest prefix that matches its own log. P is the
//!   longest prefix that surely matches: at the first master power loss of a schedule the
//!   longest of them (every master until then kept all it wrote); at a later one, a
//!   secondary counts in full if it holds a value first sent after the previous master power
//!   loss (it has taken the new master's log since, cutting what the lost master left on it),
//!   else no further than it counted then (it may still hold a tail that only the lost master
//!   had, e.g. from a batch that landed late). A promise of key k from an attempt
//!   sent before the power loss with k > P *may be lost*: rule 2 lets that message be
//!   missing, or (its id forgotten) be appended anew by a later attempt — so a later promise
//!   may name another key, and a 201 may follow such a 504. Rule 5 takes no proof for k > P
//!   from a probe sent after the power loss, and rule 9 orders nothing after such a promise.
//!   Rule 4 lets a read show (k, value) with k > P that the final log does not have, if that
//!   value was sent before the power loss: a read answered before it may have seen it, and
//!   so may one answered after it — a batch the dead master sent can still land on a
//!   secondary (a `/delay` holds it up to 4 s) and stay visible there until the new master
//!   reconciles that secondary. Keys ≤ P are kept under their key like any other.

use std::collections::HashMap;

use crate::history::{Answer, Attempt, History, MasterPowerLoss, Message, Span};

/// Slack for a loaded machine on top of the heartbeat timing, in seconds of master time.
pub const MARGIN: f64 = 3.0;

/// Rule 10: how long an append sent after the cluster settled may take to be answered. The
/// slowest legitimate answers then wait out a `/delay` still armed on a secondary (≤ 4 s),
/// or a replication request on a connection that died in a partition (5 s request timeout,
/// then ≤ 1 s retry delay); a `timeout_ms` of the phase is at most 5 s.
pub const LIVENESS_ANSWER_S: f64 = 15.0;

pub fn check(h: &History) -> Vec<String> {
    let mut v: Vec<String> = h.run_errors.clone();
    let all = h.secondaries + 1;
    let losses = master_losses(h);
    let losses = losses.as_slice();

    // 1. One log.
    let reference = one_log(h, &mut v);
    let mut at: HashMap<&str, Vec<u64>> = HashMap::new();
    for (k, val) in &reference {
        at.entry(val.as_str()).or_default().push(*k);
    }
    let by_key: HashMap<u64, &str> = reference.iter().map(|(k, s)| (*k, s.as_str())).collect();
    let by_value: HashMap<&str, &Message> =
        h.messages.iter().map(|m| (m.value.as_str(), m)).collect();
    for (val, keys) in &at {
        if !by_value.contains_key(val) {
            v.push(format!("keys {keys:?} hold {val:?}, which no client sent"));
        }
    }

    // 2., 3. and 8. per message.
    for m in &h.messages {
        let keys = at.get(m.value.as_str()).cloned().unwrap_or_default();
        // (attempt, key) of every promise, in attempt order.
        let promises: Vec<(usize, u64)> = m
            .attempts
            .iter()
            .enumerate()
            .filter_map(|(n, a)| a.answer.promised_key().map(|k| (n, k)))
            .collect();
        let promised: Vec<u64> = promises.iter().map(|&(_, k)| k).collect();
        let maybe = m.attempts.iter().any(|a| {
            matches!(
                a.answer,
                Answer::Unanswered { .. } | Answer::Unexpected { .. } | Answer::Deposed { .. }
            )
        });
        let who = describe(m);
        // Two promises name different keys only if a power loss took the earlier one between
        // the two attempts.
        let different = promises.iter().enumerate().any(|(x, &(i, ki))| {
            promises[x + 1..].iter().any(|&(j, kj)| {
                kj != ki && !lost_between(losses, m.attempts[i].sent, ki, m.attempts[j].sent)
            })
        });
        if different {
            v.push(format!("{who}: answers name different keys {promised:?}"));
        }
        let kept: Vec<u64> = promises
            .iter()
            .filter(|&&(n, k)| !may_be_lost(losses, m.attempts[n].sent, k))
            .map(|&(_, k)| k)
            .collect();
        if let Some(&k) = kept.first() {
            if keys != [k] {
                v.push(format!(
                    "{who}: answered with key {k}, but the final log holds it under {keys:?}"
                ));
            }
        } else if !promises.is_empty() {
            // Every promise may have been lost to a master power loss.
            let first_loss = promises
                .iter()
                .filter_map(|&(n, k)| first_loss_after(losses, m.attempts[n].sent, k))
                .fold(f64::INFINITY, f64::min);
            let again = m
                .attempts
                .iter()
                .any(|a| a.sent > first_loss && !a.answer.is_refusal());
            if keys.len() > 1 {
                v.push(format!("{who}: in the log {} times: {keys:?}", keys.len()));
            } else if let [k] = keys[..]
                && !promised.contains(&k)
                && !again
            {
                v.push(format!(
                    "{who}: answered with keys {promised:?} (which a master power loss may have taken), but the final log holds it under key {k}, and no attempt after the power loss can have appended it again"
                ));
            }
        } else if maybe {
            if keys.len() > 1 {
                v.push(format!("{who}: in the log {} times: {keys:?}", keys.len()));
            }
        } else if !keys.is_empty() {
            v.push(format!(
                "{who}: every attempt was refused, yet the log holds it under {keys:?}"
            ));
        }
        for (n, a) in m.attempts.iter().enumerate() {
            match &a.answer {
                Answer::Acked {
                    status,
                    key,
                    w,
                    acks,
                } => {
                    if *w != m.w || *acks < *w || *acks > all as u64 {
                        v.push(format!(
                            "{who}: answered {status} with write_concern {w}, acks {acks} (sent w {}, {all} nodes)",
                            m.w_sent
                        ));
                    }
                    let earlier_maybe = m.attempts[..n].iter().any(|e| !e.answer.is_refusal());
                    if *status == 200 && !earlier_maybe {
                        v.push(format!(
                            "{who}: 200 duplicate (key {key}) though no earlier attempt can have been appended"
                        ));
                    }
                    let after_504 = m.attempts[..n].iter().any(|e| match e.answer {
                        Answer::TimedOut { key: k } => !lost_between(losses, e.sent, k, a.sent),
                        _ => false,
                    });
                    if *status == 201 && after_504 {
                        v.push(format!(
                            "{who}: 201 after a 504 of the same id (a second append)"
                        ));
                    }
                    check_write_concern(h, losses, m, a.sent, a.recv, *key, *w, &mut v);
                }
                Answer::ReadOnly => {
                    if !read_only_justified(h, a.sent, a.recv) {
                        v.push(format!(
                            "{who}: 503 read-only at {:.3}..{:.3} s, but fewer than {} secondaries were down then",
                            a.sent,
                            a.recv,
                            needed_down(h)
                        ));
                    }
                }
                Answer::Recovering => {
                    if !recovering_justified(h, a.sent, a.recv) {
                        v.push(format!(
                            "{who}: 503 recovering at {:.3}..{:.3} s, not just after a master restart",
                            a.sent, a.recv
                        ));
                    }
                }
                Answer::Unexpected { status, body } => {
                    v.push(format!(
                        "{who}: unexpected answer {status} at {:.3} s: {body}",
                        a.recv
                    ));
                }
                // Failover answers: a cluster without failover never gives them.
                Answer::TakingOffice
                | Answer::Deposed { .. }
                | Answer::Misdirected
                | Answer::Unreachable => {
                    v.push(format!(
                        "{who}: a failover answer ({:?}) at {:.3} s from a cluster without failover",
                        a.answer, a.recv
                    ));
                }
                Answer::TimedOut { key } => {
                    if !timeout_ran_out(m, a) {
                        v.push(format!(
                            "{who}: 504 (key {key}) after {:.3} s at {:.3} s, before its timeout_ms ran out",
                            a.recv - a.sent,
                            a.recv
                        ));
                    }
                }
                Answer::Unanswered { .. } => {}
            }
        }
    }

    // 4. Reads.
    for r in &h.reads {
        for (i, (k, val)) in r.entries.iter().enumerate() {
            if *k != r.from + i as u64 {
                v.push(format!(
                    "read of node {} from {} at {:.3} s: entry {} has key {k} ({val:?})",
                    r.node, r.from, r.recv, i
                ));
                break;
            }
            match by_key.get(k) {
                Some(f) if *f == val => {}
                _ if read_of_lost_tail(losses, *k, by_value.get(val.as_str()).copied()) => {}
                other => v.push(format!(
                    "read of node {} at {:.3} s saw key {k} = {val:?}; the final log has {other:?}",
                    r.node, r.recv
                )),
            }
            match by_value.get(val.as_str()) {
                Some(m) if m.attempts.first().is_some_and(|a| a.sent < r.recv) => {}
                Some(m) => v.push(format!(
                    "read of node {} answered at {:.3} s saw {} before it was sent",
                    r.node,
                    r.recv,
                    describe(m)
                )),
                None => v.push(format!(
                    "read of node {} at {:.3} s saw {val:?}, which no client sent",
                    r.node, r.recv
                )),
            }
        }
    }

    check_real_time_order(h, losses, &at, &mut v);
    check_liveness(h, &mut v);
    v
}

/// Rule 1: every node's final log is keys 1..=n without a gap, the same as node 0's (the
/// first that answered); returns that reference log.
pub fn one_log(h: &History, v: &mut Vec<String>) -> Vec<(u64, String)> {
    let reference: Vec<(u64, String)> = h
        .final_logs
        .iter()
        .flatten()
        .next()
        .cloned()
        .unwrap_or_default();
    for (i, log) in h.final_logs.iter().enumerate() {
        let Some(log) = log else {
            v.push(format!(
                "node {i} did not answer GET /messages after healing"
            ));
            continue;
        };
        if let Some((pos, (k, _))) = log
            .iter()
            .enumerate()
            .find(|(pos, (k, _))| *k != *pos as u64 + 1)
        {
            v.push(format!(
                "node {i}: key {k} at position {} of its log (keys must be 1..=n without gaps)",
                pos + 1
            ));
        }
        if *log != reference {
            let first = log
                .iter()
                .zip(&reference)
                .position(|(a, b)| a != b)
                .unwrap_or(log.len().min(reference.len()));
            v.push(format!(
                "node {i}'s log differs from node 0's from position {} ({} vs {} entries): {:?} vs {:?}",
                first + 1,
                log.len(),
                reference.len(),
                log.get(first),
                reference.get(first)
            ));
        }
    }
    reference
}

/// A master power loss as the checker sees it: when, and its P.
#[derive(Clone, Copy, Debug)]
struct Loss {
    at: f64,
    p: u64,
}

/// P of every master power loss, in order (see the module docs). A secondary's gap-free
/// prefix of n keys counts in full at the first master power loss of the schedule (until
/// then every master kept all it wrote, so every secondary's log is a prefix of the
/// master's), and at a later one if it holds a value first sent after the previous one (the
/// master since then wrote it, so that secondary has taken the new master's log and has cut
/// what the lost one left over, if anything). Otherwise it may still hold a tail only the
/// lost master had, and counts up to no more than it counted at the previous one.
fn master_losses(h: &History) -> Vec<Loss> {
    let first_sent: HashMap<&str, f64> = h
        .messages
        .iter()
        .filter_map(|m| Some((m.value.as_str(), m.attempts.first()?.sent)))
        .collect();
    let mut pls: Vec<&MasterPowerLoss> = h.faults.master_power_losses.iter().collect();
    pls.sort_by(|a, b| a.at.total_cmp(&b.at));
    // Per secondary, what it counted for at the previous master power loss.
    let mut counted: Vec<u64> = Vec::new();
    let mut previous: Option<f64> = None;
    let mut out = Vec::new();
    for pl in pls {
        counted.resize(counted.len().max(pl.logs.len()), 0);
        let mut p = 0;
        for (s, log) in pl.logs.iter().enumerate() {
            let n = match (log, previous) {
                (None, _) => 0,
                (Some(log), None) => log.len() as u64,
                (Some(log), Some(t)) => {
                    let fresh = log
                        .iter()
                        .any(|v| first_sent.get(v.as_str()).is_some_and(|&f| f > t));
                    if fresh {
                        log.len() as u64
                    } else {
                        (log.len() as u64).min(counted[s])
                    }
                }
            };
            counted[s] = n;
            p = p.max(n);
        }
        out.push(Loss { at: pl.at, p });
        previous = Some(pl.at);
    }
    out
}

/// Whether a master power loss after attempt `sent` may have taken `key` (see the module
/// docs): the attempt went out before it, and the key is above its P.
fn may_be_lost(losses: &[Loss], sent: f64, key: u64) -> bool {
    first_loss_after(losses, sent, key).is_some()
}

/// The first master power loss after `sent` that may have taken `key`.
fn first_loss_after(losses: &[Loss], sent: f64, key: u64) -> Option<f64> {
    losses
        .iter()
        .filter(|pl| sent < pl.at && key > pl.p)
        .map(|pl| pl.at)
        .reduce(f64::min)
}

/// Whether a master power loss after `sent`, and before `later`, may have taken `key`.
fn lost_between(losses: &[Loss], sent: f64, key: u64, later: f64) -> bool {
    losses
        .iter()
        .any(|pl| sent < pl.at && pl.at < later && key > pl.p)
}

/// Rule 4: a read showing `key` with the value of `m` that the final log does not have is
/// excused when a master power loss may have taken `key` with `m` there (module docs).
fn read_of_lost_tail(losses: &[Loss], key: u64, m: Option<&Message>) -> bool {
    let Some(first) = m.and_then(|m| m.attempts.first()) else {
        return false;
    };
    losses.iter().any(|pl| key > pl.p && first.sent < pl.at)
}

/// Rules 8 and 10: a 504 is answered once `timeout_ms` has run out since the master received
/// the request, so after at least that long on the test's side (1 ms of slack for rounding).
pub fn timeout_ran_out(m: &Message, a: &Attempt) -> bool {
    m.timeout_ms
        .is_some_and(|t| a.recv - a.sent + 0.001 >= t as f64 / 1000.0)
}

/// 9. See the module docs.
fn check_real_time_order(
    h: &History,
    losses: &[Loss],
    at: &HashMap<&str, Vec<u64>>,
    v: &mut Vec<String>,
) {
    // (answer arrived, key, message) of every promise no power loss can take.
    let mut promises: Vec<(f64, u64, usize)> = Vec::new();
    for (i, m) in h.messages.iter().enumerate() {
        for a in &m.attempts {
            if let Some(k) = a.answer.promised_key()
                && !may_be_lost(losses, a.sent, k)
            {
                promises.push((a.recv, k, i));
            }
        }
    }
    promises.sort_by(|a, b| a.0.total_cmp(&b.0));
    // The highest key promised up to each of them, and to which message, when.
    let mut highest: Vec<(u64, usize, f64)> = Vec::with_capacity(promises.len());
    for &(recv, k, i) in &promises {
        match highest.last() {
            Some(&(hk, _, _)) if hk >= k => highest.push(*highest.last().unwrap()),
            _ => highest.push((k, i, recv)),
        }
    }
    for b in &h.messages {
        let Some(first) = b.attempts.first() else {
            continue;
        };
        let n = promises.partition_point(|&(recv, _, _)| recv < first.sent);
        let Some(&(ka, ai, recv)) = n.checked_sub(1).map(|n| &highest[n]) else {
            continue;
        };
        let answered = b.attempts.iter().filter_map(|a| a.answer.promised_key());
        let in_log = at.get(b.value.as_str()).into_iter().flatten().copied();
        if let Some(kb) = answered.chain(in_log).filter(|&k| k <= ka).min() {
            v.push(format!(
                "{} (first sent at {:.3} s) has key {kb}, not above key {ka} of {}, promised at {recv:.3} s before it",
                describe(b),
                first.sent,
                describe(&h.messages[ai])
            ));
        }
    }
}

/// 10. See the module docs.
pub fn check_liveness(h: &History, v: &mut Vec<String>) {
    let Some(t0) = h.settled_at else {
        return;
    };
    for m in &h.messages {
        for a in m.attempts.iter().filter(|a| a.sent >= t0) {
            let took = a.recv - a.sent;
            let problem = match &a.answer {
                Answer::Acked { .. } => None,
                Answer::TimedOut { .. } if timeout_ran_out(m, a) => None,
                Answer::TimedOut { key } => {
                    Some(format!("504 (key {key}) before its timeout_ms ran out"))
                }
                Answer::ReadOnly => Some("503 read-only".to_string()),
                Answer::Recovering => Some("503 recovering".to_string()),
                Answer::Unexpected { status, .. } => Some(format!("answer {status}")),
                Answer::Unanswered { error } => Some(format!("no answer ({error})")),
                Answer::TakingOffice => Some("503 taking office".to_string()),
                Answer::Deposed { key } => Some(format!(
                    "503 outcome unknown (key {key}): the master stepped down"
                )),
                Answer::Misdirected => Some("421 (no master found)".to_string()),
                Answer::Unreachable => Some("no node reachable".to_string()),
            }
            .or_else(|| {
                (took > LIVENESS_ANSWER_S).then(|| format!("answered only after {took:.3} s"))
            });
            if let Some(problem) = problem {
                v.push(format!(
                    "{}: sent at {:.3} s, after the cluster settled at {t0:.3} s: {problem} (each append then must be answered within {LIVENESS_ANSWER_S} s by a 201, 200, or 504 once its timeout_ms ran out)",
                    describe(m),
                    a.sent
                ));
            }
        }
    }
}

pub fn describe(m: &Message) -> String {
    format!(
        "message {:?} (client {}, id {:?}, w {}, timeout_ms {:?}, {} attempt(s))",
        m.value,
        m.client,
        m.id,
        m.w_sent,
        m.timeout_ms,
        m.attempts.len()
    )
}

/// 5. See the module docs.
#[allow(clippy::too_many_arguments)]
fn check_write_concern(
    h: &History,
    losses: &[Loss],
    m: &Message,
    sent: f64,
    recv: f64,
    key: u64,
    w: u64,
    v: &mut Vec<String>,
) {
    let all = h.secondaries as u64 + 1;
    let mut without = Vec::new();
    // The key may have been stored since the message's first attempt: a secondary that
    // acknowledged it then and lost it later (a 200 duplicate counts such an ack; the master
    // cannot know of the loss before that secondary is back) proves nothing.
    let first = m.attempts.first().map_or(sent, |a| a.sent);
    for s in 1..=h.secondaries {
        // A secondary wiped or power-lost since proves nothing, nor does any secondary
        // after a master power loss that may have taken the key.
        let wiped_since = |until: f64| {
            h.faults
                .wipes
                .iter()
                .chain(&h.faults.secondary_power_losses)
                .any(|wp| wp.node == s && wp.overlaps(first, until))
                || lost_between(losses, sent, key, until)
        };
        if let Some(p) = h.probes.iter().find(|p| {
            p.node == s
                && p.sent >= recv
                && p.contiguous_key < key
                && p.held_aside == 0
                && !wiped_since(p.recv)
        }) {
            without.push((s, *p));
        }
    }
    if all - (without.len() as u64) < w {
        v.push(format!(
            "{}: answered with key {key}, w={w} at {recv:.3} s, but only {} node(s) can have held it: {}",
            describe(m),
            all - without.len() as u64,
            without
                .iter()
                .map(|(s, p)| format!(
                    "secondary{s} showed contiguous key {} and nothing held aside at {:.3}..{:.3} s",
                    p.contiguous_key, p.sent, p.recv
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
}

/// Secondaries that must be unavailable for the master to be read-only.
fn needed_down(h: &History) -> usize {
    (h.secondaries + 2).saturating_sub(h.quorum)
}

/// `t` plus `amount` seconds of the master's running time (its `pauses` do not count).
pub fn master_time_after(pauses: &[Span], t: f64, amount: f64) -> f64 {
    let mut pauses: Vec<Span> = pauses.to_vec();
    pauses.sort_by(|a, b| a.start.total_cmp(&b.start));
    let (mut cur, mut left) = (t, amount);
    for p in pauses {
        if p.end <= cur {
            continue;
        }
        if p.start > cur + left {
            break;
        }
        left -= (p.start - cur).max(0.0);
        cur = cur.max(p.end);
    }
    cur + left
}

/// 6. See the module docs.
fn read_only_justified(h: &History, sent: f64, recv: f64) -> bool {
    let need = needed_down(h);
    if need == 0 {
        return true;
    }
    let slack = h.heartbeat_interval_s + h.heartbeat_timeout_s + MARGIN;
    // Per secondary: the spans during which the master may have called it unhealthy,
    // clipped to the request.
    let per_node = (1..=h.secondaries).map(|s| {
        h.faults
            .down
            .iter()
            .filter(|d| d.node == s)
            .chain(&h.faults.master_partitioned)
            .map(|d| {
                (
                    d.start,
                    master_time_after(&h.faults.master_paused, d.end, slack),
                )
            })
            .filter(|(a, b)| *a <= recv && sent <= *b)
            .map(|(a, b)| (a.max(sent), b.min(recv)))
            .collect()
    });
    down_together(per_node, need)
}

/// Whether at some instant at least `need` nodes are down, given each node's spans (closed
/// intervals, in any order, possibly overlapping).
pub fn down_together(per_node: impl Iterator<Item = Vec<(f64, f64)>>, need: usize) -> bool {
    let mut edges: Vec<(f64, i32)> = Vec::new();
    for mut spans in per_node {
        spans.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Merge, so a node counts once at any instant.
        let mut merged: Vec<(f64, f64)> = Vec::new();
        for (a, b) in spans {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        for (a, b) in merged {
            edges.push((a, 1));
            edges.push((b, -1));
        }
    }
    // Starts before ends at the same instant: spans are closed.
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut n = 0i32;
    for (_, d) in edges {
        n += d;
        if n as usize >= need {
            return true;
        }
    }
    false
}

/// 7. See the module docs.
fn recovering_justified(h: &History, sent: f64, recv: f64) -> bool {
    // Every master restart of the nemesis is unclean (kill -9, power loss).
    let slack = h.heartbeat_interval_s + h.heartbeat_timeout_s + MARGIN + h.recovery_wait_s;
    h.faults.master_restarts.iter().any(|r| {
        r.start <= recv && sent <= master_time_after(&h.faults.master_paused, r.end, slack)
    })
}

/// The checker on hand-made histories: each rule flags what it must, and only that.
#[cfg(test)]
mod self_test {
    use super::*;
    use crate::history::{Faults, MasterPowerLoss, Probe, Read};

    fn msg(value: &str, attempts: Vec<(f64, f64, Answer)>) -> Message {
        Message {
            client: 0,
            value: value.into(),
            id: Some(format!("id-{value}")),
            w_sent: serde_json::json!(2),
            w: 2,
            timeout_ms: None,
            attempts: attempts
                .into_iter()
                .map(|(sent, recv, answer)| Attempt {
                    sent,
                    recv,
                    answer,
                    node: None,
                })
                .collect(),
        }
    }

    fn acked(key: u64) -> Answer {
        Answer::Acked {
            status: 201,
            key,
            w: 2,
            acks: 2,
        }
    }

    /// Two secondaries, quorum 2; "a" acked under key 1 and "b" refused; every node shows
    /// `log`.
    fn history(log: &[&str]) -> History {
        let log: Vec<(u64, String)> = log
            .iter()
            .enumerate()
            .map(|(i, v)| (i as u64 + 1, v.to_string()))
            .collect();
        History {
            secondaries: 2,
            quorum: 2,
            heartbeat_interval_s: 0.2,
            heartbeat_timeout_s: 0.5,
            messages: vec![
                msg("a", vec![(1.0, 1.1, acked(1))]),
                msg("b", vec![(2.0, 2.1, Answer::ReadOnly)]),
            ],
            final_logs: vec![Some(log.clone()), Some(log.clone()), Some(log)],
            faults: Faults {
                down: vec![
                    Span {
                        node: 1,
                        start: 0.5,
                        end: 1.5,
                    },
                    Span {
                        node: 2,
                        start: 1.2,
                        end: 3.0,
                    },
                ],
                ..Faults::default()
            },
            ..History::default()
        }
    }

    #[test]
    fn a_clean_history_passes() {
        assert_eq!(check(&history(&["a"])), Vec::<String>::new());
    }

    #[test]
    fn a_lost_acknowledged_message_is_flagged() {
        let v = check(&history(&[]));
        assert!(v.iter().any(|v| v.contains("\"a\"")), "{v:?}");
    }

    #[test]
    fn a_refused_message_in_the_log_is_flagged() {
        let v = check(&history(&["a", "b"]));
        assert!(
            v.iter().any(|v| v.contains("every attempt was refused")),
            "{v:?}"
        );
    }

    #[test]
    fn diverging_nodes_and_gaps_are_flagged() {
        let mut h = history(&["a"]);
        h.final_logs[2] = Some(vec![(1, "a".into()), (3, "x".into())]);
        let v = check(&h);
        assert!(v.iter().any(|v| v.contains("without gaps")), "{v:?}");
        assert!(v.iter().any(|v| v.contains("differs")), "{v:?}");
    }

    #[test]
    fn read_only_without_enough_secondaries_down_is_flagged() {
        let mut h = history(&["a"]);
        // Secondary 2 alone down: one unavailable secondary leaves 2 of 3 nodes, the quorum.
        h.faults.down.retain(|d| d.node == 2);
        h.faults.down[0].end = 7.0;
        h.messages[1].attempts[0].sent = 6.0;
        h.messages[1].attempts[0].recv = 6.1;
        let v = check(&h);
        assert!(v.iter().any(|v| v.contains("503 read-only")), "{v:?}");
        // Secondary 1 back long before (0.2 + 3.7 < 6.0): still flagged.
        h.faults.down.push(Span {
            node: 1,
            start: 0.1,
            end: 0.2,
        });
        assert!(check(&h).iter().any(|v| v.contains("503 read-only")));
        // Back at 3.0: the master may take interval + timeout + MARGIN (3.7 s) to see it.
        h.faults.down.last_mut().unwrap().end = 3.0;
        assert_eq!(check(&h), Vec::<String>::new());
    }

    #[test]
    fn the_master_clock_stands_still_while_it_is_paused() {
        let mut h = history(&["a"]);
        h.messages[1].attempts[0].sent = 10.0;
        h.messages[1].attempts[0].recv = 10.1;
        assert!(check(&h).iter().any(|v| v.contains("503 read-only")));
        h.faults.master_paused.push(Span {
            node: 0,
            start: 3.5,
            end: 9.9,
        });
        assert_eq!(check(&h), Vec::<String>::new());
    }

    #[test]
    fn a_partitioned_master_reaches_no_secondary() {
        let mut h = history(&["a"]);
        h.messages[1].attempts[0].sent = 10.0;
        h.messages[1].attempts[0].recv = 10.1;
        assert!(check(&h).iter().any(|v| v.contains("503 read-only")));
        // Reconnected at 7.0: every secondary may still look unhealthy until 10.7.
        h.faults.master_partitioned.push(Span {
            node: 0,
            start: 5.0,
            end: 7.0,
        });
        assert_eq!(check(&h), Vec::<String>::new());
        // Reconnected at 6.0: the master has seen them again by 9.7.
        h.faults.master_partitioned[0].end = 6.0;
        assert!(check(&h).iter().any(|v| v.contains("503 read-only")));
    }

    #[test]
    fn an_ack_below_its_write_concern_is_flagged_only_on_proof() {
        let mut h = history(&["a"]);
        let probe = |node, sent, contiguous_key, held_aside| Probe {
            node,
            sent,
            recv: sent + 0.01,
            contiguous_key,
            held_aside,
        };
        // Secondary 1 lacks key 1 later, secondary 2 holds something aside: w=2 still
        // possible.
        h.probes = vec![probe(1, 1.2, 0, 0), probe(2, 1.2, 0, 1)];
        assert_eq!(check(&h), Vec::<String>::new());
        // Both lack it: only the master held it.
        h.probes.push(probe(2, 4.0, 0, 0));
        let v = check(&h);
        assert!(v.iter().any(|v| v.contains("w=2")), "{v:?}");
        // Unless secondary 2 was wiped in between.
        h.faults.wipes.push(Span {
            node: 2,
            start: 3.0,
            end: 3.1,
        });
        assert_eq!(check(&h), Vec::<String>::new());
        // A probe sent before the answer arrived proves nothing.
        h.probes = vec![probe(1, 1.05, 0, 0), probe(2, 1.05, 0, 0)];
        assert_eq!(check(&h), Vec::<String>::new());
    }

    #[test]
    fn reads_of_other_values_or_before_the_send_are_flagged() {
        let mut h = history(&["a"]);
        let read = |recv, entries: Vec<(u64, &str)>| Read {
            node: 1,
            from: 1,
            sent: recv - 0.1,
            recv,
            entries: entries
                .into_iter()
                .map(|(k, v)| (k, v.to_string()))
                .collect(),
        };
        h.reads = vec![read(1.5, vec![(1, "a")])];
        assert_eq!(check(&h), Vec::<String>::new());
        h.reads = vec![read(0.5, vec![(1, "a")])];
        assert!(check(&h).iter().any(|v| v.contains("before it was sent")));
        h.reads = vec![read(2.5, vec![(1, "b")])];
        assert!(check(&h).iter().any(|v| v.contains("the final log has")));
    }

    /// Every node shows `log` (values under keys 1..).
    fn set_log(h: &mut History, log: &[&str]) {
        let log: Vec<(u64, String)> = log
            .iter()
            .enumerate()
            .map(|(i, v)| (i as u64 + 1, v.to_string()))
            .collect();
        h.final_logs = vec![Some(log.clone()), Some(log.clone()), Some(log)];
    }

    fn flagged(h: &History, what: &str) -> bool {
        check(h).iter().any(|v| v.contains(what))
    }

    #[track_caller]
    fn clean(h: &History) {
        assert_eq!(check(h), Vec::<String>::new());
    }

    fn unanswered() -> Answer {
        Answer::Unanswered {
            error: "connection reset".into(),
        }
    }

    fn dup(key: u64) -> Answer {
        Answer::Acked {
            status: 200,
            key,
            w: 2,
            acks: 2,
        }
    }

    /// A master power loss at `at` with P = `p` (the first of a schedule: secondary1 held
    /// keys 1..=p, secondary2 nothing).
    fn power_loss(at: f64, p: usize) -> MasterPowerLoss {
        MasterPowerLoss {
            at,
            logs: vec![Some(vec!["?".to_string(); p]), Some(Vec::new())],
        }
    }

    // 1. One log.

    #[test]
    fn a_value_twice_or_from_no_client_is_flagged() {
        let mut h = history(&["a"]);
        h.messages.push(msg("c", vec![(1.2, 1.3, unanswered())]));
        set_log(&mut h, &["a", "c", "c"]);
        assert!(flagged(&h, "in the log 2 times"));
        set_log(&mut h, &["a", "c"]);
        clean(&h);
        set_log(&mut h, &["a", "zz"]);
        assert!(flagged(&h, "which no client sent"));
    }

    #[test]
    fn a_node_that_did_not_answer_after_healing_is_flagged() {
        let mut h = history(&["a"]);
        h.final_logs[1] = None;
        assert!(flagged(&h, "did not answer GET /messages"));
    }

    // 2. Acknowledged means kept.

    #[test]
    fn an_acknowledged_message_under_another_key_is_flagged() {
        let mut h = history(&["a"]);
        h.messages.push(msg("c", vec![(1.2, 1.3, unanswered())]));
        set_log(&mut h, &["c", "a"]);
        assert!(flagged(&h, "final log holds it under [2]"));
        set_log(&mut h, &["a", "c"]);
        clean(&h);
    }

    #[test]
    fn a_504_promises_its_key() {
        let mut h = history(&["a"]);
        let mut c = msg("c", vec![(3.0, 3.6, Answer::TimedOut { key: 2 })]);
        c.timeout_ms = Some(500);
        h.messages.push(c);
        assert!(flagged(&h, "final log holds it under []"));
        set_log(&mut h, &["a", "c"]);
        clean(&h);
    }

    #[test]
    fn a_duplicate_needs_an_earlier_attempt_and_one_key() {
        let mut h = history(&["a", "c"]);
        h.messages.push(msg(
            "c",
            vec![(1.2, 1.3, Answer::ReadOnly), (1.4, 1.5, dup(2))],
        ));
        h.faults.down[0].end = 5.0;
        assert!(flagged(&h, "no earlier attempt can have been appended"));
        h.messages[2].attempts[0].answer = unanswered();
        clean(&h);
        h.messages[2].attempts.push(Attempt {
            sent: 1.6,
            recv: 1.7,
            answer: dup(3),
            node: None,
        });
        assert!(flagged(&h, "answers name different keys"));
    }

    #[test]
    fn a_201_after_a_504_of_the_same_id_is_flagged() {
        let mut h = history(&["a", "c"]);
        let mut c = msg(
            "c",
            vec![
                (1.2, 1.8, Answer::TimedOut { key: 2 }),
                (2.0, 2.1, acked(2)),
            ],
        );
        c.timeout_ms = Some(500);
        h.messages.push(c);
        assert!(flagged(&h, "201 after a 504"));
        h.messages[2].attempts[1].answer = dup(2);
        clean(&h);
    }

    // 3. Refused means not appended.

    #[test]
    fn a_refused_then_unanswered_message_may_be_there_once() {
        let mut h = history(&["a", "b"]);
        h.messages[1].attempts.push(Attempt {
            sent: 2.2,
            recv: 2.3,
            answer: unanswered(),
            node: None,
        });
        clean(&h);
        set_log(&mut h, &["a", "b", "b"]);
        assert!(flagged(&h, "in the log 2 times"));
    }

    // 4. Reads.

    #[test]
    fn a_read_with_a_gap_is_flagged() {
        let mut h = history(&["a"]);
        h.messages.push(msg("c", vec![(1.2, 1.3, unanswered())]));
        set_log(&mut h, &["a", "c"]);
        let read = |entries: Vec<(u64, &str)>| Read {
            node: 2,
            from: 1,
            sent: 1.9,
            recv: 2.0,
            entries: entries
                .into_iter()
                .map(|(k, v)| (k, v.to_string()))
                .collect(),
        };
        h.reads = vec![read(vec![(1, "a"), (2, "c")])];
        clean(&h);
        h.reads = vec![read(vec![(1, "a"), (3, "c")])];
        assert!(flagged(&h, "entry 1 has key 3"));
    }

    // 7. Recovering only after a restart.

    #[test]
    fn recovering_only_just_after_a_master_restart() {
        let mut h = history(&["a"]);
        h.messages
            .push(msg("c", vec![(10.0, 10.1, Answer::Recovering)]));
        assert!(flagged(&h, "503 recovering"));
        // Up again at 7.0: interval + timeout + MARGIN = 3.7 s of slack reach 10.7.
        h.faults.master_restarts.push(Span {
            node: 0,
            start: 6.0,
            end: 7.0,
        });
        clean(&h);
        h.faults.master_restarts[0].end = 6.2;
        assert!(flagged(&h, "503 recovering"));
        // Unless the master may wait for its secondaries after an unclean restart.
        h.recovery_wait_s = 5.0;
        clean(&h);
        // A restart that ended before a pause: the master's clock stood still.
        h.recovery_wait_s = 0.0;
        h.faults.master_paused.push(Span {
            node: 0,
            start: 7.0,
            end: 9.0,
        });
        clean(&h);
    }

    // 8. No other answers.

    #[test]
    fn other_answers_and_run_errors_are_flagged() {
        let mut h = history(&["a"]);
        h.messages.push(msg(
            "c",
            vec![(
                1.2,
                1.3,
                Answer::Unexpected {
                    status: 500,
                    body: "{}".into(),
                },
            )],
        ));
        assert!(flagged(&h, "unexpected answer 500"));
        h.messages[2].attempts[0].answer = unanswered();
        clean(&h);
        h.run_errors.push("the nodes did not converge".into());
        assert!(flagged(&h, "did not converge"));
    }

    #[test]
    fn a_504_before_its_timeout_ran_out_is_flagged() {
        let mut h = history(&["a", "c"]);
        h.messages
            .push(msg("c", vec![(3.0, 3.6, Answer::TimedOut { key: 2 })]));
        // No timeout_ms: the master waits for ever.
        assert!(flagged(&h, "before its timeout_ms ran out"));
        h.messages[2].timeout_ms = Some(700);
        assert!(flagged(&h, "before its timeout_ms ran out"));
        h.messages[2].timeout_ms = Some(600);
        clean(&h);
    }

    // 9. Real-time order.

    #[test]
    fn a_message_sent_after_a_promise_gets_a_higher_key() {
        // "a" promised key 2 at 1.1; "c", first sent at 1.2, got key 1.
        let mut h = history(&["c", "a"]);
        h.messages[0].attempts[0].answer = acked(2);
        h.messages.push(msg("c", vec![(1.2, 1.3, acked(1))]));
        assert!(flagged(&h, "not above key 2"));
        // Sent before "a" was answered: either order.
        h.messages[2].attempts[0].sent = 1.05;
        clean(&h);
        // Judged on the final log too: no answer, but key 1.
        h.messages[2].attempts[0] = Attempt {
            sent: 1.2,
            recv: 1.3,
            answer: unanswered(),
            node: None,
        };
        assert!(flagged(&h, "not above key 2"));
        // A later retry does not count: the first attempt went out before the promise.
        h.messages[2].attempts.insert(
            0,
            Attempt {
                sent: 1.0,
                recv: 1.01,
                answer: unanswered(),
                node: None,
            },
        );
        clean(&h);
    }

    // 10. Liveness after healing.

    #[test]
    fn appends_after_the_cluster_settled_must_be_answered() {
        let mut h = history(&["a", "d"]);
        h.settled_at = Some(20.0);
        let mut d = msg("d", vec![(21.0, 21.5, acked(2))]);
        d.timeout_ms = Some(1000);
        h.messages.push(d);
        clean(&h);
        let answer = |h: &mut History, recv: f64, answer: Answer| {
            h.messages[2].attempts[0].recv = recv;
            h.messages[2].attempts[0].answer = answer;
        };
        answer(&mut h, 21.0 + LIVENESS_ANSWER_S + 1.0, acked(2));
        assert!(flagged(&h, "answered only after"));
        answer(&mut h, 22.1, Answer::TimedOut { key: 2 });
        clean(&h);
        answer(&mut h, 21.5, Answer::TimedOut { key: 2 });
        assert!(flagged(&h, "after the cluster settled"));
        answer(&mut h, 36.0, unanswered());
        assert!(flagged(&h, "no answer"));
        answer(&mut h, 21.1, Answer::Recovering);
        assert!(flagged(
            &h,
            "after the cluster settled at 20.000 s: 503 recovering"
        ));
        answer(&mut h, 21.1, Answer::ReadOnly);
        assert!(flagged(
            &h,
            "after the cluster settled at 20.000 s: 503 read-only"
        ));
        // Before the cluster settled, no answer proves nothing.
        h.messages[2].attempts[0] = Attempt {
            sent: 19.0,
            recv: 30.0,
            answer: unanswered(),
            node: None,
        };
        clean(&h);
    }

    // Power losses.

    /// "a" promised key 1, "c" key 2 (w=2, sent at 1.2); every node shows `log`.
    fn two_promises(log: &[&str]) -> History {
        let mut h = history(log);
        h.messages.push(msg("c", vec![(1.2, 1.3, acked(2))]));
        h
    }

    #[test]
    fn a_master_power_loss_may_take_promised_keys_above_p() {
        let mut h = two_promises(&["a"]);
        assert!(flagged(&h, "final log holds it under []"));
        h.faults.master_power_losses.push(power_loss(2.5, 1));
        clean(&h);
        // Key 2 was on a secondary: it must survive.
        h.faults.master_power_losses[0] = power_loss(2.5, 2);
        assert!(flagged(&h, "final log holds it under []"));
        // A promise made after the power loss is kept like any other.
        h.faults.master_power_losses[0] = power_loss(1.15, 1);
        assert!(flagged(&h, "final log holds it under []"));
        // A lost message is not in the log under a key no answer named.
        h.faults.master_power_losses[0] = power_loss(2.5, 1);
        h.messages.push(msg("e", vec![(3.0, 3.1, acked(2))]));
        set_log(&mut h, &["a", "e", "c"]);
        assert!(flagged(&h, "no attempt after the power loss"));
    }

    #[test]
    fn a_later_power_loss_counts_a_secondary_only_as_far_as_it_surely_matches() {
        // Power loss 1 at 2.5 (P = 1: "c", key 2, may be lost, and is). "e", sent at 3.0, is
        // promised key 2 by the new master; power loss 2 at 6.0, and "e" is gone too.
        let mut h = two_promises(&["a"]);
        h.messages.push(msg("e", vec![(3.0, 3.1, acked(2))]));
        h.faults.master_power_losses.push(power_loss(2.5, 1));
        let second = |log: &[&str]| MasterPowerLoss {
            at: 6.0,
            logs: vec![Some(log.iter().map(|v| v.to_string()).collect()), None],
        };
        // Secondary1 still shows "c" under key 2: a tail of the master lost at 2.5, not
        // proof that the master lost at 6.0 had key 2 there. P stays 1.
        h.faults.master_power_losses.push(second(&["a", "c"]));
        clean(&h);
        // Secondary1 shows "e" (sent after the first power loss) under key 2: key 2 was
        // the new master's and must survive.
        h.faults.master_power_losses[1] = second(&["a", "e"]);
        assert!(flagged(&h, "final log holds it under []"));
        // The first power loss of a schedule counts every prefix in full.
        h.faults.master_power_losses.remove(0);
        h.faults.master_power_losses[0] = second(&["a", "c"]);
        let v = check(&h);
        assert!(v.iter().any(|v| v.contains("\"e\"")), "{v:?}");
    }

    #[test]
    fn a_lost_id_may_get_a_new_key_on_a_retry() {
        let mut h = two_promises(&["a", "e", "c"]);
        h.messages.push(msg("e", vec![(3.0, 3.1, acked(2))]));
        h.messages[2].attempts.push(Attempt {
            sent: 4.0,
            recv: 4.1,
            answer: acked(3),
            node: None,
        });
        assert!(flagged(&h, "answers name different keys"));
        h.faults.master_power_losses.push(power_loss(2.5, 1));
        clean(&h);
        // A 504 that was lost may be followed by a 201.
        h.messages[2].timeout_ms = Some(100);
        h.messages[2].attempts[0].answer = Answer::TimedOut { key: 2 };
        clean(&h);
        h.faults.master_power_losses.clear();
        assert!(flagged(&h, "201 after a 504"));
    }

    #[test]
    fn reads_may_show_a_lost_tail() {
        let mut h = two_promises(&["a"]);
        h.faults.master_power_losses.push(power_loss(2.5, 1));
        h.messages.push(msg("e", vec![(3.0, 3.1, acked(2))]));
        set_log(&mut h, &["a", "e"]);
        let read = |recv, v: &str| Read {
            node: 1,
            from: 2,
            sent: recv - 0.1,
            recv,
            entries: vec![(2, v.to_string())],
        };
        // Key 2 = "c" before or after the power loss ("c" was sent before it).
        h.reads = vec![read(2.0, "c"), read(2.7, "c"), read(3.5, "e")];
        clean(&h);
        // Not below P.
        h.faults.master_power_losses[0] = power_loss(2.5, 2);
        h.messages[2].attempts[0].answer = unanswered();
        assert!(flagged(&h, "the final log has"));
        // Nor a value sent after the power loss.
        h.faults.master_power_losses[0] = power_loss(2.5, 1);
        h.messages[3].attempts[0].sent = 2.6;
        set_log(&mut h, &["a", "c"]);
        h.reads = vec![read(2.8, "e")];
        h.messages[3].attempts[0].answer = unanswered();
        assert!(flagged(&h, "the final log has"));
    }

    #[test]
    fn a_probe_after_a_power_loss_proves_no_missing_ack() {
        let mut h = two_promises(&["a", "c"]);
        let probe = |node, sent| Probe {
            node,
            sent,
            recv: sent + 0.01,
            contiguous_key: 1,
            held_aside: 0,
        };
        h.probes = vec![probe(1, 4.0), probe(2, 4.0)];
        assert!(flagged(&h, "w=2"));
        // The master lost power in between, and key 2 is above P.
        h.faults.master_power_losses.push(power_loss(2.5, 1));
        clean(&h);
        h.faults.master_power_losses[0] = power_loss(2.5, 2);
        assert!(flagged(&h, "w=2"));
        // Secondary 2 lost power in between: what it lacks later it may have held.
        h.faults.master_power_losses.clear();
        h.faults.secondary_power_losses.push(Span {
            node: 2,
            start: 2.0,
            end: 2.1,
        });
        clean(&h);
    }

    #[test]
    fn a_duplicate_may_count_an_ack_a_secondary_lost_later() {
        // "c" was appended by an attempt without answer (1.2), secondary 2 lost power (2.0)
        // while down, and a retry was answered 200 with w=2 (5.0) counting its old ack.
        let mut h = two_promises(&["a", "c"]);
        h.messages[2].attempts = vec![
            Attempt {
                sent: 1.2,
                recv: 9.2,
                answer: unanswered(),
                node: None,
            },
            Attempt {
                sent: 9.5,
                recv: 9.6,
                answer: dup(2),
                node: None,
            },
        ];
        let probe = |node| Probe {
            node,
            sent: 12.0,
            recv: 12.01,
            contiguous_key: 1,
            held_aside: 0,
        };
        h.probes = vec![probe(1), probe(2)];
        assert!(flagged(&h, "w=2"));
        h.faults.secondary_power_losses.push(Span {
            node: 2,
            start: 2.0,
            end: 2.1,
        });
        clean(&h);
        // Lost before the message was first sent: its ack cannot be counted.
        h.faults.secondary_power_losses[0].start = 1.0;
        h.faults.secondary_power_losses[0].end = 1.1;
        assert!(flagged(&h, "w=2"));
    }

    #[test]
    fn a_lost_promise_orders_nothing() {
        // "a" promised key 2 at 1.1, lost; "c" first sent at 3.0 got key 2 (its log has "c"
        // and "e").
        let mut h = history(&["e", "c"]);
        h.messages[0].attempts[0].answer = acked(2);
        h.messages.push(msg("c", vec![(3.0, 3.1, acked(2))]));
        h.messages.push(msg("e", vec![(0.9, 1.0, acked(1))]));
        assert!(flagged(&h, "not above key 2"));
        h.faults.master_power_losses.push(power_loss(2.5, 1));
        clean(&h);
    }
}
