//! Runs one schedule: the cluster, the nemesis, writers, readers and probers; healing; the
//! final logs; the check. Everything the schedule does is drawn from its seed (one
//! independent stream per part, see `Rng::fork`); only the timing is the machine's.
//!
//! The runner is generic over the cluster backend (`cluster.rs`): processes on loopback
//! ([`run_schedule`]) or compose services (`docker.rs`). A backend that can partition gets
//! one more kind of fault; the other draws are the same, so a process schedule does not
//! change with the docker backend's existence.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::check;
use crate::cluster::Cluster;
use crate::helpers::TestCluster;
use crate::history::{Answer, Attempt, Faults, History, Message, Probe, Read, Span};
use crate::rng::Rng;

const WRITERS: usize = 4;
const READERS: usize = 2;
/// How long after the schedule ends an id'd message is still retried (healing included).
const DRAIN_SECS: f64 = 45.0;

/// Seconds since the schedule started.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client")
}

/// The outcome of one schedule.
pub struct Report {
    pub seed: u64,
    pub params: String,
    /// The command that replays this schedule.
    pub replay: String,
    pub messages: usize,
    pub acked: usize,
    pub attempts: usize,
    pub reads: usize,
    pub probes: usize,
    pub faults: u64,
    /// Faults injected, by kind ("pause", "kill", …).
    pub fault_kinds: BTreeMap<String, u64>,
    /// Attempts answered 503 read-only / recovering, 504, or not at all.
    pub read_only: usize,
    pub recovering: usize,
    pub timed_out: usize,
    pub no_answer: usize,
    pub log_len: usize,
    pub elapsed: f64,
    pub fault_log: Vec<(f64, String)>,
    pub violations: Vec<String>,
}

