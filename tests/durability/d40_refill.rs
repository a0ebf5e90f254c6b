//! What a secondary's disk holds across restarts: a wiped data dir is refilled with the whole
//! log (SPEC §4, §6); entries held aside beyond a hole survive a kill -9; a log identity, once
//! bound, is kept and enforced (409) against a master of another log (SPEC §6).

use std::time::Duration;

use crate::helpers::{TestCluster, wait_until};
use crate::support::{data_dir, disk_cluster, health_u64, replog_check, values, wait_output_line};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Waits until the master's `/health` shows `name` refusing its log with a 409.
async fn wait_409(c: &TestCluster, name: &str) {
    wait_until(
        &format!("the master shows {name}'s 409"),
        SECS(15),
        || async {
            let n = c.node_health(name).await;
            n["error"]
                .as_str()
                .is_some_and(|e| e.contains("409") && e.contains("log identity"))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d40_wiped_secondary_is_refilled_with_the_whole_log() {
    // Arrange
    let mut c = disk_cluster(2).start().await;
    let vals = values("m", 25, 100);
    for v in &vals[..20] {
        c.append(v, 3).await;
    }
    let log_id = c.health(0).await["log_id"].clone();

    // Act: kill secondary1, wipe its data dir, append while it is down, restart it.
    c.nodes[1].kill();
    std::fs::remove_dir_all(data_dir(&c, 1)).expect("wipe the data dir");
    for v in &vals[20..] {
        c.append(v, 2).await;
    }
    c.nodes[1].start();
    c.wait_up(1).await;

    // Assert: it starts a new, empty store, then holds the whole log, bound to the log.
    wait_output_line(&c, 1, &["startup recovery: created a new log"], SECS(5)).await;
    c.wait_converged(&vals, SECS(20)).await;
    c.wait_lag_zero("secondary1", SECS(10)).await;
    assert_eq!(c.health(1).await["log_id"], log_id);
    assert_eq!(c.append("m26", 3).await, 26);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d40_entries_held_aside_survive_a_secondary_kill9() {
    // Arrange: a long replication timeout, so a delayed request stays pending.
    let mut c = disk_cluster(2)
        .master_with(toml::toml! {
            [replication]
            request_timeout_ms = 120_000
        })
        .start()
        .await;
    let vals = values("m", 5, 50);

    // Act 1: secondary1 delays the request carrying key 1; keys 2..=5 overtake it and are
    // held aside (stored, not visible).
    c.delay(1, 60.0).await;
    for (i, v) in vals.iter().enumerate() {
        assert_eq!(c.append(v, 2).await, i as u64 + 1);
    }
    wait_until("secondary1 holds keys 2..=5 aside", SECS(10), || async {
        health_u64(&c, 1, "held_aside").await == 4
    })
    .await;
    assert_eq!(health_u64(&c, 1, "contiguous_key").await, 0);

    // Act 2: with the master paused (it would refill secondary1 at once), kill -9 secondary1
    // while the delayed request is still pending, and restart it.
    c.nodes[0].pause();
    c.nodes[1].kill();
    c.nodes[1].start();
    c.wait_up(1).await;

    // Assert: what was held aside is still held aside, and still invisible …
    let line = wait_output_line(&c, 1, &["startup recovery: recovered 4 records"], SECS(5)).await;
    assert!(line.contains("4 held aside"), "{line}");
    assert_eq!(health_u64(&c, 1, "held_aside").await, 4);
    assert_eq!(health_u64(&c, 1, "contiguous_key").await, 0);
    assert!(c.values(1).await.is_empty(), "nothing visible before key 1");

    // … and once the master is back, key 1 arrives and all five show.
    c.nodes[0].resume();
    c.wait_converged(&vals, SECS(20)).await;
    assert_eq!(health_u64(&c, 1, "held_aside").await, 0);
    assert_eq!(c.append("m6", 3).await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d40_secondary_of_another_log_refuses_a_fresh_master_with_409_and_keeps_its_data() {
    // Arrange: log A on every node.
    let mut c = disk_cluster(2).start().await;
    let vals = values("a", 5, 20);
    for v in &vals {
        c.append(v, 3).await;
    }
    let log_a = c.health(0).await["log_id"].clone();

    // Act: the master comes back on an empty data dir: a new log B.
    c.nodes[0].kill();
    std::fs::remove_dir_all(data_dir(&c, 0)).expect("wipe the master's data dir");
    c.nodes[0].start();
    c.wait_up(0).await;
    let log_b = c.health(0).await["log_id"].clone();
    assert_ne!(log_a, log_b, "a fresh data dir is a new log");
    assert_eq!(c.append("b1", 1).await, 1);

    // Assert: both secondaries refuse log B with 409, the master's /health says so, and they
    // keep log A — also across a kill -9 of secondary1.
    wait_409(&c, "secondary1").await;
    wait_409(&c, "secondary2").await;
    for i in 1..=2 {
        assert_eq!(c.values(i).await, vals, "node {i} keeps log A");
        assert_eq!(c.health(i).await["log_id"], log_a);
    }
    c.nodes[1].kill();
    c.nodes[1].start();
    c.wait_up(1).await;
    assert_eq!(
        c.health(1).await["log_id"],
        log_a,
        "the binding survives a restart"
    );
    assert_eq!(c.values(1).await, vals);
    // Neither secondary takes log B: an append that needs one of them is not acknowledged.
    let (status, body) = c
        .post(serde_json::json!({"value": "b2", "write_concern": 2, "timeout_ms": 2000}))
        .await;
    assert_eq!(status, 504, "{body}");
    wait_409(&c, "secondary1").await;
    assert_eq!(c.values(0).await, ["b1", "b2"], "logs are never mixed");
    assert_eq!(c.values(1).await, vals, "secondary1 still holds log A only");

    // `replog check` on its data dir (node stopped) finds log A, whole.
    c.nodes[1].kill();
    let (ok, out) = replog_check(&data_dir(&c, 1));
    assert!(ok, "{out}");
    assert!(out.contains("result: OK"), "{out}");
    assert!(
        out.contains(&format!("log id: {}", log_a.as_str().unwrap())),
        "{out}"
    );
    assert!(out.contains("visible log: keys 1..=5"), "{out}");
}
