//! Regression tests for what the nemesis found, each replaying the essence of its schedule
//! deterministically (named after the seed where a seed found it).

use std::time::Duration;

use serde_json::json;

use crate::helpers::TestCluster;

fn disk() -> toml::Table {
    toml::toml! {
        [storage]
        engine = "disk"
    }
}

/// Found by seed 101 (3 secondaries, fsync interval). A restarted master took every key of its log as held by every node (its ack tracker
/// started at the end of its log), so a retry of an id'd message that only the master held
/// was answered 200 with `acks` = ALL at once, whatever its write concern — while a
/// secondary that never got the message was still paused. It must wait for its w like any
/// append (here: time out with 504).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nemesis_seed_101_duplicate_after_master_restart_waits_for_its_w() {
    let mut c = TestCluster::builder(2).with(disk()).start().await;
    // secondary2 stops before the message exists: it cannot hold it.
    c.nodes[2].pause_stopped().await;
    let (status, body) = c
        .post(json!({"value": "only-on-the-master", "id": "dup-1", "write_concern": 2}))
        .await;
    assert_eq!(status, 201, "{body}");
    let key = body["key"].as_u64().expect("key");

    c.nodes[0].kill();
    c.nodes[0].start();
    c.wait_up(0).await;
    c.wait_mode("read-write", Duration::from_secs(15)).await;

    // The retry of the same id with w=3 cannot be met while secondary2 is paused.
    let (status, body) = c
        .post(json!({"value": "only-on-the-master", "id": "dup-1", "write_concern": 3, "timeout_ms": 1500}))
        .await;
    assert_eq!(
        status, 504,
        "a duplicate of key {key} answered before secondary2 could hold it: {body}"
    );
    assert_eq!(body["key"], key, "{body}");
    assert!(body["acks"].as_u64().is_some_and(|a| a < 3), "{body}");

    // Once secondary2 is back, the same retry is answered with all three acks.
    c.resume_until_healthy(&[2]).await;
    let (status, body) = c
        .post(json!({"value": "only-on-the-master", "id": "dup-1", "write_concern": 3, "timeout_ms": 15000}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["key"], key, "{body}");
    assert_eq!(body["acks"], 3, "{body}");
    let on2 = c.messages(2).await;
    assert_eq!(
        on2.len() as u64,
        key,
        "secondary2 holds the message: {on2:?}"
    );
}