/// `{"kill": 3, "pause": 5}` as `kill 3, pause 5`.
fn kinds_text(kinds: &BTreeMap<String, u64>) -> String {
    kinds
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Report {
    /// A schedule whose cluster did not start: `error` is its one violation.
    pub fn failed_to_start(setup: Setup, error: String) -> Report {
        Report {
            seed: setup.seed,
            params: setup.params,
            replay: setup.replay,
            messages: 0,
            acked: 0,
            attempts: 0,
            reads: 0,
            probes: 0,
            faults: 0,
            fault_kinds: BTreeMap::new(),
            read_only: 0,
            recovering: 0,
            timed_out: 0,
            no_answer: 0,
            log_len: 0,
            elapsed: setup.started.elapsed().as_secs_f64(),
            fault_log: Vec::new(),
            violations: vec![format!("the cluster did not start: {error}")],
        }
    }

    pub fn replay_command(&self) -> String {
        self.replay.clone()
    }

    pub fn summary_line(&self) -> String {
        format!(
            "nemesis seed {} ({}): {} messages, {} acknowledged, {} attempts (503 read-only {}, recovering {}, 504 {}, no answer {}), {} reads, {} probes, {} faults ({}), log of {} keys, {:.1} s: {} violation(s)",
            self.seed,
            self.params,
            self.messages,
            self.acked,
            self.attempts,
            self.read_only,
            self.recovering,
            self.timed_out,
            self.no_answer,
            self.reads,
            self.probes,
            self.faults,
            kinds_text(&self.fault_kinds),
            self.log_len,
            self.elapsed,
            self.violations.len()
        )
    }

    pub fn failure_text(&self) -> String {
        let mut s = format!(
            "nemesis seed {} ({}) found {} violation(s); replay with:\n  {}\n",
            self.seed,
            self.params,
            self.violations.len(),
            self.replay_command()
        );
        for v in self.violations.iter().take(40) {
            s.push_str(&format!("  - {v}\n"));
        }
        if self.violations.len() > 40 {
            s.push_str(&format!("  … and {} more\n", self.violations.len() - 40));
        }
        s.push_str("fault schedule:\n");
        for (t, what) in &self.fault_log {
            s.push_str(&format!("  {t:7.3}s {what}\n"));
        }
        s
    }

    #[track_caller]
    pub fn assert_clean(&self) {
        assert!(self.violations.is_empty(), "{}", self.failure_text());
    }
}

/// Sums over a soak.
#[derive(Default)]
pub struct Totals {
    schedules: usize,
    messages: usize,
    acked: usize,
    faults: u64,
    fault_kinds: BTreeMap<String, u64>,
    reads: usize,
    violations: usize,
    failed: Vec<u64>,
}

impl Totals {
    pub fn add(&mut self, r: &Report) {
        self.schedules += 1;
        self.messages += r.messages;
        self.acked += r.acked;
        self.faults += r.faults;
        for (k, n) in &r.fault_kinds {
            *self.fault_kinds.entry(k.clone()).or_default() += n;
        }
        self.reads += r.reads;
        self.violations += r.violations.len();
        if !r.violations.is_empty() {
            self.failed.push(r.seed);
        }
    }

    pub fn summary_line(&self) -> String {
        format!(
            "nemesis soak: {} schedules, {} messages, {} appends acknowledged, {} reads, {} faults injected ({}), {} violations (seeds: {:?})",
            self.schedules,
            self.messages,
            self.acked,
            self.reads,
            self.faults,
            kinds_text(&self.fault_kinds),
            self.violations,
            self.failed
        )
    }
}

/// Runs schedule `seed` for `dur` (faults and load) on processes, heals, checks.
pub async fn run_schedule(seed: u64, dur: Duration) -> Report {
    let started = Instant::now();
    let mut rng = Rng::fork(seed, 0);
    let secondaries = *rng.pick(&[2usize, 2, 3]);
    let fsync = *rng.pick(&["always", "interval", "never"]);
    let mut cluster = TestCluster::builder(secondaries)
        .with(toml::toml! {
            [storage]
            engine = "disk"
            fsync = fsync
        })
        .start()
        .await;
    let setup = Setup::new(
        seed,
        dur,
        started,
        secondaries,
        format!("{secondaries} secondaries, fsync {fsync}"),
        format!(
            "NEMESIS_SEED={seed} NEMESIS_SECS={} cargo test --test nemesis nemesis_soak -- --ignored --nocapture",
            dur.as_secs_f64()
        ),
    );
    run_on(&mut cluster, rng, setup).await
}

/// A started cluster's schedule: what the runner needs besides the cluster.
pub struct Setup {
    pub seed: u64,
    pub dur: Duration,
    /// When the schedule began (cluster start included), for the report.
    pub started: Instant,
    pub secondaries: usize,
    /// The nodes' heartbeat settings (the checker's timing rules depend on them).
    pub heartbeat_interval_s: f64,
    pub heartbeat_timeout_s: f64,
    /// The cluster's shape, for the report.
    pub params: String,
    pub replay: String,
}

impl Setup {
    /// A schedule's setup, with the heartbeat timing every test cluster runs with
    /// (`helpers::base_settings`).
    pub fn new(
        seed: u64,
        dur: Duration,
        started: Instant,
        secondaries: usize,
        params: String,
        replay: String,
    ) -> Self {
        let settings = crate::helpers::base_settings();
        let hb = &settings["heartbeat"];
        Setup {
            seed,
            dur,
            started,
            secondaries,
            heartbeat_interval_s: hb["interval_ms"].as_integer().unwrap_or(200) as f64 / 1000.0,
            heartbeat_timeout_s: hb["timeout_ms"].as_integer().unwrap_or(500) as f64 / 1000.0,
            params,
            replay,
        }
    }
}

/// Runs the schedule on `cluster` (started, every secondary healthy) with the nemesis
/// drawing from `rng`; heals, collects the final logs, checks.
pub async fn run_on<C: Cluster>(cluster: &mut C, mut rng: Rng, setup: Setup) -> Report {
    let Setup {
        seed,
        dur,
        started,
        secondaries,
        heartbeat_interval_s: interval_s,
        heartbeat_timeout_s: timeout_s,
        params,
        replay,
    } = setup;
    let all = secondaries + 1;

    let clock = Clock(Instant::now());
    let urls: Vec<String> = (0..all).map(|i| cluster.url(i)).collect();
    let end = dur.as_secs_f64();
    let stop_writers = Arc::new(AtomicBool::new(false));
    let stop_watchers = Arc::new(AtomicBool::new(false));

    let writers: Vec<_> = (0..WRITERS)
        .map(|c| {
            tokio::spawn(writer(
                c,
                seed,
                all,
                urls[0].clone(),
                clock,
                stop_writers.clone(),
                end + DRAIN_SECS,
            ))
        })
        .collect();
    let readers: Vec<_> = (0..READERS)
        .map(|r| tokio::spawn(reader(r, seed, urls.clone(), clock, stop_watchers.clone())))
        .collect();
    let probers: Vec<_> = (1..all)
        .map(|i| tokio::spawn(prober(i, urls[i].clone(), clock, stop_watchers.clone())))
        .collect();

    let mut faults = Faults::default();
    let mut run_errors = Vec::new();
    let mut nem = Nemesis::new(all, clock);
    nem.run(cluster, &mut rng, end, &mut faults, &mut run_errors)
        .await;
    nem.heal(cluster, &mut faults, &mut run_errors).await;
    stop_writers.store(true, Ordering::Release);

    let mut messages = Vec::new();
    for w in writers {
        match tokio::time::timeout(Duration::from_secs_f64(DRAIN_SECS + 30.0), w).await {
            Ok(Ok(ms)) => messages.extend(ms),
            Ok(Err(e)) => run_errors.push(format!("a writer task failed: {e}")),
            Err(_) => run_errors.push("a writer did not finish its last message".into()),
        }
    }
    faults
        .log
        .push((clock.now(), "every writer has its last answer".into()));
    let final_logs = converge(&urls, &mut run_errors).await;
    faults
        .log
        .push((clock.now(), "every node shows the same log".into()));
    stop_watchers.store(true, Ordering::Release);
    let mut reads = Vec::new();
    for r in readers {
        if let Ok(Ok(rs)) = tokio::time::timeout(Duration::from_secs(30), r).await {
            reads.extend(rs);
        }
    }
    let mut probes = Vec::new();
    for p in probers {
        if let Ok(Ok(ps)) = tokio::time::timeout(Duration::from_secs(30), p).await {
            probes.extend(ps);
        }
    }

    let history = History {
        secondaries,
        quorum: all / 2 + 1,
        heartbeat_interval_s: interval_s,
        heartbeat_timeout_s: timeout_s,
        messages,
        reads,
        probes,
        faults,
        final_logs,
        run_errors,
    };
    let violations = check::check(&history);
    let acked = history
        .messages
        .iter()
        .filter(|m| {
            m.attempts
                .iter()
                .any(|a| matches!(a.answer, Answer::Acked { .. }))
        })
        .count();
    let log_len = history
        .final_logs
        .iter()
        .flatten()
        .map(Vec::len)
        .max()
        .unwrap_or(0);
    let count = |f: fn(&Answer) -> bool| {
        history
            .messages
            .iter()
            .flat_map(|m| &m.attempts)
            .filter(|a| f(&a.answer))
            .count()
    };
    let report = Report {
        read_only: count(|a| matches!(a, Answer::ReadOnly)),
        recovering: count(|a| matches!(a, Answer::Recovering)),
        timed_out: count(|a| matches!(a, Answer::TimedOut { .. })),
        no_answer: count(|a| matches!(a, Answer::Unanswered { .. })),
        seed,
        params,
        replay,
        messages: history.messages.len(),
        acked,
        attempts: history.messages.iter().map(|m| m.attempts.len()).sum(),
        reads: history.reads.len(),
        probes: history.probes.len(),
        faults: history.faults.injected,
        fault_kinds: history.faults.kinds.clone(),
        log_len,
        elapsed: started.elapsed().as_secs_f64(),
        fault_log: history.faults.log.clone(),
        violations,
    };
    if std::env::var_os("NEMESIS_VERBOSE").is_some() {
        for (t, what) in &report.fault_log {
            eprintln!("  {t:7.3}s {what}");
        }
    }
    if !report.violations.is_empty() || std::env::var_os("NEMESIS_KEEP").is_some() {
        // Keep the nodes' output for the diagnosis (NEMESIS_KEEP: for every schedule).
        let keep = std::env::temp_dir().join(match cluster.kind() {
            "processes" => format!("replog-nemesis-{seed}"),
            kind => format!("replog-nemesis-{kind}-{seed}"),
        });
        let _ = std::fs::remove_dir_all(&keep);
        if std::fs::create_dir_all(&keep).is_ok() {
            cluster.keep_output(&keep).await;
            let _ = std::fs::write(keep.join("history.txt"), format!("{history:#?}"));
            eprintln!(
                "nemesis seed {seed}: node output and history kept in {}",
                keep.display()
            );
        }
    }
    report
}

// ---------------------------------------------------------------------------------------------
// Writers

/// Appends messages until `stop`; each message is sent until it gets a definite answer. An
/// id'd message is retried under its id after no answer, until `hard_end`.
async fn writer(
    c: usize,
    seed: u64,
    all: usize,
    master: String,
    clock: Clock,
    stop: Arc<AtomicBool>,
    hard_end: f64,
) -> Vec<Message> {
    let client = http();
    // Choices for the messages; a separate stream for pauses, whose count depends on timing.
    let mut rng = Rng::fork(seed, 100 + c as u64);
    let mut jitter = Rng::fork(seed, 200 + c as u64);
    let mut out = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        let filler = "x".repeat(rng.range(0, 48) as usize);
        let value = format!("s{seed}-c{c}-m{n}-{filler}");
        let id = rng.chance(0.7).then(|| format!("s{seed}-c{c}-id{n}"));
        let pick = rng.range(0, all as u64 + 2);
        let (w_sent, w) = if pick < all as u64 {
            (json!(pick + 1), pick + 1)
        } else if pick == all as u64 {
            (json!("majority"), all as u64 / 2 + 1)
        } else {
            (json!("all"), all as u64)
        };
        let timeout_ms = rng.chance(0.5).then(|| rng.range(50, 3000));
        let mut body = json!({"value": value, "write_concern": w_sent});
        if let Some(id) = &id {
            body["id"] = json!(id);
        }
        if let Some(t) = timeout_ms {
            body["timeout_ms"] = json!(t);
        }
        let wait = Duration::from_millis(timeout_ms.map_or(8_000, |t| t + 5_000));
        let mut msg = Message {
            client: c,
            value,
            id,
            w_sent,
            w,
            timeout_ms,
            attempts: Vec::new(),
        };
        loop {
            let sent = clock.now();
            let answer = post(&client, &master, &body, wait).await;
            let recv = clock.now();
            let again = match &answer {
                Answer::Acked { .. } | Answer::TimedOut { .. } | Answer::Unexpected { .. } => false,
                // Nothing was appended: the same message may be sent again, id or not.
                Answer::ReadOnly | Answer::Recovering => msg.attempts.len() < 60 && recv < hard_end,
                // Unknown outcome: only an id makes a second attempt safe.
                Answer::Unanswered { .. } => msg.id.is_some() && recv < hard_end,
            };
            msg.attempts.push(Attempt { sent, recv, answer });
            if !again {
                break;
            }
            tokio::time::sleep(Duration::from_millis(jitter.range(50, 300))).await;
        }
        out.push(msg);
        tokio::time::sleep(Duration::from_millis(jitter.range(0, 25))).await;
    }
    out
}

