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
use crate::history::{
    Answer, Attempt, Faults, History, MasterPowerLoss, Message, Probe, Read, Span,
};
use crate::rng::Rng;

pub const WRITERS: usize = 4;
pub const READERS: usize = 2;
/// How long after the schedule ends an id'd message is still retried (healing included).
pub const DRAIN_SECS: f64 = 45.0;

/// Seconds since the schedule started.
#[derive(Clone, Copy)]
pub struct Clock(pub Instant);

impl Clock {
    pub fn now(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

pub fn http() -> reqwest::Client {
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
    /// More for the summary line (a failover schedule's figures); empty otherwise.
    pub extra: String,
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
            extra: String::new(),
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
        ) + &self.extra
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
    let fsync = fsync_for(rng.pick::<&str>(&["always", "interval", "never"]));
    let mut cluster = TestCluster::builder(secondaries)
        .with(node_settings(fsync))
        .start()
        .await;
    let setup = Setup::new(
        seed,
        dur,
        started,
        secondaries,
        fsync,
        "",
        format!(
            "NEMESIS_SEED={seed} NEMESIS_SECS={} cargo test --test nemesis nemesis_soak -- --ignored --nocapture",
            dur.as_secs_f64()
        ),
    );
    run_on(&mut cluster, rng, setup).await
}

/// The `master.recovery_wait_ms` the nemesis gives the nodes (the process cluster through
/// [`node_settings`], the docker cluster through `e2e/docker-compose.nemesis.yml`): how long a
/// master restarted uncleanly (kill -9, power loss) under fsync `interval` /
/// `never` refuses appends at most while a secondary has not answered a heartbeat. 5 s is
/// many heartbeats (every 200 ms, 500 ms timeout) on a loaded machine, so a secondary that
/// is up is always heard from in time (the power-loss promise counts on it), while a master
/// killed next to a paused secondary does not refuse appends for the default 10 s.
pub const RECOVERY_WAIT_MS: u64 = 5_000;

/// The recovery wait the nodes run with, in seconds, as far as the checker must allow it
/// (rule 7): none under fsync `always` (nothing acknowledged can be lost there, so the master
/// waits only for one heartbeat round); otherwise [`RECOVERY_WAIT_MS`].
pub fn recovery_wait_s(fsync: &str) -> f64 {
    if fsync == "always" {
        0.0
    } else {
        RECOVERY_WAIT_MS as f64 / 1000.0
    }
}

/// Settings of every node of a process schedule (on top of `helpers::base_settings`): the one
/// place where they are chosen.
pub fn node_settings(fsync: &str) -> toml::Table {
    let wait = RECOVERY_WAIT_MS as i64;
    toml::toml! {
        [storage]
        engine = "disk"
        fsync = fsync

        [master]
        recovery_wait_ms = wait
    }
}

/// Whether schedule `seed` (with fsync `fsync`) has power losses: only under `never` (there
/// nothing in the active segment is sure to be on disk, so any cut of its tail is what a
/// power loss can do; under `interval` a random cut could take more than one can), and there
/// for about half of the seeds. Every power-loss draw comes from a stream of its own, so the
/// schedule's other draws keep their order (some kills become power losses, and now and
/// then the master loses power between two steps). Stream 402 is the first that leaves CI
/// seeds 2 and 4 (fsync never) as they were before power losses.
/// `NEMESIS_POWER_LOSS=1` / `=0` forces them on (for a `never` schedule) or off.
pub fn power_loss_for(seed: u64, fsync: &str) -> bool {
    let drawn = Rng::fork(seed, POWER_STREAM).chance(0.5);
    fsync == "never"
        && match std::env::var("NEMESIS_POWER_LOSS")
            .ok()
            .as_deref()
            .map(str::trim)
        {
            Some("1") => true,
            Some("0") => false,
            _ => drawn,
        }
}

/// The stream of the power-loss draws (see [`power_loss_for`]); its first draw decides
/// whether a schedule has power losses, the later ones which kills become one and how.
const POWER_STREAM: u64 = 402;

/// The power-loss stream of schedule `seed` after its first draw (which decided that the
/// schedule has power losses): what the nemesis draws its power losses from.
pub fn power_rng(seed: u64) -> Rng {
    let mut p = Rng::fork(seed, POWER_STREAM);
    p.next_u64();
    p
}

/// The fsync policy a schedule runs with: `drawn` (from its seed), unless `NEMESIS_FSYNC`
/// names one (`always`, `interval`, `never`; anything else panics: a mistyped policy must
/// not quietly run the drawn one). The other draws stay the seed's, so forcing `never`
/// gives any seed power losses (with `NEMESIS_POWER_LOSS=1`).
pub fn fsync_for(drawn: &'static str) -> &'static str {
    match std::env::var("NEMESIS_FSYNC")
        .ok()
        .as_deref()
        .map(str::trim)
    {
        None | Some("") => drawn,
        Some("always") => "always",
        Some("interval") => "interval",
        Some("never") => "never",
        Some(other) => panic!("NEMESIS_FSYNC={other:?} is not always, interval or never"),
    }
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
    /// See [`recovery_wait_s`].
    pub recovery_wait_s: f64,
    /// Some kills are power losses ([`power_loss_for`]).
    pub power_loss: bool,
    /// The cluster's shape, for the report.
    pub params: String,
    pub replay: String,
}

impl Setup {
    /// A schedule's setup, with the heartbeat timing every test cluster runs with
    /// (`helpers::base_settings`). `backend` prefixes the shape in the report; `replay` is
    /// the command that replays the schedule (`NEMESIS_POWER_LOSS` added when set).
    pub fn new(
        seed: u64,
        dur: Duration,
        started: Instant,
        secondaries: usize,
        fsync: &str,
        backend: &str,
        replay: String,
    ) -> Self {
        let settings = crate::helpers::base_settings();
        let hb = &settings["heartbeat"];
        let power_loss = power_loss_for(seed, fsync);
        let forced = std::env::var("NEMESIS_POWER_LOSS")
            .ok()
            .filter(|v| matches!(v.trim(), "0" | "1"));
        let forced_fsync = std::env::var("NEMESIS_FSYNC")
            .ok()
            .filter(|v| !v.trim().is_empty());
        let replay = match forced_fsync {
            Some(f) => format!("NEMESIS_FSYNC={} {replay}", f.trim()),
            None => replay,
        };
        Setup {
            seed,
            dur,
            started,
            secondaries,
            heartbeat_interval_s: hb["interval_ms"].as_integer().unwrap_or(200) as f64 / 1000.0,
            heartbeat_timeout_s: hb["timeout_ms"].as_integer().unwrap_or(500) as f64 / 1000.0,
            recovery_wait_s: recovery_wait_s(fsync),
            power_loss,
            params: format!(
                "{backend}{secondaries} secondaries, fsync {fsync}{}",
                if power_loss { ", power losses" } else { "" }
            ),
            replay: match forced {
                Some(v) => format!("NEMESIS_POWER_LOSS={} {replay}", v.trim()),
                None => replay,
            },
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
        recovery_wait_s,
        power_loss,
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
    let power = power_loss.then(|| power_rng(seed));
    let mut nem = Nemesis::new(all, clock, power, recovery_wait_s);
    nem.run(cluster, &mut rng, end, &mut faults, &mut run_errors)
        .await;
    nem.heal(cluster, &mut faults, &mut run_errors).await;
    let healed = clock.now();
    stop_writers.store(true, Ordering::Release);

    let mut messages = drain_writers(writers, &mut run_errors).await;
    faults
        .log
        .push((clock.now(), "every writer has its last answer".into()));

    // Rule 10: once the cluster has settled, appends must be answered.
    let slack = interval_s + timeout_s + check::MARGIN;
    let mut settled_at = healed + slack;
    if let Some(r) = faults.master_restarts.last() {
        // A master restarted uncleanly may wait for its secondaries that long at most.
        settled_at = settled_at.max(check::master_time_after(
            &faults.master_paused,
            r.end,
            slack + recovery_wait_s,
        ));
    }
    let wait = settled_at - clock.now();
    if wait > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    }
    let settled_at = clock.now();
    faults.log.push((
        settled_at,
        format!(
            "the cluster has settled: {} appends must be answered",
            LIVENESS_CLIENTS * LIVENESS_MESSAGES
        ),
    ));
    let after: Vec<_> = (0..LIVENESS_CLIENTS)
        .map(|c| tokio::spawn(after_heal_writer(c, seed, all, urls[0].clone(), clock)))
        .collect();
    let (after_heal, final_logs, reads, probes) = wrap_up(
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
        recovery_wait_s,
        settled_at: Some(settled_at),
        messages,
        reads,
        probes,
        faults,
        final_logs,
        run_errors,
        failover: None,
    };
    let violations = check::check(&history);
    finish(
        cluster,
        seed,
        params,
        replay,
        started,
        history,
        violations,
        String::new(),
    )
    .await
}

/// The writers' messages once each has its last answer (they were told to stop), for at most
/// `DRAIN_SECS` + 30 s each; a writer that fails or does not finish is a run error.
pub async fn drain_writers(
    writers: Vec<tokio::task::JoinHandle<Vec<Message>>>,
    run_errors: &mut Vec<String>,
) -> Vec<Message> {
    let mut messages = Vec::new();
    for w in writers {
        match tokio::time::timeout(Duration::from_secs_f64(DRAIN_SECS + 30.0), w).await {
            Ok(Ok(ms)) => messages.extend(ms),
            Ok(Err(e)) => run_errors.push(format!("a writer task failed: {e}")),
            Err(_) => run_errors.push("a writer did not finish its last message".into()),
        }
    }
    messages
}

/// The end of every schedule, with or without failover: the after-heal writers' messages,
/// the nodes' converged logs, then the readers' and probers' records once they are told to
/// stop. Returns (after-heal messages, final logs, reads, probes).
#[allow(clippy::too_many_arguments)]
pub async fn wrap_up(
    after: Vec<tokio::task::JoinHandle<Vec<Message>>>,
    urls: &[String],
    clock: Clock,
    faults: &mut Faults,
    run_errors: &mut Vec<String>,
    stop_watchers: &AtomicBool,
    readers: Vec<tokio::task::JoinHandle<Vec<Read>>>,
    probers: Vec<tokio::task::JoinHandle<Vec<Probe>>>,
) -> (Vec<Message>, Vec<NodeLog>, Vec<Read>, Vec<Probe>) {
    let mut messages = Vec::new();
    for w in after {
        match w.await {
            Ok(ms) => messages.extend(ms),
            Err(e) => run_errors.push(format!("an after-heal writer task failed: {e}")),
        }
    }
    faults
        .log
        .push((clock.now(), "the after-heal appends are done".into()));

    let stuck = run_errors.len();
    let final_logs = converge(urls, run_errors).await;
    let converged = if run_errors.len() == stuck {
        "every node shows the same log"
    } else {
        "the nodes did not converge"
    };
    faults.log.push((clock.now(), converged.into()));
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
    (messages, final_logs, reads, probes)
}

/// The report of a checked schedule; keeps the nodes' output and the history of a failing
/// one (of every one with `NEMESIS_KEEP`). `extra` ends the summary line (empty: nothing).
#[allow(clippy::too_many_arguments)]
pub async fn finish<C: Cluster>(
    cluster: &C,
    seed: u64,
    params: String,
    replay: String,
    started: Instant,
    history: History,
    violations: Vec<String>,
    extra: String,
) -> Report {
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
        extra,
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
                // Failover answers: `post` gives none of them.
                Answer::TakingOffice
                | Answer::Deposed { .. }
                | Answer::Misdirected
                | Answer::Unreachable => false,
                // Nothing was appended: the same message may be sent again, id or not.
                Answer::ReadOnly | Answer::Recovering => msg.attempts.len() < 60 && recv < hard_end,
                // Unknown outcome: only an id makes a second attempt safe.
                Answer::Unanswered { .. } => msg.id.is_some() && recv < hard_end,
            };
            msg.attempts.push(Attempt {
                sent,
                recv,
                answer,
                node: None,
            });
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

/// Clients of the after-heal phase (rule 10), and the appends each sends, one at a time.
pub const LIVENESS_CLIENTS: usize = 3;
pub const LIVENESS_MESSAGES: usize = 4;

/// Sends up to `LIVENESS_MESSAGES` appends, one attempt each (any answer but a promise is a
/// violation then): mixed write concerns, an id each, half of them with a `timeout_ms` of
/// 0.5–5 s. The client waits longer than the checker allows, so a late answer is seen as
/// late rather than as none.
async fn after_heal_writer(
    c: usize,
    seed: u64,
    all: usize,
    master: String,
    clock: Clock,
) -> Vec<Message> {
    let client = http();
    let mut rng = Rng::fork(seed, 500 + c as u64);
    let mut out = Vec::new();
    for n in 1..=LIVENESS_MESSAGES {
        let value = format!("s{seed}-after{c}-m{n}");
        let id = format!("s{seed}-after{c}-id{n}");
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
        let answer = post(&client, &master, &body, wait).await;
        let recv = clock.now();
        // One violation is enough: a client stops at its first answer without a key, so
        // the phase stays bounded however the cluster is stuck.
        let stop = answer.promised_key().is_none();
        out.push(Message {
            client: WRITERS + c,
            value,
            id: Some(id),
            w_sent,
            w,
            timeout_ms,
            attempts: vec![Attempt {
                sent,
                recv,
                answer,
                node: None,
            }],
        });
        if stop {
            break;
        }
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
    parse_answer(status, &text)
}

/// A 201/200/504/503 answer to an append as an [`Answer`], for clusters with or without
/// failover (a cluster without failover never gives the failover answers: the checker flags
/// them). A 421 is the failover runner's to follow.
pub fn parse_answer(status: u16, text: &str) -> Answer {
    let j: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let unexpected = || Answer::Unexpected {
        status,
        body: text.to_string(),
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
        503 if j["outcome"] == "unknown" => match j["key"].as_u64() {
            Some(key) => Answer::Deposed { key },
            None => unexpected(),
        },
        503 => match j["mode"].as_str() {
            Some("read-only") => Answer::ReadOnly,
            Some("recovering") => Answer::Recovering,
            Some("taking office") => Answer::TakingOffice,
            _ => unexpected(),
        },
        _ => unexpected(),
    }
}

// ---------------------------------------------------------------------------------------------
// Readers and probers

/// Long-polls `GET /messages?from=K&wait_ms=…` on random nodes, following each node's log.
pub async fn reader(
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
pub fn parse_messages(body: &str) -> Option<Vec<(u64, String)>> {
    let v: Value = serde_json::from_str(body).ok()?;
    v.as_array()?
        .iter()
        .map(|m| Some((m["key"].as_u64()?, m["value"].as_str()?.to_string())))
        .collect()
}

/// Samples secondary `node`'s `/health` every ~20 ms.
pub async fn prober(node: usize, url: String, clock: Clock, stop: Arc<AtomicBool>) -> Vec<Probe> {
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
    /// The power-loss stream, in a schedule with power losses.
    power: Option<Rng>,
    /// See `Setup::recovery_wait_s`.
    recovery_wait_s: f64,
}

impl Nemesis {
    fn new(all: usize, clock: Clock, power: Option<Rng>, recovery_wait_s: f64) -> Self {
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
            power,
            recovery_wait_s,
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

            // In a schedule with power losses the master loses power now and then, besides
            // its kills that become one (it needs every secondary up: see `power_loss`). The
            // draw is the power stream's, so the main stream's draws stay in their order.
            let all_up = self.nodes.iter().all(|n| n.proc == Proc::Up);
            if all_up && self.power.as_mut().is_some_and(|p| p.chance(0.1)) {
                // Half of them strike while a replication request is held up on every
                // secondary (what each receives meanwhile is held aside behind the gap, so
                // some secondary holds keys beyond the longest gap-free prefix).
                let mut delays: Vec<f64> = Vec::new();
                let mut then_ms = 0;
                if let Some(p) = self.power.as_mut()
                    && p.chance(0.5)
                {
                    delays = (1..all)
                        .map(|_| p.range(500, 3000) as f64 / 1000.0)
                        .collect();
                    then_ms = p.range(100, 400);
                }
                for (s, &secs) in delays.iter().enumerate() {
                    self.delay(c, s + 1, secs, faults).await;
                }
                tokio::time::sleep(Duration::from_millis(then_ms)).await;
                self.power_loss(c, 0, faults, errors).await;
                continue;
            }
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
                    // In a schedule with power losses, every kill of the master is one, and
                    // half of those of a secondary.
                    let share = if any == 0 { 1.0 } else { 0.5 };
                    let power_loss = self.power.as_mut().is_some_and(|p| p.chance(share));
                    if self.nodes[any].proc == Proc::Up {
                        if power_loss {
                            self.power_loss(c, any, faults, errors).await;
                        } else {
                            self.kill(c, any, faults, errors).await;
                        }
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

    /// A power loss of node `i` (fsync `never` schedules only): kill -9, then a random tail
    /// of its newest segment cut. A secondary stays down until a later step restarts it,
    /// like a killed one. For the master, every secondary must be up (else this is a plain
    /// kill): right after the kill each one's own `GET /messages` gives its gap-free prefix
    /// (`MasterPowerLoss`, whence the checker's P), and the master is restarted at once and
    /// waited for until it takes appends again — the nemesis does nothing else meanwhile, so
    /// every secondary stays up and reachable from the probe until then.
    async fn power_loss<C: Cluster>(
        &mut self,
        c: &mut C,
        i: usize,
        faults: &mut Faults,
        errors: &mut Vec<String>,
    ) {
        let all = self.nodes.len();
        if i == 0 && (1..all).any(|s| self.nodes[s].proc != Proc::Up) {
            self.note(
                faults,
                "power loss of the master: a secondary is down, so a plain kill instead".into(),
            );
            self.kill(c, i, faults, errors).await;
            return;
        }
        let t = self.clock.now();
        let r = c.kill(i).await;
        self.nodes[i].errors = false;
        let note = format!("power loss of {}: kill -9", Self::name(i));
        self.went_down(i, Proc::Killed, t, "power_loss", note, faults);
        self.failed(r, faults, errors);
        let logs = if i == 0 {
            Some(self.secondary_logs(c, faults).await)
        } else {
            None
        };
        let Some(power) = self.power.as_mut() else {
            return;
        };
        let cut = c.cut_tail(i, |room| tail_cut(power, room)).await;
        let downtime = power.range(200, 1500);
        match cut {
            Ok(what) => self.note(faults, format!("{}: {what}", Self::name(i))),
            Err(e) => self.failed::<()>(Err(e), faults, errors),
        }
        let Some(logs) = logs else {
            faults.secondary_power_losses.push(Span {
                node: i,
                start: t,
                end: self.clock.now(),
            });
            return;
        };
        faults
            .master_power_losses
            .push(MasterPowerLoss { at: t, logs });
        tokio::time::sleep(Duration::from_millis(downtime)).await;
        let r = c.start(0).await;
        self.note(faults, "restart master".into());
        self.failed(r, faults, errors);
        self.up(c, 0, faults, errors).await;
        self.wait_takes_appends(c, faults, errors).await;
    }

    /// Every secondary's gap-free prefix (its own `GET /messages`, values in key order),
    /// from which the checker derives P of a master power loss; `None` for a secondary that
    /// does not answer (it counts for nothing: P only gets smaller, which demands less). The
    /// fault log gets each one's `/health` too (contiguous and held-aside keys).
    async fn secondary_logs<C: Cluster>(
        &self,
        c: &C,
        faults: &mut Faults,
    ) -> Vec<Option<Vec<String>>> {
        let mut seen = Vec::new();
        let mut logs = Vec::new();
        for s in 1..self.nodes.len() {
            let log = gap_free_log(&self.client, &c.url(s)).await;
            let health = health_text(&self.client, &c.url(s)).await;
            match &log {
                Some(l) => seen.push(format!("{} keys 1..={} ({health})", Self::name(s), l.len())),
                None => seen.push(format!("{} no GET /messages ({health})", Self::name(s))),
            }
            logs.push(log);
        }
        let largest = logs.iter().flatten().map(Vec::len).max().unwrap_or(0);
        self.note(
            faults,
            format!(
                "secondaries: {}; largest gap-free prefix {largest}",
                seen.join("; ")
            ),
        );
        logs
    }

    /// Waits until the restarted master's `/health` says read-write (it takes appends) —
    /// at most its recovery wait plus the heartbeat slack, then 30 s more for a loaded
    /// machine; past that it is a problem of the run.
    async fn wait_takes_appends<C: Cluster>(
        &mut self,
        c: &C,
        faults: &mut Faults,
        errors: &mut Vec<String>,
    ) {
        let started = Instant::now();
        let limit = self.recovery_wait_s + check::MARGIN + 30.0;
        let mut last = String::new();
        loop {
            let r = self
                .client
                .get(format!("{}/health", c.url(0)))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if let Ok(r) = r
                && let Ok(j) = r.json::<Value>().await
            {
                if j["mode"] == "read-write" {
                    self.note(faults, "master takes appends again".into());
                    return;
                }
                last = j["mode"].to_string();
            }
            if started.elapsed().as_secs_f64() > limit {
                let e = format!(
                    "the master did not take appends within {limit:.0} s of its restart after a power loss (mode {last})"
                );
                self.note(faults, format!("FAILED: {e}"));
                errors.push(e);
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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

/// A node's own `GET /messages` as values in key order, if it answered with keys 1..=n
/// without a gap (its gap-free prefix); `None` otherwise.
pub async fn gap_free_log(client: &reqwest::Client, url: &str) -> Option<Vec<String>> {
    let r = client
        .get(format!("{url}/messages"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    let body = match r {
        Ok(r) if r.status() == 200 => r.text().await.ok(),
        _ => None,
    };
    body.as_deref()
        .and_then(parse_messages)
        .filter(|l| l.iter().enumerate().all(|(i, (k, _))| *k == i as u64 + 1))
        .map(|l| l.into_iter().map(|(_, v)| v).collect())
}

/// A node's contiguous and held-aside keys from its `/health`, for the fault log.
pub async fn health_text(client: &reqwest::Client, url: &str) -> String {
    let r = client
        .get(format!("{url}/health"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    let j = match r {
        Ok(r) if r.status() == 200 => r.json::<Value>().await.ok(),
        _ => None,
    };
    match j {
        Some(j) if j["role"] == "master" => format!("master, last key {}", j["last_key"]),
        Some(j) => format!(
            "contiguous key {}, {} held aside",
            j["contiguous_key"], j["held_aside"]
        ),
        None => "no /health".into(),
    }
}

/// How many of the `room` bytes after a segment's header a power loss takes: mostly a
/// little (a torn record, a few records), sometimes any share of them, sometimes all.
pub fn tail_cut(r: &mut Rng, room: u64) -> u64 {
    match r.weighted(&[5, 3, 2]) {
        0 => r.range(0, room.min(4096) + 1),
        1 => r.range(0, room + 1),
        _ => room,
    }
}

/// A node's `GET /messages`, `None` when it did not answer.
type NodeLog = Option<Vec<(u64, String)>>;

/// Waits (at most 60 s) until every node shows the same log twice in a row; returns each
/// node's last answer.
pub async fn converge(urls: &[String], errors: &mut Vec<String>) -> Vec<NodeLog> {
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
