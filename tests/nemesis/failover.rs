//! The nemesis with failover on (issue 13): master faults, clients that find the master, and
//! the rules of SPEC §11 held against the whole history.
//!
//! A schedule starts a disk-backed failover cluster (3 or 5 members, every node a member,
//! heartbeats every 200 ms, an election timeout of 1–2 s drawn from the seed) on either
//! backend of `cluster.rs` — real `replog serve` processes on loopback
//! (`TestCluster::builder(n).failover()`, [`run_schedule`]) or compose services
//! (`docker::run_failover_schedule`, the same draws for the same seed) — and runs at once:
//!
//! - **the nemesis**: every 0.2–1.5 s one step, drawn from the seed: heal a fault (resume a
//!   paused node, restart a killed one, reconnect a partitioned one — a deposed master comes
//!   back this way), end an error-rate burst, or inject one of: SIGSTOP / kill -9 / `POST
//!   /delay` / an error-rate burst on a node that is not the master; **kill -9 the master**
//!   (it stays dead until a later heal); **SIGSTOP the master** (it comes back later still
//!   believing it is the master, in an old epoch); **kill -9 the master, then the new master
//!   during its catch-up** (as soon as a node says it is master, while it takes office); and
//!   where the backend can (docker), **partition the master off the network** (`docker
//!   network disconnect`: it keeps running, its lease runs out while it is awake, it steps
//!   down after the election timeout, and nobody — the clients included — reaches it; it is
//!   reconnected by a later heal). The master is whichever up node's `/health` says so in the
//!   highest epoch. Before most master faults (70 %) the nemesis brings every node back first
//!   and waits 1.2 s (or, if it restarted one, until its hold after the unclean stop is over:
//!   rule 9), and after them it holds still for the election timeout + 2.5 s, so the
//!   resumption rule below has windows to judge.
//!
//!   On loopback a master "partitioned from the majority" is approximated by SIGSTOP (the
//!   nodes have no fault hook that drops peer traffic): to every other node, and to the
//!   clients, it is silent, and when it comes back it holds a stale epoch.
//!
//!   **Power losses** (as in the schedules without failover: about half of those under
//!   `storage.fsync = "never"`, `NEMESIS_POWER_LOSS` to force them; `NEMESIS_FSYNC=never`
//!   gives any seed that policy): now and then, while every node is up, a node loses power —
//!   the master (60 %) or any node. kill -9; right after, every other node's own `GET
//!   /messages` is read (its gap-free prefix: `PowerLoss`); a random tail of the node's
//!   newest segment is cut (under `never` nothing of it is sure to be on disk, a torn record
//!   included); 0.2–1.5 s later it restarts. Half of the master's power losses strike
//!   100–400 ms after a `/delay` of 0.5–3 s on another node, which then lags behind the rest. It then holds back from elections for
//!   `master.recovery_wait_ms` (5 s; `docs/failover.md`, rule 9) while the others elect a
//!   master if it was one, ranking logs by the epoch whose record they hold (rule 3). The
//!   nemesis does nothing else until the node is *back in step*: its hold over, a master in
//!   office, and the node holding at least as many keys as any node held right after the
//!   kill. Until then a message acknowledged with w ≥ majority that it had counted itself
//!   for may be held by a bare minority, and a second fault could lose it legitimately.
//!
//!   *Not in these schedules*: wipes. A wiped member forgets the votes it cast and every
//!   entry it acknowledged, not only an unsynced tail; Raft's safety, and SPEC §11's
//!   promise, assume stable storage, so a wiped member can legitimately help elect a master
//!   without an acknowledged message.
//! - **writers** as in the schedules without failover (mixed w, ids, `timeout_ms`), but
//!   clients of a failover cluster: they know every node's URL, send to the node they last
//!   found master, follow a 421 to the master it names (or the next node when it names none),
//!   move on to the next node when a connection is refused, and retry with the same id after
//!   503 "taking office" / read-only / recovering, 503 `"outcome": "unknown"` and no answer.
//!   The 421s and refused connections of one attempt are not recorded (nothing was
//!   appended); the attempt is the answer that ended it.
//! - **a resumption writer**: w=1 appends with an id, one after the other, each try waiting
//!   at most 0.4 s before the next node is tried: it finds a new master as soon as there is one.
//! - **readers** long-polling any node, and **probers** sampling every node's `/health`.
//!
//! Then it heals every node, waits until a master is in office, sends the bounded after-heal
//! appends (rule 10 of `check.rs`), waits until every node shows the same log, and checks
//! ([`check_failover`]):
//!
//! - **F1 one log** (rule 1): every node the same keys 1..=n, no gaps, no value twice — so no
//!   key holds two different messages on any two nodes after healing.
//! - **F2 majority acknowledgements survive**: a message acknowledged (201/200) with w ≥
//!   majority of members is in the final log exactly once, under the key of every such
//!   acknowledgement, through every failover and every power loss. The one exception is the
//!   promise of the schedules without failover for a master power loss: an acknowledgement
//!   that a node gave before it lost power, of a message that no other node showed under
//!   that key right after the kill, is judged as one with a smaller w (counted apart:
//!   `acks w≥majority held by that node alone cut`). With every node up at a power loss and
//!   counting by gap-free prefix (`docs/failover.md`, rule 5) some other node holds every
//!   such message, so the exception matters only where a node's `GET /messages` did not
//!   answer. A message acknowledged with a smaller w, a 504
//!   and a 503 "outcome unknown" may be *cut* (its master died before a majority held it):
//!   missing, or — an id retried on a master that never had it — under another key. Those
//!   are allowed and counted (`cut acks`, `cut 504s`). Any message is in the log at most
//!   once; one whose every attempt was refused (503 read-only / recovering / taking office,
//!   421, no node reachable) not at all; a 200 duplicate needs an earlier attempt that may
//!   have appended.
//! - **F3 other answers**: any other status, a 504 before its `timeout_ms` ran out, a problem
//!   of the run — violations.
//! - **F4 reads**: consecutive keys from `from`, every value one a client sent before the
//!   read was answered. A value the final log does not have under that key is a cut entry
//!   seen before its node was reconciled (counted); if it was one acknowledged with w ≥
//!   majority, F2 flags it.
//! - **F5 write concern** of w ≥ majority acknowledgements: held by ≥ w nodes when answered;
//!   a node other than the one that answered proves it lacked the key by a later `/health`
//!   as a secondary with `contiguous_key` < K and nothing held aside (such a key is never cut,
//!   and no node forgets what it wrote but by a power loss: a node that lost power since the
//!   message was first sent proves nothing).
//! - **F6 read-only only without a majority**: a 503 read-only from node X needs, at some
//!   instant of the request, `members + 1 - quorum` other nodes down (paused, killed,
//!   restarting, partitioned off) or back for less than heartbeat timing + `MARGIN` of X's
//!   running time — and while X itself is paused or partitioned off every other node counts
//!   as down for it (its lease and heartbeats stand still, or reach nobody).
//! - **F7 real-time order**: a message sent after a w ≥ majority acknowledgement of key `a`
//!   was answered gets keys above `a`, in every answer (any w, 504, outcome unknown) and in
//!   the final log: no deposed master still takes appends once a newer one has acknowledged
//!   (the lease, `docs/failover.md` rule 6).
//! - **F8 appends resume**: after every loss of the master (kill -9, SIGSTOP, power loss or
//!   partition, at `t`: once the call that did it returned) some
//!   append is given a key — an attempt sent at or after `t` answered 201/200/504 — by
//!   `t + election_timeout + 2 s`, whenever a majority of members stays connected meanwhile.
//!   A loss is *not judged* (and counted apart) when, from 1 s before `t` to the window's
//!   end, fewer than a majority of the other members are up throughout, another node goes
//!   down or comes back (paused, killed, restarting, resumed, partitioned off, reconnected),
//!   another master loss happens,
//!   a `/delay` may be armed or an error-rate burst is on, fewer than a majority of members
//!   are up and free of the hold after an unclean restart (rule 9: a held node neither
//!   stands nor votes), the load ends, or the test's own
//!   resumption writer sent nothing for 1.5 s (the test process was starved: an overloaded
//!   machine stalls the measuring side too).
//! - **F9 liveness after healing** (rule 10): every append sent once the cluster has settled
//!   is answered with a promise within `LIVENESS_ANSWER_S`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::check::{self, MARGIN, describe, master_time_after, timeout_ran_out};
use crate::cluster::Cluster;
use crate::helpers::TestCluster;
use crate::history::{Answer, Attempt, FailoverFacts, Faults, History, Message, PowerLoss, Span};
use crate::rng::Rng;
use crate::run::{self, Clock, Report, Setup, http};

/// F8: appends resume within the election timeout plus this.
pub const RESUME_SLACK_S: f64 = 2.0;

/// The stream of a failover schedule's own draws (the cluster's shape and the nemesis), apart
/// from every stream of the schedules without failover.
pub const STREAM: u64 = 700;

/// Settings of every node of a failover schedule (on top of `helpers::base_settings`).
pub fn node_settings(fsync: &str, election_timeout_ms: u64) -> toml::Table {
    let wait = run::RECOVERY_WAIT_MS as i64;
    let et = election_timeout_ms as i64;
    toml::toml! {
        [storage]
        engine = "disk"
        fsync = fsync

        [master]
        recovery_wait_ms = wait

        [failover]
        election_timeout_ms = et
    }
}

/// The shape of failover schedule `seed`, the first draws of its stream: (secondaries, fsync
/// policy, election timeout in ms). The same for both backends (the compose files have 2 or 4
/// secondaries).
pub fn draw_shape(rng: &mut Rng) -> (usize, &'static str, u64) {
    let secondaries = *rng.pick(&[2usize, 2, 4]);
    let fsync = run::fsync_for(rng.pick::<&str>(&["always", "interval", "never"]));
    let et_ms = *rng.pick(&[1000u64, 1000, 1500, 2000]);
    (secondaries, fsync, et_ms)
}