async fn post(client: &reqwest::Client, master: &str, body: &Value, wait: Duration) -> Answer {
    let resp = client
        .post(format!("{master}/message"))
        .json(body)
        .timeout(wait)
        .send()
        .await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            return Answer::Unanswered {
                error: e.to_string(),
            };
        }
    };
    let status = resp.status().as_u16();
    let text = match resp.text().await {
        Ok(t) => t,
        Err(e) => {
            return Answer::Unanswered {
                error: format!("{status}, body lost: {e}"),
            };
        }
    };
    let j: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let unexpected = || Answer::Unexpected {
        status,
        body: text.clone(),
    };
    match status {
        201 | 200 => {
            let dup = j["duplicate"] == json!(true);
            if (status == 200) != dup {
                return unexpected();
            }
            match (
                j["key"].as_u64(),
                j["write_concern"].as_u64(),
                j["acks"].as_u64(),
            ) {
                (Some(key), Some(w), Some(acks)) => Answer::Acked {
                    status,
                    key,
                    w,
                    acks,
                },
                _ => unexpected(),
            }
        }
        504 => match j["key"].as_u64() {
            Some(key) => Answer::TimedOut { key },
            None => unexpected(),
        },
        503 => match j["mode"].as_str() {
            Some("read-only") => Answer::ReadOnly,
            Some("recovering") => Answer::Recovering,
            _ => unexpected(),
        },
        _ => unexpected(),
    }
}

