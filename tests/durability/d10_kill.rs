//! kill -9 of every node in turn — secondary1, secondary2, then the master — while eight
//! clients append with w = 1, 2 and 3: after the restarts every node holds the same log, keys
//! 1..=n without gaps, every acknowledged message exactly once under the key it was given,
//! and the restarted master went on from its last key (SPEC §6).

use std::time::Duration;

use crate::support::{
    Load, Outcome, assert_log_keeps_promises, disk_cluster, wait_all_equal, wait_output_line,
};

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d10_kill9_each_node_in_turn_under_load_keeps_every_acknowledged_message_once() {
    kill9_each_node_in_turn_under_load("interval").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d10_kill9_each_node_in_turn_under_load_with_fsync_always() {
    kill9_each_node_in_turn_under_load("always").await;
}

async fn kill9_each_node_in_turn_under_load(fsync: &str) {
    // Arrange: a disk-backed cluster under a bounded load of 8 clients (w cycling 1, 2, 3;
    // an append that cannot reach its w in 1.5 s answers 504 and stays in the log).
    let mut c = disk_cluster(2)
        .with(toml::toml! {
            [storage]
            fsync = (fsync)
        })
        .start()
        .await;
    let load = Load::start(&c, 8, 400, &[1, 2, 3]);
    load.wait_acked_more(60, SECS(30)).await;

    // Act 1: kill -9 each secondary in turn; appends that do not need it go on meanwhile.
    for i in [1, 2] {
        let name = c.nodes[i].name.clone();
        c.nodes[i].kill();
        load.wait_acked_more(40, SECS(30)).await;
        c.nodes[i].start();
        c.wait_up(i).await;
        c.wait_status(&name, "healthy", SECS(15)).await;
        wait_output_line(&c, i, &["startup recovery: recovered"], SECS(5)).await;
        load.wait_acked_more(40, SECS(30)).await;
    }

    // Act 2: kill -9 the master under load; hold new appends back until it is up again, so
    // that the first key it gives out shows where it went on from.
    c.nodes[0].kill();
    load.close_gate();
    c.nodes[0].start();
    c.wait_up(0).await;
    let recovered = c.last_key().await;
    assert_eq!(
        c.messages(0).await.len() as u64,
        recovered,
        "the restarted master shows its whole log"
    );
    let given_before = load
        .attempts()
        .iter()
        .filter_map(|a| match a.outcome {
            Outcome::Acked(k) | Outcome::TimedOut(k) => Some(k),
            _ => None,
        })
        .max()
        .expect("appends before the kill");
    assert!(
        recovered >= given_before,
        "the master came back with keys up to {recovered}, but it had given out key {given_before}"
    );
    load.open_gate(1);
    load.wait_acked_more(60, SECS(30)).await;

    // Assert: stop the load, let replication finish, compare every node with every answer.
    let attempts = load.stop().await;
    let log = wait_all_equal(&c, SECS(30)).await;
    for i in 0..c.nodes.len() {
        let node_log = c.messages(i).await;
        assert_eq!(node_log, log, "{} shows the master's log", c.nodes[i].name);
        assert_log_keeps_promises(&c.nodes[i].name, &node_log, &attempts);
    }
    let acked = attempts
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Acked(_)))
        .count();
    let count = |f: fn(&Outcome) -> bool| attempts.iter().filter(|a| f(&a.outcome)).count();
    eprintln!(
        "d10 (fsync = {fsync}): {} appends: {acked} acknowledged, {} timed out (504), {} refused (503), {} without an answer; log of {} messages; master recovered {recovered}",
        attempts.len(),
        count(|o| matches!(o, Outcome::TimedOut(_))),
        count(|o| matches!(o, Outcome::Refused)),
        count(|o| matches!(o, Outcome::Unknown(_))),
        log.len()
    );
    assert!(
        acked >= 280,
        "the load went on throughout ({acked} acknowledged)"
    );
    let first_after = attempts
        .iter()
        .filter(|a| a.phase == 1)
        .filter_map(|a| match a.outcome {
            Outcome::Acked(k) | Outcome::TimedOut(k) => Some(k),
            _ => None,
        })
        .min()
        .expect("appends after the master's restart");
    assert_eq!(
        first_after,
        recovered + 1,
        "the restarted master continues the key sequence"
    );
}