/// The setup of a failover schedule of `shape` ([`draw_shape`]); `backend` prefixes its
/// description. Power losses as in the schedules without failover: in about half of the
/// fsync `never` schedules (`run::power_loss_for`, `NEMESIS_POWER_LOSS`).
pub fn setup(
    seed: u64,
    dur: Duration,
    started: Instant,
    (secondaries, fsync, et_ms): (usize, &'static str, u64),
    backend: &str,
    replay: String,
) -> Setup {
    let mut setup = Setup::new(seed, dur, started, secondaries, fsync, backend, replay);
    setup.params = format!(
        "{backend}failover, {} members, election timeout {et_ms} ms, fsync {fsync}{}",
        secondaries + 1,
        if setup.power_loss {
            ", power losses"
        } else {
            ""
        }
    );
    setup
}

/// Runs failover schedule `seed` for `dur` (faults and load) on processes, heals, checks.
pub async fn run_schedule(seed: u64, dur: Duration) -> Report {
    let started = Instant::now();
    let mut rng = Rng::fork(seed, STREAM);
    let shape = draw_shape(&mut rng);
    let (secondaries, fsync, et_ms) = shape;
    let mut cluster = TestCluster::builder(secondaries)
        .failover()
        .with(node_settings(fsync, et_ms))
        .start()
        .await;
    let setup = setup(
        seed,
        dur,
        started,
        shape,
        "",
        format!(
            "NEMESIS_FAILOVER=1 NEMESIS_SEED={seed} NEMESIS_SECS={} cargo test --test nemesis nemesis_soak -- --ignored --nocapture",
            dur.as_secs_f64()
        ),
    );
    run_on(&mut cluster, rng, setup, et_ms as f64 / 1000.0).await
}

/// Figures of a failover schedule, for its summary line.
#[derive(Default, Debug, Clone)]
pub struct Tally {
    /// Acknowledgements (201/200) with w ≥ majority.
    pub strong_acks: usize,
    /// Acknowledged messages with w < majority that were cut (missing, or under another key).
    pub cut_acks: usize,
    /// 504s whose message was cut.
    pub cut_timeouts: usize,
    /// Read entries the final log does not have under that key.
    pub reads_of_cut: usize,
    /// Master losses; judged by F8; the slowest resumption among them (s after the loss).
    pub losses: usize,
    pub judged: usize,
    pub slowest_resume: f64,
    /// Why the others were not judged, by reason.
    pub unjudged: std::collections::BTreeMap<&'static str, usize>,
    /// Power losses, and the messages acknowledged with w ≥ majority that were cut though no
    /// node but the one that lost power showed them right after it (allowed).
    pub power_losses: usize,
    pub power_cut_acks: usize,
    /// Partitions of the master off the network.
    pub partitions: usize,
}

impl Tally {
    pub fn text(&self) -> String {
        format!(
            "; failover: {} master losses ({} judged, slowest resumption {:.2} s; not judged: {}), {} acks w≥majority, {} acks w<majority cut, {} 504s cut, {} reads of cut entries{}",
            self.losses,
            self.judged,
            self.slowest_resume,
            self.unjudged
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.strong_acks,
            self.cut_acks,
            self.cut_timeouts,
            self.reads_of_cut,
            if self.power_losses > 0 || self.partitions > 0 {
                format!(
                    ", {} power losses ({} acks w≥majority held by that node alone cut), {} master partitions",
                    self.power_losses, self.power_cut_acks, self.partitions
                )
            } else {
                String::new()
            }
        )
    }
}

/// Runs a failover schedule on `cluster` (started, a master in office) with the nemesis
/// drawing from `rng`; heals, collects the final logs, checks. `et_s`: the members' election
/// timeout.
pub async fn run_on<C: Cluster>(cluster: &mut C, mut rng: Rng, setup: Setup, et_s: f64) -> Report {
    let Setup {
        seed,
        dur,
        started,
        secondaries,
        heartbeat_interval_s: interval_s,
        heartbeat_timeout_s: timeout_s,
        recovery_wait_s,
        power_loss,
        params,
        replay,
    } = setup;
    let all = secondaries + 1;
    let clock = Clock(Instant::now());
    let urls: Vec<String> = (0..all).map(|i| cluster.url(i)).collect();
    // What the nodes call each other (a 421 names the master so): the clients map it back.
    let routes = Routes {
        urls: urls.clone(),
        members: (0..all).map(|i| cluster.member_url(i)).collect(),
    };
    let end = dur.as_secs_f64();
    let stop_writers = Arc::new(AtomicBool::new(false));
    let stop_watchers = Arc::new(AtomicBool::new(false));

    let writers: Vec<_> = (0..run::WRITERS)
        .map(|c| {
            tokio::spawn(writer(
                c,
                seed,
                routes.clone(),
                clock,
                stop_writers.clone(),
                end + run::DRAIN_SECS,
            ))
        })
        .collect();
    let resumer = tokio::spawn(resume_writer(
        seed,
        routes.clone(),
        clock,
        stop_writers.clone(),
        end + run::DRAIN_SECS,
    ));
    let readers: Vec<_> = (0..run::READERS)
        .map(|r| {
            tokio::spawn(run::reader(
                r,
                seed,
                urls.clone(),
                clock,
                stop_watchers.clone(),
            ))
        })
        .collect();
    let probers: Vec<_> = (0..all)
        .map(|i| {
            tokio::spawn(run::prober(
                i,
                urls[i].clone(),
                clock,
                stop_watchers.clone(),
            ))
        })
        .collect();

    let mut faults = Faults::default();
    let mut fo = FailoverFacts {
        election_timeout_s: et_s,
        hold_after_restart_s: recovery_wait_s,
        ..FailoverFacts::default()
    };
    let mut run_errors = Vec::new();
    let power = power_loss.then(|| run::power_rng(seed));
    let mut nem = Nemesis::new(all, clock, et_s, recovery_wait_s, power);
    nem.run(
        cluster,
        &mut rng,
        end,
        &mut faults,
        &mut fo,
        &mut run_errors,
    )
    .await;
    nem.heal(cluster, &mut faults, &mut fo, &mut run_errors)
        .await;
    let healed = clock.now();
    stop_writers.store(true, Ordering::Release);
    fo.load_until = healed;

    let mut messages = run::drain_writers(writers, &mut run_errors).await;
    match tokio::time::timeout(Duration::from_secs_f64(run::DRAIN_SECS + 30.0), resumer).await {
        Ok(Ok(ms)) => messages.extend(ms),
        Ok(Err(e)) => run_errors.push(format!("the resumption writer failed: {e}")),
        Err(_) => run_errors.push("the resumption writer did not finish".into()),
    }
    faults
        .log
        .push((clock.now(), "every writer has its last answer".into()));

    // Rule 10: once a master is in office and heartbeat timing + MARGIN more has passed,
    // appends must be answered. (No node restarts as master with failover: no recovery wait.)
    let master = nem
        .wait_master_in_office(cluster, Duration::from_secs(30))
        .await;
    match master {
        Some(m) => nem.note(&mut faults, format!("{} is the master, in office", name(m))),
        None => run_errors.push("no master in office within 30 s of healing".into()),
    }
    tokio::time::sleep(Duration::from_secs_f64(interval_s + timeout_s + MARGIN)).await;
    let settled_at = clock.now();
    faults.log.push((
        settled_at,
        format!(
            "the cluster has settled: {} appends must be answered",
            run::LIVENESS_CLIENTS * run::LIVENESS_MESSAGES
        ),
    ));
    let after: Vec<_> = (0..run::LIVENESS_CLIENTS)
        .map(|c| tokio::spawn(after_heal_writer(c, seed, routes.clone(), clock)))
        .collect();
    let (after_heal, final_logs, reads, probes) = run::wrap_up(
        after,
        &urls,
        clock,
        &mut faults,
        &mut run_errors,
        &stop_watchers,
        readers,
        probers,
    )
    .await;
    messages.extend(after_heal);

    let history = History {
        secondaries,
        quorum: all / 2 + 1,
        heartbeat_interval_s: interval_s,
        heartbeat_timeout_s: timeout_s,
        recovery_wait_s: 0.0,
        settled_at: Some(settled_at),
        messages,
        reads,
        probes,
        faults,
        final_logs,
        run_errors,
        failover: Some(fo),
    };
    let (violations, tally) = check_failover(&history);
    run::finish(
        cluster,
        seed,
        params,
        replay,
        started,
        history,
        violations,
        tally.text(),
    )
    .await
}

fn name(i: usize) -> String {
    if i == 0 {
        "node 0 (master at the start)".into()
    } else {
        format!("node {i} (secondary{i} at the start)")
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

/// How the test's clients reach the nodes, and how the nodes name each other.
#[derive(Clone)]
struct Routes {
    /// Where the test reaches node `i`.
    urls: Vec<String>,
    /// Node `i`'s member URL, as a 421 names the master (`Cluster::member_url`).
    members: Vec<String>,
}

/// One attempt of an append on a failover cluster: sent to node `*guess`; a 421 is followed
/// to the master it names (else the next node), a refused connection moves to the next node
/// — both mean nothing was appended — and any other outcome ends the attempt. At most two
/// rounds of the nodes. Returns the answer and the node that gave it; `*guess` is left at the
/// node to try first next time.
async fn post_routed(
    client: &reqwest::Client,
    routes: &Routes,
    guess: &mut usize,
    body: &Value,
    wait: Duration,
) -> (Answer, Option<usize>) {
    let urls = &routes.urls;
    let n = urls.len();
    let mut last = Answer::Unreachable;
    for _ in 0..2 * n {
        let i = *guess % n;
        let resp = client
            .post(format!("{}/message", urls[i]))
            .json(body)
            .timeout(wait)
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            // Not connected: the request never left (a killed node).
            Err(e) if e.is_connect() => {
                *guess = (i + 1) % n;
                last = Answer::Unreachable;
                continue;
            }
            Err(e) => {
                // A paused node: the next attempt tries the next one.
                *guess = (i + 1) % n;
                return (
                    Answer::Unanswered {
                        error: e.to_string(),
                    },
                    Some(i),
                );
            }
        };
        let status = resp.status().as_u16();
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) => {
                return (
                    Answer::Unanswered {
                        error: format!("{status}, body lost: {e}"),
                    },
                    Some(i),
                );
            }
        };
        if status == 421 {
            let j: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let named = j["master"]
                .as_str()
                .and_then(|u| routes.members.iter().position(|x| x == u))
                .filter(|&m| m != i);
            *guess = named.unwrap_or((i + 1) % n);
            last = Answer::Misdirected;
            continue;
        }
        return (run::parse_answer(status, &text), Some(i));
    }
    (last, None)
}