// ---------------------------------------------------------------------------------------------
// Readers and probers

/// Long-polls `GET /messages?from=K&wait_ms=…` on random nodes, following each node's log.
async fn reader(
    r: usize,
    seed: u64,
    urls: Vec<String>,
    clock: Clock,
    stop: Arc<AtomicBool>,
) -> Vec<Read> {
    let client = http();
    let mut rng = Rng::fork(seed, 300 + r as u64);
    let mut cursor = vec![1u64; urls.len()];
    let mut out = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let node = rng.range(0, urls.len() as u64) as usize;
        if rng.chance(0.1) {
            cursor[node] = rng.range(1, cursor[node] + 1);
        }
        let from = cursor[node];
        let wait_ms = rng.range(100, 1500);
        let sent = clock.now();
        let resp = client
            .get(format!(
                "{}/messages?from={from}&limit=200&wait_ms={wait_ms}",
                urls[node]
            ))
            .timeout(Duration::from_millis(wait_ms + 3_000))
            .send()
            .await;
        let body = match resp {
            Ok(resp) if resp.status() == 200 => resp.text().await.ok(),
            _ => None,
        };
        let recv = clock.now();
        let Some(body) = body else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let entries = parse_messages(&body);
        if let Some((k, _)) = entries.as_ref().and_then(|e| e.last()) {
            cursor[node] = k + 1;
        }
        out.push(Read {
            node,
            from,
            sent,
            recv,
            entries: entries.unwrap_or_else(|| vec![(0, format!("unparsable answer: {body}"))]),
        });
    }
    out
}

