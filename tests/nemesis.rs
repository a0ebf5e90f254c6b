//! Nemesis: seeded fault schedules over a real cluster, and a checker of the whole history
//! (the Jepsen-style part of the reliability issue).
//!
//! Each schedule starts a disk-backed cluster of real `replog serve` processes on loopback
//! (the integration suite's `TestCluster`), then for a fixed time runs at once:
//!
//! - **the nemesis** (`nemesis/run.rs`): a random sequence, drawn from the seed, of SIGSTOP /
//!   SIGCONT (any node, the master too), kill -9 and restart (any node), kill -9 + wipe of a
//!   secondary's data dir + restart, `POST /delay` on a secondary, `POST /fault
//!   {"error_rate": x}` bursts on a secondary and their end;
//! - **writers** appending with mixed `write_concern` (1..=ALL, `"majority"`, `"all"`), with or
//!   without an `id` (an id'd message is retried under the same id after timeouts, connection
//!   errors and 503s), with or without `timeout_ms`;
//! - **readers** long-polling `GET /messages?from=K&wait_ms=…` on random nodes;
//! - **probers** sampling every secondary's `GET /health` (`contiguous_key`, `held_aside`).
//!
//! Then it heals (every node resumed or restarted, error rates 0), lets the writers finish
//! their last message, waits until every node shows the same log, and checks the recorded
//! history (`nemesis/check.rs`; each rule is documented there): every acknowledged message
//! on every node exactly once under its key, no gaps, one log everywhere; no read of a message
//! before it was sent nor of a value the final log does not have under that key; a 201/200
//! with w=k held by ≥ k nodes when answered; 503 read-only only while enough secondaries were
//! really down, 503 recovering only just after a master restart; a refused append never in the
//! log (unless another attempt of it may have gone through); a 504 in the log under its key.
//!
//! # Running
//!
//! - `cargo test --test nemesis`: the CI seeds (`CI_SEEDS`, ~35 s each, one test per seed).
//! - A soak (nice it, it runs for a while):
//!   `NEMESIS_SEEDS=100 nice -n 10 cargo test --release --test nemesis nemesis_soak -- --ignored --nocapture`
//!   (`NEMESIS_FIRST_SEED` moves the range, `NEMESIS_SECS` sets each schedule's length, 30 by
//!   default). It prints one line per schedule and the totals; `NEMESIS_VERBOSE=1` prints
//!   each fault schedule too, `NEMESIS_KEEP=1` keeps every schedule's node output and history
//!   in `$TMPDIR/replog-nemesis-<seed>` (always kept for a failing one).
//! - Replay one schedule: `NEMESIS_SEED=<seed> cargo test --test nemesis nemesis_soak --
//!   --ignored --nocapture` — every failure prints this command with its seed. The fault
//!   schedule and every client's choices follow from the seed; the timing is the machine's.
//!
//! # The docker backend
//!
//! The same runner and checker over the docker-compose cluster (`nemesis/docker.rs`): nodes
//! are compose services, and network partitions (`docker network disconnect` / `connect`,
//! the master too) join the faults. It needs the image and the compose project that
//! `e2e/run.sh` builds and exports, so it runs there, as phase 8 (`DOCKER_CI_SEEDS`, ~30 s
//! each):
//!
//! - `E2E_PHASES=8 E2E_IP_CHANGE=0 bash e2e/run.sh`: the CI seeds alone;
//! - a soak: `E2E_PHASES=8 E2E_IP_CHANGE=0 NEMESIS_SEEDS=10 NEMESIS_SECS=30 nice -n 10 bash
//!   e2e/run.sh` (`NEMESIS_FIRST_SEED` moves the range);
//! - a replay: `E2E_PHASES=8 E2E_IP_CHANGE=0 NEMESIS_SEED=<seed> bash e2e/run.sh` (printed
//!   with every failure).

#[path = "it/helpers.rs"]
mod helpers;

#[path = "nemesis/check.rs"]
mod check;
#[path = "nemesis/cluster.rs"]
mod cluster;
#[path = "nemesis/docker.rs"]
mod docker;
#[path = "nemesis/history.rs"]
mod history;
#[path = "nemesis/regressions.rs"]
mod regressions;
#[path = "nemesis/rng.rs"]
mod rng;
#[path = "nemesis/run.rs"]
mod run;

use std::time::Duration;

/// Length of a CI schedule (faults and load); healing and checking add a few seconds.
const CI_SECS: f64 = 25.0;

async fn ci_seed(seed: u64) {
    let report = run::run_schedule(seed, Duration::from_secs_f64(CI_SECS)).await;
    eprintln!("{}", report.summary_line());
    report.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nemesis_ci_seed_1() {
    ci_seed(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nemesis_ci_seed_2() {
    ci_seed(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nemesis_ci_seed_3() {
    ci_seed(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nemesis_ci_seed_4() {
    ci_seed(4).await;
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// `NEMESIS_SEED`, else `NEMESIS_SEEDS` seeds from `NEMESIS_FIRST_SEED` (default 1000), else
/// `default`.
fn seeds_from_env(default: &[u64]) -> Vec<u64> {
    if let Some(s) = env_u64("NEMESIS_SEED") {
        return vec![s];
    }
    match env_u64("NEMESIS_SEEDS") {
        Some(n) => {
            let first = env_u64("NEMESIS_FIRST_SEED").unwrap_or(1000);
            (first..first + n).collect()
        }
        None => default.to_vec(),
    }
}

fn secs_from_env(default: f64) -> Duration {
    let secs = std::env::var("NEMESIS_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(default);
    Duration::from_secs_f64(secs)
}

/// Runs `seeds` one after the other; prints each summary, every failure and the totals.
async fn run_seeds<F, Fut>(seeds: Vec<u64>, mut one: F)
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = run::Report>,
{
    let mut totals = run::Totals::default();
    let mut failed = Vec::new();
    for seed in seeds {
        let report = one(seed).await;
        eprintln!("{}", report.summary_line());
        if !report.violations.is_empty() {
            eprintln!("{}", report.failure_text());
            failed.push(seed);
        }
        totals.add(&report);
    }
    eprintln!("{}", totals.summary_line());
    assert!(failed.is_empty(), "schedules with violations: {failed:?}");
}

/// The soak (and the replay of one seed); see the module docs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: a soak of many schedules (NEMESIS_SEEDS, NEMESIS_SEED)"]
async fn nemesis_soak() {
    let dur = secs_from_env(30.0);
    let seeds = seeds_from_env(&(1000..1010).collect::<Vec<_>>());
    run_seeds(seeds, |seed| run::run_schedule(seed, dur)).await;
}

/// The docker backend's CI seeds, chosen from a soak for what their first 20 s hold: seed 7
/// (4 secondaries) partitions a secondary twice, kills the master and wipes a secondary;
/// seed 12 (2 secondaries) partitions the master twice, once together with a secondary (503
/// read-only answers), then kills the master.
const DOCKER_CI_SEEDS: [u64; 2] = [7, 12];

/// The docker backend (e2e/run.sh phase 8); see the module docs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the image and compose project of e2e/run.sh: E2E_PHASES=8 bash e2e/run.sh"]
async fn nemesis_docker() {
    let env = match docker::Env::from_env() {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    };
    let dur = secs_from_env(20.0);
    let seeds = seeds_from_env(&DOCKER_CI_SEEDS);
    run_seeds(seeds, |seed| docker::run_schedule(&env, seed, dur)).await;
}