/// Whether a message that got `answer` is sent again, and with what it may be: nothing was
/// appended (a refusal) — any message; the outcome is unknown — only one with an id.
fn again(answer: &Answer, has_id: bool) -> bool {
    match answer {
        Answer::Acked { .. } | Answer::TimedOut { .. } | Answer::Unexpected { .. } => false,
        Answer::ReadOnly
        | Answer::Recovering
        | Answer::TakingOffice
        | Answer::Misdirected
        | Answer::Unreachable => true,
        Answer::Deposed { .. } | Answer::Unanswered { .. } => has_id,
    }
}

/// The body of a message as the writers of `run.rs` draw it: (value, id, w as sent, w,
/// timeout_ms).
struct Drawn {
    value: String,
    id: Option<String>,
    w_sent: Value,
    w: u64,
    timeout_ms: Option<u64>,
}

fn draw(rng: &mut Rng, seed: u64, c: usize, n: u64, all: usize) -> Drawn {
    let filler = "x".repeat(rng.range(0, 48) as usize);
    let value = format!("s{seed}-f-c{c}-m{n}-{filler}");
    let id = rng.chance(0.7).then(|| format!("s{seed}-f-c{c}-id{n}"));
    let pick = rng.range(0, all as u64 + 2);
    let (w_sent, w) = if pick < all as u64 {
        (json!(pick + 1), pick + 1)
    } else if pick == all as u64 {
        (json!("majority"), all as u64 / 2 + 1)
    } else {
        (json!("all"), all as u64)
    };
    let timeout_ms = rng.chance(0.5).then(|| rng.range(50, 3000));
    Drawn {
        value,
        id,
        w_sent,
        w,
        timeout_ms,
    }
}

fn body_of(d: &Drawn) -> Value {
    let mut body = json!({"value": d.value, "write_concern": d.w_sent});
    if let Some(id) = &d.id {
        body["id"] = json!(id);
    }
    if let Some(t) = d.timeout_ms {
        body["timeout_ms"] = json!(t);
    }
    body
}

/// A writer of the load (see the module docs): until `stop`, messages one after the other,
/// each sent until a definite answer (an id'd one until `hard_end`).
async fn writer(
    c: usize,
    seed: u64,
    routes: Routes,
    clock: Clock,
    stop: Arc<AtomicBool>,
    hard_end: f64,
) -> Vec<Message> {
    let client = http();
    let all = routes.urls.len();
    let mut rng = Rng::fork(seed, STREAM + 100 + c as u64);
    let mut jitter = Rng::fork(seed, STREAM + 200 + c as u64);
    let mut guess = 0usize;
    let mut out = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        let d = draw(&mut rng, seed, c, n, all);
        let body = body_of(&d);
        let wait = Duration::from_millis(d.timeout_ms.map_or(8_000, |t| t + 5_000));
        let mut msg = Message {
            client: c,
            value: d.value,
            id: d.id,
            w_sent: d.w_sent,
            w: d.w,
            timeout_ms: d.timeout_ms,
            attempts: Vec::new(),
        };
        loop {
            let sent = clock.now();
            let (answer, node) = post_routed(&client, &routes, &mut guess, &body, wait).await;
            let recv = clock.now();
            let more =
                again(&answer, msg.id.is_some()) && msg.attempts.len() < 200 && recv < hard_end;
            msg.attempts.push(Attempt {
                sent,
                recv,
                answer,
                node,
            });
            if !more {
                break;
            }
            tokio::time::sleep(Duration::from_millis(jitter.range(50, 300))).await;
        }
        out.push(msg);
        tokio::time::sleep(Duration::from_millis(jitter.range(0, 25))).await;
    }
    out
}

/// Client number of the resumption writer in the history.
const RESUMER: usize = 90;

/// How long the resumption writer waits for an answer before it tries the next node (a
/// paused node accepts connections and answers nothing): short, so that it finds a new
/// master within a fraction of F8's slack; a w=1 append on a live master takes milliseconds.
const RESUMER_WAIT_MS: u64 = 400;