/// A `GET /messages` body as (key, value) pairs; `None` if it is not that shape.
fn parse_messages(body: &str) -> Option<Vec<(u64, String)>> {
    let v: Value = serde_json::from_str(body).ok()?;
    v.as_array()?
        .iter()
        .map(|m| Some((m["key"].as_u64()?, m["value"].as_str()?.to_string())))
        .collect()
}

/// Samples secondary `node`'s `/health` every ~20 ms.
async fn prober(node: usize, url: String, clock: Clock, stop: Arc<AtomicBool>) -> Vec<Probe> {
    let client = http();
    let mut out = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let sent = clock.now();
        let r = client
            .get(format!("{url}/health"))
            .timeout(Duration::from_millis(400))
            .send()
            .await;
        let j = match r {
            Ok(r) if r.status() == 200 => r.json::<Value>().await.ok(),
            _ => None,
        };
        let recv = clock.now();
        if let Some(j) = j
            && let (Some(c), Some(h)) = (j["contiguous_key"].as_u64(), j["held_aside"].as_u64())
        {
            out.push(Probe {
                node,
                sent,
                recv,
                contiguous_key: c,
                held_aside: h,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
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
    /// Off the cluster network (docker backend only); running.
    Partitioned,
}

struct NodeState {
    proc: Proc,
    /// When the current pause, kill or partition began.
    since: f64,
    /// An error-rate burst is on.
    errors: bool,
}

struct Nemesis {
    nodes: Vec<NodeState>,
    clock: Clock,
    client: reqwest::Client,
}

impl Nemesis {
    fn new(all: usize, clock: Clock) -> Self {
        Nemesis {
            nodes: (0..all)
                .map(|_| NodeState {
                    proc: Proc::Up,
                    since: 0.0,
                    errors: false,
                })
                .collect(),
            clock,
            client: http(),
        }
    }

    fn name(i: usize) -> String {
        if i == 0 {
            "master".into()
        } else {
            format!("secondary{i}")
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

    /// The fault schedule: until `end`, every 0.2–1.5 s, heal one fault or inject one.
    async fn run<C: Cluster>(
        &mut self,
        c: &mut C,
        rng: &mut Rng,
        end: f64,
        faults: &mut Faults,
        errors: &mut Vec<String>,
    ) {
        let all = self.nodes.len();
        // Pause, kill, wipe, delay, error rate; then partition where the backend can. The
        // process backend's draws are the same as before partitions existed.
        let mut kinds = vec![30u64, 18, 8, 16, 12];
        if c.can_partition() {
            kinds.push(16);
        }
        loop {
            let pause = rng.range(200, 1500) as f64 / 1000.0;
            let left = end - self.clock.now();
            if left <= pause {
                tokio::time::sleep(Duration::from_secs_f64(left.max(0.0))).await;
                return;
            }
            tokio::time::sleep(Duration::from_secs_f64(pause)).await;

            let down: Vec<usize> = (0..all)
                .filter(|&i| self.nodes[i].proc != Proc::Up)
                .collect();
            let erring: Vec<usize> = (1..all).filter(|&i| self.nodes[i].errors).collect();
            if !down.is_empty() && rng.chance(0.4) {
                let i = *rng.pick(&down);
                self.heal_node(c, i, faults, errors).await;
                continue;
            }
            if !erring.is_empty() && rng.chance(0.2) {
                let i = *rng.pick(&erring);
                self.set_error_rate(c, i, 0.0, faults).await;
                continue;
            }
            // Master 1, each secondary 2 for pause, kill and partition.
            let mut weights = vec![1u64];
            weights.extend(std::iter::repeat_n(2, all - 1));
            let any = rng.weighted(&weights);
            let secondary = rng.range(1, all as u64) as usize;
            match rng.weighted(&kinds) {
                0 => {
                    if self.nodes[any].proc == Proc::Up {
                        self.pause(c, any, faults, errors).await;
                    }
                }
                1 => {
                    if self.nodes[any].proc == Proc::Up {
                        self.kill(c, any, faults, errors).await;
                    }
                }
                2 => {
                    if self.nodes[secondary].proc == Proc::Up {
                        self.wipe(c, secondary, faults, errors).await;
                    }
                }
                3 => {
                    let secs = rng.range(100, 4000) as f64 / 1000.0;
                    if self.nodes[secondary].proc == Proc::Up {
                        self.delay(c, secondary, secs, faults).await;
                    }
                }
                4 => {
                    let p = rng.range(10, 90) as f64 / 100.0;
                    if self.nodes[secondary].proc == Proc::Up && !self.nodes[secondary].errors {
                        self.set_error_rate(c, secondary, p, faults).await;
                    }
                }
                _ => {
                    if self.nodes[any].proc == Proc::Up {
                        self.partition(c, any, faults, errors).await;
                    }
                }
            }
        }
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
        self.went_down(
            i,
            Proc::Paused,
            t,
            "pause",
            format!("pause {}", Self::name(i)),
            faults,
        );
        self.failed(r, faults, errors);
    }

    /// Records that node `i` went into state `proc` at `t` by a fault of `kind`.
    fn went_down(
        &mut self,
        i: usize,
        proc: Proc,
        t: f64,
        kind: &str,
        note: String,
        faults: &mut Faults,
    ) {
        self.nodes[i].proc = proc;
        self.nodes[i].since = t;
        Self::count(faults, kind);
        self.note(faults, note);
    }

    async fn kill<C: Cluster>(
        &mut self,
        c: &mut C,
        i: usize,
        faults: &mut Faults,
        errors: &mut Vec<String>,
    ) {
        let t = self.clock.now();
        let r = c.kill(i).await;
        // A restarted process takes its error rate from its config (0).
        self.nodes[i].errors = false;
        self.went_down(
            i,
            Proc::Killed,
            t,
            "kill",
            format!("kill -9 {}", Self::name(i)),
            faults,
        );
        self.failed(r, faults, errors);
    }

    async fn wipe<C: Cluster>(
        &mut self,
        c: &mut C,
        i: usize,
        faults: &mut Faults,
        errors: &mut Vec<String>,
    ) {
        let t = self.clock.now();
        self.nodes[i].errors = false;
        let r = c.wipe(i).await;
        Self::count(faults, "wipe");
        self.note(
            faults,
            format!("kill -9 {}, wipe its data, start it", Self::name(i)),
        );
        self.failed(r, faults, errors);
        faults.wipes.push(Span {
            node: i,
            start: t,
            end: self.clock.now(),
        });
        self.nodes[i].proc = Proc::Killed;
        self.nodes[i].since = t;
        self.up(c, i, faults, errors).await;
    }

    async fn partition<C: Cluster>(
        &mut self,
        c: &mut C,
        i: usize,
        faults: &mut Faults,
        errors: &mut Vec<String>,
    ) {
        let t = self.clock.now();
        let r = c.partition(i).await;
        let note = format!("partition {} off", Self::name(i));
        self.went_down(i, Proc::Partitioned, t, "partition", note, faults);
        self.failed(r, faults, errors);
    }

    async fn delay<C: Cluster>(&mut self, c: &C, i: usize, secs: f64, faults: &mut Faults) {
        let r = self
            .client
            .post(format!("{}/delay", c.url(i)))
            .json(&json!({"value": secs}))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        let ok = r.is_ok_and(|r| r.status().is_success());
        if ok {
            Self::count(faults, "delay");
        }
        self.note(
            faults,
            format!(
                "POST /delay {secs:.3} s on {}{}",
                Self::name(i),
                if ok { "" } else { " (failed)" }
            ),
        );
    }

    async fn set_error_rate<C: Cluster>(&mut self, c: &C, i: usize, p: f64, faults: &mut Faults) {
        let r = self
            .client
            .post(format!("{}/fault", c.url(i)))
            .json(&json!({"error_rate": p}))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        let ok = r.is_ok_and(|r| r.status().is_success());
        if ok {
            self.nodes[i].errors = p > 0.0;
            if p > 0.0 {
                Self::count(faults, "error_rate");
            }
        }
        self.note(
            faults,
            format!(
                "POST /fault error_rate {p:.2} on {}{}",
                Self::name(i),
                if ok { "" } else { " (failed)" }
            ),
        );
    }

    /// Ends node `i`'s pause, kill or partition.
    async fn heal_node<C: Cluster>(
        &mut self,
        c: &mut C,
        i: usize,
        faults: &mut Faults,
        errors: &mut Vec<String>,
    ) {
        match self.nodes[i].proc {
            Proc::Up => {}
            Proc::Paused => {
                let r = c.resume(i).await;
                let end = self.clock.now();
                let span = Span {
                    node: i,
                    start: self.nodes[i].since,
                    end,
                };
                faults.down.push(span);
                if i == 0 {
                    faults.master_paused.push(span);
                }
                self.nodes[i].proc = Proc::Up;
                self.note(faults, format!("resume {}", Self::name(i)));
                self.failed(r, faults, errors);
            }
            Proc::Killed => {
                let r = c.start(i).await;
                self.note(faults, format!("restart {}", Self::name(i)));
                self.failed(r, faults, errors);
                self.up(c, i, faults, errors).await;
            }
            Proc::Partitioned => {
                let r = c.heal_partition(i).await;
                let span = Span {
                    node: i,
                    start: self.nodes[i].since,
                    end: self.clock.now(),
                };
                if i == 0 {
                    faults.master_partitioned.push(span);
                } else {
                    // Unreachable for the master, like a paused secondary.
                    faults.down.push(span);
                }
                self.nodes[i].proc = Proc::Up;
                self.note(faults, format!("reconnect {}", Self::name(i)));
                self.failed(r, faults, errors);
            }
        }
    }

    /// Waits until restarted node `i` answers `/heartbeat`; closes its down span.
    async fn up<C: Cluster>(
        &mut self,
        c: &C,
        i: usize,
        faults: &mut Faults,
        errors: &mut Vec<String>,
    ) {
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
                    Self::name(i)
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let span = Span {
            node: i,
            start: self.nodes[i].since,
            end: self.clock.now(),
        };
        faults.down.push(span);
        if i == 0 {
            faults.master_restarts.push(span);
        }
        self.nodes[i].proc = Proc::Up;
        self.note(faults, format!("{} is up", Self::name(i)));
    }

    /// Every node resumed, restarted or reconnected, every error rate back to 0.
    async fn heal<C: Cluster>(&mut self, c: &mut C, faults: &mut Faults, errors: &mut Vec<String>) {
        self.note(faults, "heal".into());
        for i in 0..self.nodes.len() {
            self.heal_node(c, i, faults, errors).await;
        }
        for i in 1..self.nodes.len() {
            if self.nodes[i].errors {
                self.set_error_rate(c, i, 0.0, faults).await;
                if self.nodes[i].errors {
                    errors.push(format!("could not end the error rate of {}", Self::name(i)));
                }
            }
        }
    }
}

/// A node's `GET /messages`, `None` when it did not answer.
type NodeLog = Option<Vec<(u64, String)>>;

/// Waits (at most 60 s) until every node shows the same log twice in a row; returns each
/// node's last answer.
async fn converge(urls: &[String], errors: &mut Vec<String>) -> Vec<NodeLog> {
    let client = http();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut previous: Option<Vec<NodeLog>> = None;
    loop {
        let mut logs = Vec::new();
        for u in urls {
            let r = client
                .get(format!("{u}/messages"))
                .timeout(Duration::from_secs(20))
                .send()
                .await;
            let body = match r {
                Ok(r) if r.status() == 200 => r.text().await.ok(),
                _ => None,
            };
            logs.push(body.as_deref().and_then(parse_messages));
        }
        let same = logs.iter().all(|l| l.is_some() && *l == logs[0]);
        if same && previous.as_ref() == Some(&logs) {
            return logs;
        }
        if Instant::now() > deadline {
            let lens: Vec<Option<usize>> = logs.iter().map(|l| l.as_ref().map(Vec::len)).collect();
            errors.push(format!(
                "the nodes did not converge within 60 s of healing (log lengths {lens:?})"
            ));
            return logs;
        }
        previous = Some(logs);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
