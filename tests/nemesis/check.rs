//! The history checker: what replog promises, held against what a schedule recorded.
//!
//! Every rule is sound: it flags only what a correct replog could never do, whatever the
//! machine's timing. Times are the test's (`sent` before a request left, `recv` after its
//! answer arrived), so whatever a node did while serving a request happened in between.
//!
//! 1. **One log.** After healing every node shows keys 1..=n without a gap, the same value
//!    under each key, and no value twice (every message has a unique value).
//! 2. **Acknowledged means kept.** A message answered 201 / 200 (duplicate) or 504 is in that
//!    log exactly once, under the key of every such answer (kill -9 loses nothing under any
//!    fsync policy — `docs/durability.md` — and a 504 promises "appended, replication
//!    pending"; the master's data dir is never wiped). A 200 duplicate needs an earlier
//!    attempt of the same id that may have been appended.
//! 3. **Refused means not appended.** A message whose every attempt was refused (503
//!    read-only or recovering) is not in the log; one with an attempt of unknown outcome (no
//!    answer, client timeout) is there at most once. Nothing else is in the log.
//! 4. **Reads.** A `GET /messages?from=K` answer holds consecutive keys from K; every
//!    (key, value) it shows is the final log's, and its message was sent before the read's
//!    answer arrived.
//! 5. **Write concern.** A 201/200 with w=k was held by ≥ k nodes when answered. Counted the
//!    safe way round: every node is assumed to hold it, except a secondary that a `/health`
//!    sent after the answer arrived — at any later time, as long as the secondary was not
//!    wiped since the append was sent — shows without it (`contiguous_key` < K and
//!    `held_aside` 0: a secondary reports the two as one snapshot, and keeps what it
//!    acknowledged, through kill -9 too, so what it lacks later it lacked then).
//! 6. **Read-only only without quorum.** A 503 read-only needs, at some instant between its
//!    sending and its answer, at least `secondaries + 2 - quorum` secondaries that were down
//!    (paused, killed, restarting, partitioned off the network) or had been down until at
//!    most `interval + timeout + MARGIN` of the master's running time before (a resumed
//!    secondary is healthy again after its next heartbeat; the master's clock stands still
//!    while it is paused). While the master itself is partitioned off, every secondary
//!    counts as down (its heartbeats reach none), with the same slack after the reconnect.
//! 7. **Recovering only after a restart.** A 503 recovering needs a master restart that ended
//!    at most `interval + timeout + MARGIN` of master running time before the request.
//! 8. **No other answers.** The load sends only valid appends: any other status is a
//!    violation, and so is a problem of the run itself (a node not back, no convergence).

use std::collections::HashMap;

use crate::history::{Answer, History, Message, Span};

/// Slack for a loaded machine on top of the heartbeat timing, in seconds of master time.
const MARGIN: f64 = 3.0;

pub fn check(h: &History) -> Vec<String> {
    let mut v: Vec<String> = h.run_errors.clone();
    let all = h.secondaries + 1;

    // 1. One log.
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
        let promised: Vec<u64> = m
            .attempts
            .iter()
            .filter_map(|a| match a.answer {
                Answer::Acked { key, .. } | Answer::TimedOut { key } => Some(key),
                _ => None,
            })
            .collect();
        let maybe = m.attempts.iter().any(|a| {
            matches!(
                a.answer,
                Answer::Unanswered { .. } | Answer::Unexpected { .. }
            )
        });
        let who = describe(m);
        if let Some(&k) = promised.first() {
            if promised.iter().any(|&p| p != k) {
                v.push(format!("{who}: answers name different keys {promised:?}"));
            }
            if keys != [k] {
                v.push(format!(
                    "{who}: answered with key {k}, but the final log holds it under {keys:?}"
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
                    if *status == 201
                        && m.attempts[..n]
                            .iter()
                            .any(|e| matches!(e.answer, Answer::TimedOut { .. }))
                    {
                        v.push(format!(
                            "{who}: 201 after a 504 of the same id (a second append)"
                        ));
                    }
                    check_write_concern(h, m, a.sent, a.recv, *key, *w, &mut v);
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
                Answer::TimedOut { .. } | Answer::Unanswered { .. } => {}
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
    v
}

fn describe(m: &Message) -> String {
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
fn check_write_concern(
    h: &History,
    m: &Message,
    sent: f64,
    recv: f64,
    key: u64,
    w: u64,
    v: &mut Vec<String>,
) {
    let all = h.secondaries as u64 + 1;
    let mut without = Vec::new();
    for s in 1..=h.secondaries {
        let wiped_since = |until: f64| {
            h.faults
                .wipes
                .iter()
                .any(|wp| wp.node == s && wp.overlaps(sent, until))
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

/// `t` plus `amount` seconds of the master's running time (its pauses do not count).
fn master_time_after(h: &History, t: f64, amount: f64) -> f64 {
    let mut pauses: Vec<Span> = h.faults.master_paused.clone();
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
    let mut edges: Vec<(f64, i32)> = Vec::new();
    for s in 1..=h.secondaries {
        let mut spans: Vec<(f64, f64)> = h
            .faults
            .down
            .iter()
            .filter(|d| d.node == s)
            .chain(&h.faults.master_partitioned)
            .map(|d| (d.start, master_time_after(h, d.end, slack)))
            .filter(|(a, b)| *a <= recv && sent <= *b)
            .map(|(a, b)| (a.max(sent), b.min(recv)))
            .collect();
        spans.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Merge, so a secondary counts once at any instant.
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
    let slack = h.heartbeat_interval_s + h.heartbeat_timeout_s + MARGIN;
    h.faults
        .master_restarts
        .iter()
        .any(|r| r.start <= recv && sent <= master_time_after(h, r.end, slack))
}

/// The checker on hand-made histories: each rule flags what it must, and only that.
#[cfg(test)]
mod self_test {
    use super::*;
    use crate::history::{Attempt, Faults, Probe, Read};

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
                .map(|(sent, recv, answer)| Attempt { sent, recv, answer })
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
}