/// The resumption writer (F8): w=1 appends with an id, one after the other until `stop`;
/// each try waits at most `RESUMER_WAIT_MS` for its answer, then the same id goes to the next
/// node.
async fn resume_writer(
    seed: u64,
    routes: Routes,
    clock: Clock,
    stop: Arc<AtomicBool>,
    hard_end: f64,
) -> Vec<Message> {
    let client = http();
    let mut guess = 0usize;
    let mut out = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        let value = format!("s{seed}-f-resume-m{n}");
        let id = format!("s{seed}-f-resume-id{n}");
        let body = json!({"value": value, "id": id, "write_concern": 1});
        let mut msg = Message {
            client: RESUMER,
            value,
            id: Some(id),
            w_sent: json!(1),
            w: 1,
            timeout_ms: None,
            attempts: Vec::new(),
        };
        loop {
            let sent = clock.now();
            let (answer, node) = post_routed(
                &client,
                &routes,
                &mut guess,
                &body,
                Duration::from_millis(RESUMER_WAIT_MS),
            )
            .await;
            let recv = clock.now();
            // After the load, a refused message is dropped; one that may be in the log is
            // retried under its id until a definite answer, like any writer's.
            let more = again(&answer, true)
                && msg.attempts.len() < 2000
                && recv < hard_end
                && !(stop.load(Ordering::Acquire) && answer.is_refusal());
            msg.attempts.push(Attempt {
                sent,
                recv,
                answer,
                node,
            });
            if !more {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        out.push(msg);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out
}

/// The after-heal appends of rule 10, sent through [`post_routed`]: one attempt each (any
/// answer but a promise is a violation then).
async fn after_heal_writer(c: usize, seed: u64, routes: Routes, clock: Clock) -> Vec<Message> {
    let client = http();
    let all = routes.urls.len();
    let mut rng = Rng::fork(seed, STREAM + 500 + c as u64);
    let mut guess = 0usize;
    let mut out = Vec::new();
    for n in 1..=run::LIVENESS_MESSAGES {
        let value = format!("s{seed}-f-after{c}-m{n}");
        let id = format!("s{seed}-f-after{c}-id{n}");
        let pick = rng.range(0, all as u64 + 2);
        let (w_sent, w) = if pick < all as u64 {
            (json!(pick + 1), pick + 1)
        } else if pick == all as u64 {
            (json!("majority"), all as u64 / 2 + 1)
        } else {
            (json!("all"), all as u64)
        };
        let timeout_ms = rng.chance(0.5).then(|| rng.range(500, 5000));
        let mut body = json!({"value": value, "id": id, "write_concern": w_sent});
        if let Some(t) = timeout_ms {
            body["timeout_ms"] = json!(t);
        }
        let wait = Duration::from_secs_f64(check::LIVENESS_ANSWER_S + 10.0);
        let sent = clock.now();
        let (answer, node) = post_routed(&client, &routes, &mut guess, &body, wait).await;
        let recv = clock.now();
        let stop = answer.promised_key().is_none();
        out.push(Message {
            client: run::WRITERS + c,
            value,
            id: Some(id),
            w_sent,
            w,
            timeout_ms,
            attempts: vec![Attempt {
                sent,
                recv,
                answer,
                node,
            }],
        });
        if stop {
            break;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The nemesis

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proc {
    Up,
    Paused,
    Killed,
    /// Off the network (docker backend); running.
    Partitioned,
}

struct Nemesis {
    /// Each node's state and since when.
    procs: Vec<(Proc, f64)>,
    /// When each node's error-rate burst began, if one is on.
    errors: Vec<Option<f64>>,
    clock: Clock,
    client: reqwest::Client,
    et_s: f64,
    /// How long a node back from an unclean stop stands for no election (rule 9; 0 under
    /// fsync `always`).
    hold_s: f64,
    /// The power-loss stream, in a schedule with power losses.
    power: Option<Rng>,
}

impl Nemesis {
    fn new(all: usize, clock: Clock, et_s: f64, hold_s: f64, power: Option<Rng>) -> Self {
        Nemesis {
            procs: vec![(Proc::Up, 0.0); all],
            errors: vec![None; all],
            clock,
            client: http(),
            et_s,
            hold_s,
            power,
        }
    }

    fn note(&self, faults: &mut Faults, what: String) {
        faults.log.push((self.clock.now(), what));
    }

    fn count(faults: &mut Faults, kind: &str) {
        faults.injected += 1;
        *faults.kinds.entry(kind.to_string()).or_default() += 1;
    }

    /// Notes a failed cluster operation; it fails the schedule (a problem of the run).
    fn failed<T>(&self, r: Result<T, String>, faults: &mut Faults, errors: &mut Vec<String>) {
        if let Err(e) = r {
            self.note(faults, format!("FAILED: {e}"));
            errors.push(e);
        }
    }

    /// The up node whose `/health` says master in the highest epoch (`in_office`: and
    /// read-write), if any.
    async fn find_master<C: Cluster>(&self, c: &C, in_office: bool) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for i in 0..self.procs.len() {
            if self.procs[i].0 != Proc::Up {
                continue;
            }
            let r = self
                .client
                .get(format!("{}/health", c.url(i)))
                .timeout(Duration::from_millis(500))
                .send()
                .await;
            let Ok(r) = r else { continue };
            let Ok(h) = r.json::<Value>().await else {
                continue;
            };
            if h["role"] != "master" || (in_office && h["mode"] != "read-write") {
                continue;
            }
            let epoch = h["epoch"].as_u64().unwrap_or(0);
            if best.is_none_or(|(e, _)| epoch > e) {
                best = Some((epoch, i));
            }
        }
        best.map(|(_, i)| i)
    }

    async fn wait_master_in_office<C: Cluster>(&self, c: &C, limit: Duration) -> Option<usize> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(m) = self.find_master(c, true).await {
                return Some(m);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Until `end`, every 0.2–1.5 s, heal one fault or inject one (module docs).
    async fn run<C: Cluster>(
        &mut self,
        c: &mut C,
        rng: &mut Rng,
        end: f64,
        faults: &mut Faults,
        fo: &mut FailoverFacts,
        errors: &mut Vec<String>,
    ) {
        let all = self.procs.len();
        // Pause, kill, delay, error rate of another node; the three master faults; then, where
        // the backend can, the master partitioned off. The process backend's draws are the
        // same as before partitions existed.
        let mut kinds = vec![20u64, 12, 10, 8, 14, 12, 6];
        if c.can_partition() {
            kinds.push(12);
        }
        loop {
            let pause = rng.range(200, 1500) as f64 / 1000.0;
            let left = end - self.clock.now();
            if left <= pause {
                tokio::time::sleep(Duration::from_secs_f64(left.max(0.0))).await;
                return;
            }
            tokio::time::sleep(Duration::from_secs_f64(pause)).await;
            // In a schedule with power losses, now and then a node loses power while every
            // node is up — the master more often than another. The draws are the power
            // stream's, so the main stream's keep their order.
            let all_up = self.procs.iter().all(|p| p.0 == Proc::Up);
            if all_up
                && let Some(p) = self.power.as_mut()
                && p.chance(0.15)
            {
                let to_master = p.chance(0.6);
                let other = p.range(0, all as u64) as usize;
                let master = self.find_master(c, false).await;
                let x = match master {
                    Some(m) if to_master => m,
                    _ => other,
                };
                self.power_loss(c, x, master == Some(x), faults, fo, errors)
                    .await;
                continue;
            }
            // Every draw of a step is made before anything depends on timing.
            let heal = rng.chance(0.4);
            let end_errors = rng.chance(0.2);
            let kind = rng.weighted(&kinds);
            let node = rng.range(0, all as u64) as usize;
            let secs = rng.range(100, 4000) as f64 / 1000.0;
            let p = rng.range(10, 90) as f64 / 100.0;
            let hold = rng.chance(0.7);

            let down: Vec<usize> = (0..all).filter(|&i| self.procs[i].0 != Proc::Up).collect();
            if !down.is_empty() && heal {
                let i = down[node % down.len()];
                self.heal_node(c, i, faults, fo, errors).await;
                continue;
            }
            let erring: Vec<usize> = (0..all).filter(|&i| self.errors[i].is_some()).collect();
            if !erring.is_empty() && end_errors {
                let i = erring[node % erring.len()];
                self.set_error_rate(c, i, 0.0, faults, fo).await;
                continue;
            }
            // Before most master faults every node is brought back first (a deposed master
            // restarts, resumes or reconnects), so that F8 has windows with a majority
            // connected.
            if kind >= 4 && hold && !down.is_empty() {
                self.note(faults, "before a master fault: heal every node".into());
                let restarted = down.iter().any(|&i| self.procs[i].0 == Proc::Killed);
                for i in down {
                    self.heal_node(c, i, faults, fo, errors).await;
                }
                // A restarted node neither stands nor votes while held back after its unclean
                // stop (rule 9): the window begins once that is over.
                let wait = if restarted {
                    1.2f64.max(self.hold_s + 0.3)
                } else {
                    1.2
                };
                tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            }
            let master = self.find_master(c, false).await;
            let other = (self.procs[node].0 == Proc::Up && Some(node) != master).then_some(node);
            // With power losses, half of the kills of a node or of the master (kept dead)
            // that strike while every node is up are power losses instead.
            let killed = match (kind, master, other) {
                (1, _, Some(i)) => Some((i, false)),
                (4, Some(m), _) => Some((m, true)),
                _ => None,
            };
            if let Some((x, is_master)) = killed
                && self.procs.iter().all(|p| p.0 == Proc::Up)
                && self.power.as_mut().is_some_and(|p| p.chance(0.5))
            {
                self.power_loss(c, x, is_master, faults, fo, errors).await;
                continue;
            }
            match (kind, master, other) {
                (0, _, Some(i)) => self.pause(c, i, faults, errors).await,
                (1, _, Some(i)) => self.kill(c, i, faults, fo, errors).await,
                (2, _, Some(i)) => self.delay(c, i, secs, faults, fo).await,
                (3, _, Some(i)) if self.errors[i].is_none() => {
                    self.set_error_rate(c, i, p, faults, fo).await
                }
                (k @ 4..=7, Some(m), _) => {
                    let what = match k {
                        4 => "kill it and keep it dead",
                        5 => "pause it (cut off)",
                        6 => "kill it, then the next one",
                        _ => "partition it off the network",
                    };
                    self.note(faults, format!("the master is {}: {what}", name(m)));
                    match k {
                        5 => {
                            self.pause(c, m, faults, errors).await;
                            Self::count(faults, "master_pause");
                        }
                        7 => {
                            self.partition(c, m, faults, errors).await;
                            Self::count(faults, "master_partition");
                        }
                        _ => {
                            self.kill(c, m, faults, fo, errors).await;
                            Self::count(faults, "master_kill");
                        }
                    }
                    // The fault is in effect once its call returned (`Cluster`): the loss
                    // counts from then (a `docker` command takes a while).
                    fo.master_losses.push((m, self.clock.now()));
                    if k == 6 {
                        self.kill_next_master(c, faults, fo, errors).await;
                    }
                    self.hold(hold, end).await;
                }
                _ => {}
            }
        }
    }

    /// After a master fault: mostly hold still for the election timeout + 2.5 s (F8 judges
    /// only windows without other faults).
    async fn hold(&self, hold: bool, end: f64) {
        if hold {
            let until = (self.clock.now() + self.et_s + RESUME_SLACK_S + 0.5).min(end);
            let left = until - self.clock.now();
            if left > 0.0 {
                tokio::time::sleep(Duration::from_secs_f64(left)).await;
            }
        }
    }

    /// Waits (at most 2 election timeouts + 5 s) for a node to say it is the master — it is
    /// then taking office, catching its secondaries up — and kills it at once.
    async fn kill_next_master<C: Cluster>(
        &mut self,
        c: &mut C,
        faults: &mut Faults,
        fo: &mut FailoverFacts,
        errors: &mut Vec<String>,
    ) {
        let deadline = Instant::now() + Duration::from_secs_f64(2.0 * self.et_s + 5.0);
        while Instant::now() < deadline {
            if let Some(m) = self.find_master(c, false).await {
                self.note(
                    faults,
                    format!("{} is the new master: kill it during its catch-up", name(m)),
                );
                self.kill(c, m, faults, fo, errors).await;
                fo.master_losses.push((m, self.clock.now()));
                Self::count(faults, "new_master_kill");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.note(faults, "no new master to kill during its catch-up".into());
    }

    async fn pause<C: Cluster>(
        &mut self,
        c: &mut C,
        i: usize,
        faults: &mut Faults,
        errors: &mut Vec<String>,
    ) {
        let t = self.clock.now();
        let r = c.pause(i).await;
        // Even a failed `docker pause` may have frozen it: treat it as paused, so the heal
        // resumes it and its span counts.
        self.procs[i] = (Proc::Paused, t);
        Self::count(faults, "pause");
        self.note(faults, format!("pause {}", name(i)));
        self.failed(r, faults, errors);
    }

    async fn kill<C: Cluster>(
        &mut self,
        c: &mut C,
        i: usize,
        faults: &mut Faults,
        fo: &mut FailoverFacts,
        errors: &mut Vec<String>,
    ) {
        let t = self.clock.now();
        let r = c.kill(i).await;
        self.killed(i, t, fo);
        Self::count(faults, "kill");
        self.note(faults, format!("kill -9 {}", name(i)));
        self.failed(r, faults, errors);
    }

    /// Node `i` is down since `t` by a kill (plain or power loss).
    fn killed(&mut self, i: usize, t: f64, fo: &mut FailoverFacts) {
        // A restarted process takes its error rate from its config (0): the burst ends here.
        if let Some(start) = self.errors[i].take() {
            fo.error_bursts.push(Span {
                node: i,
                start,
                end: self.clock.now(),
            });
        }
        self.procs[i] = (Proc::Killed, t);
    }

    /// Cuts node `i` off the network (docker backend only): it keeps running, reaches
    /// nobody and nobody reaches it, the test's clients included.
    async fn partition<C: Cluster>(
        &mut self,
        c: &mut C,
        i: usize,
        faults: &mut Faults,
        errors: &mut Vec<String>,
    ) {
        let t = self.clock.now();
        let r = c.partition(i).await;
        self.procs[i] = (Proc::Partitioned, t);
        Self::count(faults, "partition");
        self.note(faults, format!("partition {} off the network", name(i)));
        self.failed(r, faults, errors);
    }

    /// A power loss of node `x` (fsync `never` schedules), every node up: kill -9; every
    /// other node's gap-free prefix read right after (the checker's `PowerLoss`); a random
    /// tail of `x`'s newest segment cut (what a power loss can do to writes not yet fsynced);
    /// `x` restarted 0.2–1.5 s later; then nothing else until it is back in step
    /// ([`Nemesis::wait_back_in_step`]).
    async fn power_loss<C: Cluster>(
        &mut self,
        c: &mut C,
        x: usize,
        is_master: bool,
        faults: &mut Faults,
        fo: &mut FailoverFacts,
        errors: &mut Vec<String>,
    ) {
        let Some(mut power) = self.power.take() else {
            return;
        };
        let all = self.procs.len();
        if is_master {
            self.note(faults, format!("the master is {}: power loss", name(x)));
            // Half of the master's power losses strike while a replication request is held
            // up on another node: what that node receives meanwhile waits aside behind the
            // gap, so it lags behind the others — the member a restarted master's vote could
            // elect over one holding the tail it lost (rule 9).
            if power.chance(0.5) {
                let others: Vec<usize> = (0..all).filter(|&s| s != x).collect();
                let s = others[power.range(0, others.len() as u64) as usize];
                let secs = power.range(500, 3000) as f64 / 1000.0;
                let then_ms = power.range(100, 400);
                self.delay(c, s, secs, faults, fo).await;
                tokio::time::sleep(Duration::from_millis(then_ms)).await;
            }
        }
        let t = self.clock.now();
        let r = c.kill(x).await;
        // From here on an attempt sent before may have been acknowledged by `x` (and lost).
        let at = self.clock.now();
        self.killed(x, t, fo);
        if is_master {
            fo.master_losses.push((x, at));
            Self::count(faults, "master_power_loss");
        }
        Self::count(faults, "power_loss");
        self.note(faults, format!("power loss of {}: kill -9", name(x)));
        self.failed(r, faults, errors);
        let mut logs = vec![None; all];
        let mut seen = Vec::new();
        for s in (0..all).filter(|&s| s != x) {
            let url = c.url(s);
            logs[s] = run::gap_free_log(&self.client, &url).await;
            let health = run::health_text(&self.client, &url).await;
            seen.push(match &logs[s] {
                Some(l) => format!("{} keys 1..={} ({health})", name(s), l.len()),
                None => format!("{} no GET /messages ({health})", name(s)),
            });
        }
        let largest = logs.iter().flatten().map(Vec::len).max().unwrap_or(0) as u64;
        self.note(
            faults,
            format!(
                "the others: {}; largest gap-free prefix {largest}",
                seen.join("; ")
            ),
        );
        let cut = c.cut_tail(x, |room| run::tail_cut(&mut power, room)).await;
        let downtime = power.range(200, 1500);
        self.power = Some(power);
        match cut {
            Ok(what) => self.note(faults, format!("{}: {what}", name(x))),
            Err(e) => self.failed::<()>(Err(e), faults, errors),
        }
        fo.power_losses.push(PowerLoss { node: x, at, logs });
        tokio::time::sleep(Duration::from_millis(downtime)).await;
        self.heal_node(c, x, faults, fo, errors).await;
        self.wait_back_in_step(c, x, largest, faults, errors).await;
    }

    /// After a power loss of `x`, restarted: waits until its hold after the unclean stop is
    /// over (rule 9), a master is in office and `x` holds a gap-free prefix of at least
    /// `largest` keys (what any node held right after the kill), or is that master. Until
    /// then a message acknowledged with w ≥ majority that `x` held and lost may be held by
    /// fewer than a majority: a second fault (a plain kill of its other holder) could then
    /// lose it legitimately, and the checker could not tell. At most 30 s past the hold;
    /// longer, with every node up, is a problem of the run.
    async fn wait_back_in_step<C: Cluster>(
        &mut self,
        c: &C,
        x: usize,
        largest: u64,
        faults: &mut Faults,
        errors: &mut Vec<String>,
    ) {
        let hold_end = self.clock.now() + self.hold_s;
        let deadline = hold_end + 30.0;
        let mut last = String::new();
        loop {
            let now = self.clock.now();
            if now >= hold_end
                && let Some(m) = self.find_master(c, true).await
            {
                let r = self
                    .client
                    .get(format!("{}/health", c.url(x)))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await;
                let key = match r {
                    Ok(r) => r.json::<Value>().await.ok().and_then(|j| {
                        if j["role"] == "master" {
                            Some(u64::MAX)
                        } else {
                            j["contiguous_key"].as_u64()
                        }
                    }),
                    Err(_) => None,
                };
                if key.is_some_and(|k| k >= largest) {
                    self.note(
                        faults,
                        format!(
                            "{} is back in step (held {largest} keys or more, hold over); {} is the master, in office",
                            name(x),
                            name(m)
                        ),
                    );
                    return;
                }
                last = format!("contiguous key {key:?}, master {}", name(m));
            }
            if now > deadline {
                let e = format!(
                    "{} was not back in step within {:.0} s of its restart after a power loss, every node up ({}; wanted {largest} keys and a master in office)",
                    name(x),
                    self.hold_s + 30.0,
                    if last.is_empty() {
                        "no master in office".into()
                    } else {
                        last
                    }
                );
                self.note(faults, format!("FAILED: {e}"));
                errors.push(e);
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn delay<C: Cluster>(
        &mut self,
        c: &C,
        i: usize,
        secs: f64,
        faults: &mut Faults,
        fo: &mut FailoverFacts,
    ) {
        let t = self.clock.now();
        let r = self
            .client
            .post(format!("{}/delay", c.url(i)))
            .json(&json!({"value": secs}))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        // Even a failed POST may have armed it.
        fo.delays.push((i, t, secs));
        let ok = r.is_ok_and(|r| r.status().is_success());
        if ok {
            Self::count(faults, "delay");
        }
        self.note(
            faults,
            format!(
                "POST /delay {secs:.3} s on {}{}",
                name(i),
                if ok { "" } else { " (failed)" }
            ),
        );
    }

    async fn set_error_rate<C: Cluster>(
        &mut self,
        c: &C,
        i: usize,
        p: f64,
        faults: &mut Faults,
        fo: &mut FailoverFacts,
    ) {
        let t = self.clock.now();
        let r = self
            .client
            .post(format!("{}/fault", c.url(i)))
            .json(&json!({"error_rate": p}))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        let ok = r.is_ok_and(|r| r.status().is_success());
        if p > 0.0 {
            // Counted from the request on, even if it failed (it may have been taken).
            self.errors[i] = Some(t);
            if ok {
                Self::count(faults, "error_rate");
            }
        } else if ok && let Some(start) = self.errors[i].take() {
            fo.error_bursts.push(Span {
                node: i,
                start,
                end: self.clock.now(),
            });
        }
        self.note(
            faults,
            format!(
                "POST /fault error_rate {p:.2} on {}{}",
                name(i),
                if ok { "" } else { " (failed)" }
            ),
        );
    }

    /// Ends node `i`'s pause, kill or partition (a killed node restarts on its data, as a
    /// secondary).
    async fn heal_node<C: Cluster>(
        &mut self,
        c: &mut C,
        i: usize,
        faults: &mut Faults,
        fo: &mut FailoverFacts,
        errors: &mut Vec<String>,
    ) {
        let (proc, since) = self.procs[i];
        match proc {
            Proc::Up => {}
            Proc::Paused => {
                let r = c.resume(i).await;
                let span = Span {
                    node: i,
                    start: since,
                    end: self.clock.now(),
                };
                faults.down.push(span);
                fo.pauses.push(span);
                self.procs[i] = (Proc::Up, 0.0);
                self.note(faults, format!("resume {}", name(i)));
                self.failed(r, faults, errors);
            }
            Proc::Partitioned => {
                let r = c.heal_partition(i).await;
                let span = Span {
                    node: i,
                    start: since,
                    end: self.clock.now(),
                };
                // To every other node it was down; to itself every other node was.
                faults.down.push(span);
                fo.partitions.push(span);
                self.procs[i] = (Proc::Up, 0.0);
                self.note(faults, format!("reconnect {}", name(i)));
                self.failed(r, faults, errors);
            }
            Proc::Killed => {
                let r = c.start(i).await;
                self.note(faults, format!("restart {}", name(i)));
                self.failed(r, faults, errors);
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let ok = self
                        .client
                        .get(format!("{}/heartbeat", c.url(i)))
                        .timeout(Duration::from_millis(500))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    if ok {
                        break;
                    }
                    if Instant::now() > deadline {
                        errors.push(format!(
                            "{} did not answer /heartbeat within 30 s of its restart",
                            name(i)
                        ));
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                faults.down.push(Span {
                    node: i,
                    start: since,
                    end: self.clock.now(),
                });
                self.procs[i] = (Proc::Up, 0.0);
                self.note(faults, format!("{} is up", name(i)));
            }
        }
    }

    /// Every node resumed, restarted or reconnected, every error rate back to 0.
    async fn heal<C: Cluster>(
        &mut self,
        c: &mut C,
        faults: &mut Faults,
        fo: &mut FailoverFacts,
        errors: &mut Vec<String>,
    ) {
        self.note(faults, "heal".into());
        for i in 0..self.procs.len() {
            self.heal_node(c, i, faults, fo, errors).await;
        }
        for i in 0..self.procs.len() {
            if self.errors[i].is_some() {
                self.set_error_rate(c, i, 0.0, faults, fo).await;
                let Some(start) = self.errors[i] else {
                    continue;
                };
                // `/fault` is a secondary's endpoint (404 on a master), while the error rate
                // armed on a secondary stays with the node when it is elected. It acts only on
                // replication requests the node receives, so on a master it is dormant: the
                // burst counts as never ended.
                if self.find_master(c, false).await == Some(i) {
                    self.note(
                        faults,
                        format!(
                            "{} is the master: its error rate cannot be ended (POST /fault is a secondary's), it stays on",
                            name(i)
                        ),
                    );
                    fo.error_bursts.push(Span {
                        node: i,
                        start,
                        end: f64::INFINITY,
                    });
                } else {
                    errors.push(format!("could not end the error rate of {}", name(i)));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The checker

/// Whether `a` is an acknowledgement (201/200).
fn is_ack(a: &Answer) -> bool {
    matches!(a, Answer::Acked { .. })
}

/// Whether an attempt that got `a` may have appended its message.
fn may_append(a: &Answer) -> bool {
    !a.is_refusal()
}

/// The checks of a failover schedule (module docs, F1–F9), and its figures.
pub fn check_failover(h: &History) -> (Vec<String>, Tally) {
    let fo = h.failover.clone().unwrap_or_default();
    let mut v: Vec<String> = h.run_errors.clone();
    let mut tally = Tally {
        power_losses: fo.power_losses.len(),
        partitions: fo.partitions.len(),
        ..Tally::default()
    };
    let all = h.secondaries + 1;
    let majority = (all / 2 + 1) as u64;

    // F1.
    let reference = check::one_log(h, &mut v);
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

    // F2, F3, F5, F6 per message.
    for m in &h.messages {
        let who = describe(m);
        let keys = at.get(m.value.as_str()).cloned().unwrap_or_default();
        // A w ≥ majority acknowledgement that only the node which then lost power held is
        // judged as one with a smaller w (F2, power losses): `acked` leaves it out.
        let acked: Vec<u64> = m
            .attempts
            .iter()
            .filter(|a| is_ack(&a.answer))
            .filter(|a| m.w < majority || !lost_to_power(&fo, m, a))
            .filter_map(|a| a.answer.promised_key())
            .collect();
        let fragile: Vec<u64> = m
            .attempts
            .iter()
            .filter(|a| is_ack(&a.answer) && m.w >= majority && lost_to_power(&fo, m, a))
            .filter_map(|a| a.answer.promised_key())
            .collect();
        let strong = m.w >= majority;
        if keys.len() > 1 {
            v.push(format!("{who}: in the log {} times: {keys:?}", keys.len()));
        }
        if strong && acked.is_empty() && !fragile.is_empty() {
            if keys != [fragile[0]] {
                tally.power_cut_acks += 1;
            }
        } else if strong && !acked.is_empty() {
            tally.strong_acks += acked.len();
            if acked.iter().any(|&k| k != acked[0]) {
                v.push(format!(
                    "{who}: acknowledgements with w ≥ majority name different keys {acked:?}"
                ));
            }
            if keys != [acked[0]] {
                v.push(format!(
                    "{who}: acknowledged with w ≥ majority under key {} at {:.3} s, but the final log holds it under {keys:?} (an acknowledgement lost in a failover)",
                    acked[0],
                    m.attempts
                        .iter()
                        .find(|a| is_ack(&a.answer) && a.answer.promised_key() == Some(acked[0]))
                        .map_or(0.0, |a| a.recv)
                ));
            }
        } else if !acked.is_empty() {
            if keys != [acked[0]] {
                tally.cut_acks += 1;
            }
        } else if !m.attempts.iter().any(|a| may_append(&a.answer)) && !keys.is_empty() {
            v.push(format!(
                "{who}: every attempt was refused, yet the log holds it under {keys:?}"
            ));
        }
        for a in &m.attempts {
            if let Answer::TimedOut { key } = a.answer
                && keys != [key]
            {
                tally.cut_timeouts += 1;
            }
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
                    let earlier = m.attempts[..n].iter().any(|e| may_append(&e.answer));
                    if *status == 200 && !earlier {
                        v.push(format!(
                            "{who}: 200 duplicate (key {key}) though no earlier attempt can have been appended"
                        ));
                    }
                    if strong {
                        write_concern(h, m, a, *key, *w, &mut v);
                    }
                }
                Answer::ReadOnly => {
                    if !read_only_justified(h, &fo, a.node, a.sent, a.recv) {
                        v.push(format!(
                            "{who}: 503 read-only from node {:?} at {:.3}..{:.3} s, but a majority of members was up for it then",
                            a.node, a.sent, a.recv
                        ));
                    }
                }
                Answer::Unexpected { status, body } => v.push(format!(
                    "{who}: unexpected answer {status} at {:.3} s: {body}",
                    a.recv
                )),
                Answer::TimedOut { key } => {
                    if !timeout_ran_out(m, a) {
                        v.push(format!(
                            "{who}: 504 (key {key}) after {:.3} s at {:.3} s, before its timeout_ms ran out",
                            a.recv - a.sent,
                            a.recv
                        ));
                    }
                }
                Answer::Recovering
                | Answer::TakingOffice
                | Answer::Deposed { .. }
                | Answer::Misdirected
                | Answer::Unreachable
                | Answer::Unanswered { .. } => {}
            }
        }
    }

    // F4.
    for r in &h.reads {
        for (i, (k, val)) in r.entries.iter().enumerate() {
            if *k != r.from + i as u64 {
                v.push(format!(
                    "read of node {} from {} at {:.3} s: entry {} has key {k} ({val:?})",
                    r.node, r.from, r.recv, i
                ));
                break;
            }
            if by_key.get(k) != Some(&val.as_str()) {
                tally.reads_of_cut += 1;
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

    real_time_order(h, &fo, majority, &at, &mut v);
    check::check_liveness(h, &mut v);
    resumption(h, &fo, &mut tally, &mut v);
    (v, tally)
}

/// Whether acknowledgement `a` of `m` may have been lost to a power loss (F2): the node that
/// lost power gave it (so before it lost power), and right after the kill no other node
/// showed `m` under the key `a` named — only the node that lost power can have held it then.
/// (An acknowledgement another node gave is never excused: that node held the message.)
fn lost_to_power(fo: &FailoverFacts, m: &Message, a: &Attempt) -> bool {
    let Some(key) = a.answer.promised_key() else {
        return false;
    };
    fo.power_losses
        .iter()
        .any(|pl| a.node == Some(pl.node) && a.sent < pl.at && !pl.held_elsewhere(key, &m.value))
}

/// F5: a w ≥ majority acknowledgement of `key` held by ≥ w nodes when answered.
fn write_concern(h: &History, m: &Message, a: &Attempt, key: u64, w: u64, v: &mut Vec<String>) {
    let all = h.secondaries + 1;
    let first_sent = m.attempts.first().map_or(a.sent, |f| f.sent);
    // A node that lost power since the message was first sent may have held it when the
    // answer came and lost it since: what it lacks later proves nothing.
    let forgot = |s: usize, probe_sent: f64| {
        h.failover.as_ref().is_some_and(|fo| {
            fo.power_losses
                .iter()
                .any(|pl| pl.node == s && first_sent <= pl.at && pl.at <= probe_sent)
        })
    };
    let mut without = Vec::new();
    for s in 0..all {
        if Some(s) == a.node {
            continue;
        }
        if let Some(p) = h.probes.iter().find(|p| {
            p.node == s
                && p.sent >= a.recv
                && p.contiguous_key < key
                && p.held_aside == 0
                && !forgot(s, p.sent)
        }) {
            without.push((s, *p));
        }
    }
    let held = all - without.len();
    if (held as u64) < w {
        v.push(format!(
            "{}: answered by node {:?} with key {key}, w={w} at {:.3} s, but only {held} node(s) can have held it: {}",
            describe(m),
            a.node,
            a.recv,
            without
                .iter()
                .map(|(s, p)| format!(
                    "node {s} showed contiguous key {} and nothing held aside at {:.3}..{:.3} s",
                    p.contiguous_key, p.sent, p.recv
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
}

/// F6: see the module docs.
fn read_only_justified(
    h: &History,
    fo: &FailoverFacts,
    node: Option<usize>,
    sent: f64,
    recv: f64,
) -> bool {
    let Some(x) = node else {
        return true;
    };
    let all = h.secondaries + 1;
    let need = (all + 1).saturating_sub(h.quorum);
    if need == 0 {
        return true;
    }
    let slack = h.heartbeat_interval_s + h.heartbeat_timeout_s + MARGIN;
    let own_pauses: Vec<Span> = fo.pauses.iter().filter(|p| p.node == x).copied().collect();
    // While X is paused or cut off the network, every other node is down for it.
    let cut_off: Vec<Span> = own_pauses
        .iter()
        .chain(fo.partitions.iter().filter(|p| p.node == x))
        .copied()
        .collect();
    let per_node = (0..all).filter(|&s| s != x).map(|s| {
        h.faults
            .down
            .iter()
            .filter(|d| d.node == s)
            .chain(&cut_off)
            .map(|d| (d.start, master_time_after(&own_pauses, d.end, slack)))
            .filter(|(a, b)| *a <= recv && sent <= *b)
            .map(|(a, b)| (a.max(sent), b.min(recv)))
            .collect()
    });
    check::down_together(per_node, need)
}

/// F7: see the module docs.
fn real_time_order(
    h: &History,
    fo: &FailoverFacts,
    majority: u64,
    at: &HashMap<&str, Vec<u64>>,
    v: &mut Vec<String>,
) {
    let mut strong: Vec<(f64, u64, usize)> = Vec::new();
    for (i, m) in h.messages.iter().enumerate() {
        if m.w < majority {
            continue;
        }
        for a in &m.attempts {
            if let Answer::Acked { key, .. } = a.answer
                && !lost_to_power(fo, m, a)
            {
                strong.push((a.recv, key, i));
            }
        }
    }
    strong.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut highest: Vec<(u64, usize, f64)> = Vec::with_capacity(strong.len());
    for &(recv, k, i) in &strong {
        match highest.last().copied() {
            Some(hk) if hk.0 >= k => highest.push(hk),
            _ => highest.push((k, i, recv)),
        }
    }
    for b in &h.messages {
        let Some(first) = b.attempts.first() else {
            continue;
        };
        let n = strong.partition_point(|&(recv, _, _)| recv < first.sent);
        let Some(&(ka, ai, recv)) = n.checked_sub(1).map(|n| &highest[n]) else {
            continue;
        };
        let answered = b.attempts.iter().filter_map(|a| match a.answer {
            Answer::Acked { key, .. } | Answer::TimedOut { key } | Answer::Deposed { key } => {
                Some(key)
            }
            _ => None,
        });
        let in_log = at.get(b.value.as_str()).into_iter().flatten().copied();
        if let Some(kb) = answered.chain(in_log).filter(|&k| k <= ka).min() {
            v.push(format!(
                "{} (first sent at {:.3} s) has key {kb}, not above key {ka} of {}, acknowledged with w ≥ majority at {recv:.3} s before it (a deposed master took an append?)",
                describe(b),
                first.sent,
                describe(&h.messages[ai])
            ));
        }
    }
}

/// F8: see the module docs.
fn resumption(h: &History, fo: &FailoverFacts, tally: &mut Tally, v: &mut Vec<String>) {
    let all = h.secondaries + 1;
    let majority = all / 2 + 1;
    let window = fo.election_timeout_s + RESUME_SLACK_S;
    let mut losses = fo.master_losses.clone();
    losses.sort_by(|a, b| a.1.total_cmp(&b.1));
    tally.losses = losses.len();
    // The first promise (sent, recv) of every attempt, by time of answer.
    let promises: Vec<(f64, f64)> = h
        .messages
        .iter()
        .flat_map(|m| &m.attempts)
        .filter(|a| matches!(a.answer, Answer::Acked { .. } | Answer::TimedOut { .. }))
        .map(|a| (a.sent, a.recv))
        .collect();
    for (x, &(lost, t)) in losses.iter().enumerate() {
        let end = t + window;
        let mut skip = |why: &'static str| *tally.unjudged.entry(why).or_default() += 1;
        if end > fo.load_until {
            skip("load ended");
            continue;
        }
        if losses.get(x + 1).is_some_and(|&(_, t2)| t2 <= end) {
            skip("another master loss");
            continue;
        }
        // Every other node is up throughout (from 1 s before the loss to the window's end)
        // or down throughout; one that goes down or comes back meanwhile disturbs it.
        let from = t - 1.0;
        let mut up = 0;
        let mut changing = false;
        for s in (0..all).filter(|&s| s != lost) {
            let mut spans = h.faults.down.iter().filter(|d| d.node == s);
            if spans.clone().any(|d| d.start <= from && end <= d.end) {
                continue;
            }
            if spans.any(|d| d.overlaps(from, end)) {
                changing = true;
            } else {
                up += 1;
            }
        }
        if up < majority {
            skip("no majority");
            continue;
        }
        if changing {
            skip("a node went down or came back");
            continue;
        }
        // A node back from a kill (not a pause or a partition) under fsync other than
        // `always` neither stands nor votes for `hold_after_restart_s` (rule 9): if fewer than
        // a majority of the members up are free of it when the master is lost, the election
        // waits for a hold to end.
        let hold = fo.hold_after_restart_s;
        let held_until = |s: usize| {
            h.faults
                .down
                .iter()
                .filter(|d| d.node == s && d.end <= from)
                .filter(|d| {
                    !fo.pauses
                        .iter()
                        .chain(&fo.partitions)
                        .any(|p| p.node == s && p.overlaps(d.start, d.end))
                })
                .map(|d| d.end + hold)
                .fold(f64::NEG_INFINITY, f64::max)
        };
        let free = (0..all)
            .filter(|&s| s != lost)
            .filter(|&s| {
                !h.faults
                    .down
                    .iter()
                    .any(|d| d.node == s && d.overlaps(from, end))
            })
            .filter(|&s| hold <= 0.0 || held_until(s) <= t)
            .count();
        if free < majority {
            skip("a member up was held after an unclean restart");
            continue;
        }
        if delay_armed(h, fo, t - 1.0, end) {
            skip("a delay armed");
            continue;
        }
        if fo.error_bursts.iter().any(|b| b.overlaps(t - 1.0, end)) {
            skip("an error burst");
            continue;
        }
        // The resumption writer must have been running: on an overloaded machine the test
        // process itself can stall for seconds, and then nothing is measured.
        if client_stalled(h, t, end) {
            skip("the client stalled");
            continue;
        }
        tally.judged += 1;
        let first = promises
            .iter()
            .filter(|&&(sent, _)| sent >= t)
            .map(|&(_, recv)| recv)
            .fold(f64::INFINITY, f64::min);
        if first.is_finite() {
            tally.slowest_resume = tally.slowest_resume.max(first - t);
        }
        if first > end {
            v.push(format!(
                "F8: the master (node {lost}) was lost at {t:.3} s with a majority of members connected, but no append was given a key until {} (election timeout {:.1} s + {RESUME_SLACK_S} s = by {end:.3} s)",
                if first.is_finite() {
                    format!("{first:.3} s")
                } else {
                    "the end".into()
                },
                fo.election_timeout_s
            ));
        }
    }
}

/// Whether the resumption writer sent no attempt for more than `STALL_S` at some point of
/// `[from, to]` (it sends one at least every `RESUMER_WAIT_MS` + 50 ms while it runs, 421s
/// and refused connections within an attempt taking milliseconds): then the test process
/// was starved and the window says nothing about the cluster.
fn client_stalled(h: &History, from: f64, to: f64) -> bool {
    // A hand-made history without the resumption writer: nothing to judge by.
    if !h.messages.iter().any(|m| m.client == RESUMER) {
        return false;
    }
    let mut sends: Vec<f64> = h
        .messages
        .iter()
        .filter(|m| m.client == RESUMER)
        .flat_map(|m| m.attempts.iter().map(|a| a.sent))
        .filter(|&s| from <= s && s <= to)
        .collect();
    sends.sort_by(f64::total_cmp);
    let mut last = from;
    for s in sends {
        if s - last > STALL_S {
            return true;
        }
        last = s;
    }
    to - last > STALL_S
}

/// See [`client_stalled`].
const STALL_S: f64 = 1.5;

/// Whether a `/delay` may hold up replication to some node during `[from, to]`: it is taken
/// by the next replication request the node gets, so it lasts from its post to its seconds
/// plus `MARGIN` after that, and longer while the node is down (it is taken after it is back).
fn delay_armed(h: &History, fo: &FailoverFacts, from: f64, to: f64) -> bool {
    fo.delays.iter().any(|&(node, posted, secs)| {
        let mut until = posted + secs + MARGIN;
        let mut spans: Vec<&Span> = h.faults.down.iter().filter(|d| d.node == node).collect();
        spans.sort_by(|a, b| a.start.total_cmp(&b.start));
        for d in spans {
            if d.end >= posted && d.start <= until {
                until = until.max(d.end + secs + MARGIN);
            }
        }
        posted <= to && from <= until
    })
}

/// The failover checker on hand-made histories: each rule flags what it must, and only that.
#[cfg(test)]
mod self_test {
    use super::*;
    use crate::history::{Probe, Read};

    fn attempt(sent: f64, recv: f64, answer: Answer, node: usize) -> Attempt {
        Attempt {
            sent,
            recv,
            answer,
            node: Some(node),
        }
    }

    fn msg(value: &str, w: u64, attempts: Vec<Attempt>) -> Message {
        Message {
            client: 0,
            value: value.into(),
            id: Some(format!("id-{value}")),
            w_sent: json!(w),
            w,
            timeout_ms: None,
            attempts,
        }
    }

    fn acked(key: u64, w: u64) -> Answer {
        Answer::Acked {
            status: 201,
            key,
            w,
            acks: w,
        }
    }

    fn set_log(h: &mut History, log: &[&str]) {
        let log: Vec<(u64, String)> = log
            .iter()
            .enumerate()
            .map(|(i, v)| (i as u64 + 1, v.to_string()))
            .collect();
        h.final_logs = vec![Some(log); h.secondaries + 1];
    }

    /// Three members; node 0 (the master) killed at 2.0 for good; "a" (w=2) acknowledged by
    /// node 0 under key 1 before; "b" (w=1) acknowledged by node 0 under key 2 at 1.9 and cut;
    /// node 1, elected, acknowledges "c" (w=2) under key 2 at 3.5.
    fn history() -> History {
        let mut h = History {
            secondaries: 2,
            quorum: 2,
            heartbeat_interval_s: 0.2,
            heartbeat_timeout_s: 0.5,
            messages: vec![
                msg("a", 2, vec![attempt(1.0, 1.1, acked(1, 2), 0)]),
                msg("b", 1, vec![attempt(1.8, 1.9, acked(2, 1), 0)]),
                msg(
                    "c",
                    2,
                    vec![
                        attempt(2.1, 2.2, Answer::Unreachable, 0),
                        attempt(2.5, 2.6, Answer::TakingOffice, 1),
                        attempt(3.4, 3.5, acked(2, 2), 1),
                    ],
                ),
            ],
            faults: Faults {
                down: vec![Span {
                    node: 0,
                    start: 2.0,
                    end: 20.0,
                }],
                ..Faults::default()
            },
            failover: Some(FailoverFacts {
                election_timeout_s: 1.0,
                master_losses: vec![(0, 2.0)],
                load_until: 10.0,
                ..FailoverFacts::default()
            }),
            ..History::default()
        };
        set_log(&mut h, &["a", "c"]);
        h
    }

    fn flagged(h: &History, what: &str) -> bool {
        let (v, _) = check_failover(h);
        v.iter().any(|v| v.contains(what))
    }

    #[track_caller]
    fn clean(h: &History) -> Tally {
        let (v, t) = check_failover(h);
        assert_eq!(v, Vec::<String>::new());
        t
    }

    #[test]
    fn a_clean_failover_passes_and_counts_the_cut_w1_ack() {
        let t = clean(&history());
        assert_eq!(t.cut_acks, 1, "{t:?}");
        assert_eq!(t.strong_acks, 2, "{t:?}");
        assert_eq!((t.losses, t.judged), (1, 1), "{t:?}");
    }

    #[test]
    fn a_lost_majority_ack_is_flagged() {
        let mut h = history();
        // "a" gone: the new master did not have it.
        set_log(&mut h, &["c"]);
        assert!(flagged(&h, "lost in a failover"));
        // "a" under another key.
        set_log(&mut h, &["c", "a"]);
        assert!(flagged(&h, "lost in a failover"));
    }

    #[test]
    fn a_key_with_two_messages_on_two_nodes_is_flagged() {
        let mut h = history();
        h.final_logs[2] = Some(vec![(1, "a".into()), (2, "b".into())]);
        assert!(flagged(&h, "differs"));
    }

    #[test]
    fn a_cut_w1_ack_retried_under_another_key_passes_but_never_twice() {
        let mut h = history();
        h.messages[1].attempts.push(attempt(
            4.0,
            4.1,
            Answer::Unanswered { error: "x".into() },
            1,
        ));
        set_log(&mut h, &["a", "c", "b"]);
        assert_eq!(clean(&h).cut_acks, 1);
        h.final_logs = vec![
            Some(vec![
                (1, "a".into()),
                (2, "c".into()),
                (3, "b".into()),
                (4, "b".into())
            ]);
            3
        ];
        assert!(flagged(&h, "in the log 2 times"));
    }

    #[test]
    fn a_refused_message_in_the_log_is_flagged() {
        let mut h = history();
        h.messages.push(msg(
            "d",
            1,
            vec![
                attempt(5.0, 5.1, Answer::Misdirected, 2),
                attempt(5.2, 5.3, Answer::TakingOffice, 1),
            ],
        ));
        set_log(&mut h, &["a", "c", "d"]);
        assert!(flagged(&h, "every attempt was refused"));
        // With an outcome-unknown answer it may be there.
        h.messages[3]
            .attempts
            .push(attempt(5.4, 5.5, Answer::Deposed { key: 3 }, 1));
        clean(&h);
    }

    #[test]
    fn appends_must_resume_within_the_election_timeout_plus_2_s() {
        let mut h = history();
        // "c" acknowledged at 5.5 only: 3.5 s after the loss.
        h.messages[2].attempts[2] = attempt(5.4, 5.5, acked(2, 2), 1);
        assert!(flagged(&h, "F8"));
        // Unless a majority was not connected: node 2 paused meanwhile.
        h.faults.down.push(Span {
            node: 2,
            start: 2.5,
            end: 4.0,
        });
        let t = clean(&h);
        assert_eq!(t.judged, 0);
        // Or a /delay may have held up the new master's first batch.
        h.faults.down.pop();
        h.failover.as_mut().unwrap().delays.push((2, 0.5, 2.0));
        clean(&h);
    }

    #[test]
    fn a_stalled_client_judges_no_resumption() {
        let mut h = history();
        h.messages[2].attempts[2] = attempt(5.4, 5.5, acked(2, 2), 1);
        // The resumption writer tried every 0.3 s: F8 stands.
        let tries = |from: f64, to: f64| {
            let mut v = Vec::new();
            let mut t = from;
            while t < to {
                v.push(attempt(t, t + 0.2, Answer::Misdirected, 1));
                t += 0.3;
            }
            v
        };
        let mut r = msg("r", 1, tries(1.5, 6.0));
        r.client = RESUMER;
        h.messages.push(r);
        assert!(flagged(&h, "F8"));
        // It sent nothing from 2.4 to 4.5 s: the test process stalled, nothing is judged.
        let mut r = msg("r", 1, [tries(1.5, 2.4), tries(4.5, 6.0)].concat());
        r.client = RESUMER;
        *h.messages.last_mut().unwrap() = r;
        assert_eq!(clean(&h).judged, 0);
    }

    #[test]
    fn members_held_after_an_unclean_restart_excuse_a_slow_resumption_only_while_held() {
        let mut h = history();
        h.messages[2].attempts[2] = attempt(5.4, 5.5, acked(2, 2), 1);
        assert!(flagged(&h, "F8"));
        // Nodes 1 and 2 were killed and back at 0.5 s, and hold for 5 s after (fsync not
        // `always`): at the loss (2.0 s) no member can stand, the election waits.
        for n in [1, 2] {
            h.faults.down.push(Span {
                node: n,
                start: 0.2,
                end: 0.5,
            });
        }
        h.failover.as_mut().unwrap().hold_after_restart_s = 5.0;
        assert_eq!(clean(&h).judged, 0);
        // A pause is not a restart: nothing is held, F8 stands.
        h.failover.as_mut().unwrap().pauses = vec![
            Span {
                node: 1,
                start: 0.2,
                end: 0.5,
            },
            Span {
                node: 2,
                start: 0.2,
                end: 0.5,
            },
        ];
        assert!(flagged(&h, "F8"));
        // A hold that ended before the loss excuses nothing either.
        h.failover.as_mut().unwrap().pauses.clear();
        h.failover.as_mut().unwrap().hold_after_restart_s = 1.0;
        assert!(flagged(&h, "F8"));
        // One held member of the two up is enough: a held node does not vote either, and the
        // other alone is no majority.
        h.failover.as_mut().unwrap().hold_after_restart_s = 5.0;
        h.faults.down.retain(|d| d.node != 2);
        assert_eq!(clean(&h).judged, 0);
    }

    #[test]
    fn a_member_down_throughout_does_not_excuse_a_slow_resumption_while_a_majority_is_up() {
        let mut h = history();
        h.secondaries = 4;
        h.quorum = 3;
        set_log(&mut h, &["a", "c"]);
        h.messages[2].attempts[2] = attempt(5.4, 5.5, acked(2, 2), 1);
        // Node 4 down from before the loss to after the window: 3 of 5 are still connected.
        h.faults.down.push(Span {
            node: 4,
            start: 0.5,
            end: 9.0,
        });
        assert!(flagged(&h, "F8"));
        // Node 3 down too: no majority, nothing to judge.
        h.faults.down.push(Span {
            node: 3,
            start: 0.5,
            end: 9.0,
        });
        assert_eq!(clean(&h).judged, 0);
    }

    #[test]
    fn a_deposed_master_taking_an_append_after_a_majority_ack_is_flagged() {
        let mut h = history();
        // Old master 0 resumed (it was paused, not killed) and acknowledged "d" w=1 under key
        // 2 at 4.1, after "c" (w=2) was acknowledged under key 2 at 3.5.
        h.messages
            .push(msg("d", 1, vec![attempt(4.0, 4.1, acked(2, 1), 0)]));
        assert!(flagged(&h, "not above key 2"));
    }

    #[test]
    fn a_majority_ack_without_a_majority_holding_it_is_flagged() {
        let mut h = history();
        let probe = |node, sent| Probe {
            node,
            sent,
            recv: sent + 0.01,
            contiguous_key: 1,
            held_aside: 0,
        };
        // Node 2 lacks key 2 later: node 1 (master) and node 0 (dead) can't both have it…
        h.probes = vec![probe(2, 4.0)];
        clean(&h);
        h.probes.push(probe(0, 30.0));
        assert!(flagged(&h, "w=2"));
    }

    #[test]
    fn read_only_needs_a_lost_majority_from_the_answering_node() {
        let mut h = history();
        h.messages
            .push(msg("e", 1, vec![attempt(9.0, 9.1, Answer::ReadOnly, 1)]));
        // Node 1 sees node 0 down: 2 of 3 is a majority.
        assert!(flagged(&h, "503 read-only"));
        // Node 1 itself paused until 8.0: its lease stood still.
        h.failover.as_mut().unwrap().pauses.push(Span {
            node: 1,
            start: 7.0,
            end: 8.0,
        });
        clean(&h);
    }

    #[test]
    fn reads_may_show_cut_entries_but_not_unsent_ones() {
        let mut h = history();
        h.reads = vec![Read {
            node: 0,
            from: 2,
            sent: 1.95,
            recv: 1.96,
            entries: vec![(2, "b".into())],
        }];
        assert_eq!(clean(&h).reads_of_cut, 1);
        h.reads[0].entries = vec![(2, "zzz".into())];
        assert!(flagged(&h, "which no client sent"));
    }

    /// The loss of node 0 at 2.0 s is a power loss; right after the kill nodes 1 and 2
    /// showed `others[1]`, `others[2]`.
    fn power_loss_of_the_master(h: &mut History, others: [&[&str]; 3]) {
        let logs = others
            .iter()
            .enumerate()
            .map(|(n, l)| (n != 0).then(|| l.iter().map(|v| v.to_string()).collect()))
            .collect();
        h.failover.as_mut().unwrap().power_losses = vec![PowerLoss {
            node: 0,
            at: 2.0,
            logs,
        }];
    }

    #[test]
    fn a_majority_ack_another_node_held_survives_a_power_loss() {
        let mut h = history();
        // Node 1 held "a" when node 0 lost power: node 1 (elected) must keep it.
        power_loss_of_the_master(&mut h, [&[], &["a"], &[]]);
        clean(&h);
        set_log(&mut h, &["c"]);
        h.messages[2].attempts[2] = attempt(3.4, 3.5, acked(1, 2), 1);
        assert!(flagged(&h, "lost in a failover"));
    }

    #[test]
    fn a_majority_ack_only_the_node_that_lost_power_held_may_be_cut() {
        let mut h = history();
        // Nobody but node 0 showed "a" right after its kill: its w=2 acknowledgement counts
        // as one with a smaller w — it may be cut, and "c" may take its key.
        power_loss_of_the_master(&mut h, [&[], &[], &[]]);
        set_log(&mut h, &["c"]);
        h.messages[2].attempts[2] = attempt(3.4, 3.5, acked(1, 2), 1);
        let t = clean(&h);
        assert_eq!((t.power_cut_acks, t.power_losses), (1, 1), "{t:?}");
        // Another value under key 1 does not count as holding "a".
        power_loss_of_the_master(&mut h, [&[], &["zzz"], &[]]);
        clean(&h);
        // An acknowledgement another node gave is never excused: it held the message.
        h.messages[0].attempts[0].node = Some(1);
        assert!(flagged(&h, "lost in a failover"));
        h.messages[0].attempts[0].node = Some(0);
        // An acknowledgement sent after the power loss is judged as any.
        h.messages[0].attempts[0] = attempt(2.5, 2.6, acked(1, 2), 1);
        h.faults.down[0].start = 2.0;
        set_log(&mut h, &["c"]);
        assert!(flagged(&h, "lost in a failover"));
    }

    #[test]
    fn what_a_node_that_lost_power_lacks_later_proves_nothing_about_an_earlier_ack() {
        let mut h = history();
        let probe = |node, sent| Probe {
            node,
            sent,
            recv: sent + 0.01,
            contiguous_key: 0,
            held_aside: 0,
        };
        // "a" (w=2, key 1, answered by node 0 at 1.1): nodes 1 and 2 both show no key later.
        h.probes = vec![probe(1, 5.0), probe(2, 5.0)];
        assert!(flagged(&h, "w=2"));
        // Node 1 lost power at 3.0 (and "a" was on node 0 then): it may have held "a" at 1.1.
        h.failover.as_mut().unwrap().power_losses = vec![PowerLoss {
            node: 1,
            at: 3.0,
            logs: vec![Some(vec!["a".into()]), None, Some(vec![])],
        }];
        clean(&h);
        // A power loss before the message was sent excuses nothing.
        h.failover.as_mut().unwrap().power_losses[0].at = 0.5;
        assert!(flagged(&h, "w=2"));
    }

    #[test]
    fn a_partitioned_node_sees_every_other_node_down_and_is_down_for_them() {
        let mut h = history();
        h.messages
            .push(msg("e", 1, vec![attempt(9.0, 9.1, Answer::ReadOnly, 1)]));
        assert!(flagged(&h, "503 read-only"));
        // Node 1 was cut off the network until 8.0: a majority was not there for it.
        let cut = Span {
            node: 1,
            start: 7.0,
            end: 8.0,
        };
        h.failover.as_mut().unwrap().partitions.push(cut);
        h.faults.down.push(cut);
        clean(&h);
        // A partition is not a restart: it holds nobody back from an election (F8).
        let mut h = history();
        h.messages[2].attempts[2] = attempt(5.4, 5.5, acked(2, 2), 1);
        h.failover.as_mut().unwrap().hold_after_restart_s = 5.0;
        for n in [1, 2] {
            let span = Span {
                node: n,
                start: 0.2,
                end: 0.5,
            };
            h.faults.down.push(span);
            h.failover.as_mut().unwrap().partitions.push(span);
        }
        assert!(flagged(&h, "F8"));
    }
}
