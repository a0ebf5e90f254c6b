//! A paused secondary (SIGSTOP: its sockets accept, it answers nothing): heartbeats call it
//! suspected, then unhealthy; appends that do not need it go on; with too few nodes the
//! master turns read-only (503, nothing appended) and back once they return (SPEC §4–5). A
//! secondary back from a long pause is caught up from disk at the configured pace while live
//! appends are answered.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{TestCluster, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_paused_secondaries_suspected_unhealthy_read_only_and_back() {
    // Arrange: master + 2 secondaries, quorum 2 (a majority of 3).
    let mut c = TestCluster::start(2).await;
    assert_eq!(c.health(0).await["quorum"], 2);
    assert_eq!(c.append("Msg1", 3).await, 1);

    // Act: pause secondary1.
    c.nodes[1].pause();

    // Assert: suspected first, then unhealthy; the master stays read-write (2 of 3 ≥ 2).
    // (Suspected lasts about 1.5 s here; a test starved for that long could poll past it, so
    // the log line of the transition counts as having seen it.)
    wait_until(
        "secondary1 suspected (or already past it)",
        Duration::from_secs(10),
        || async {
            let s = c.node_health("secondary1").await["status"].clone();
            s == "suspected" || s == "unhealthy"
        },
    )
    .await;
    c.wait_log_line(
        &["heartbeat status change: secondary1 healthy -> suspected"],
        Duration::from_secs(5),
    )
    .await;
    c.wait_status("secondary1", "unhealthy", Duration::from_secs(10))
        .await;
    c.wait_log_line(
        &["heartbeat status change: secondary1 suspected -> unhealthy"],
        Duration::from_secs(5),
    )
    .await;
    let h = c.health(0).await;
    assert_eq!(h["mode"], "read-write", "{h}");
    assert_eq!(h["available"], 2, "{h}");

    // w=2 works without secondary1.
    assert_eq!(c.append("Msg2", 2).await, 2);

    // A w=3 append waits for secondary1, while a parallel w=1 append answers.
    let msg3 = c.spawn_append("Msg3", 3);
    wait_until("Msg3 is appended", Duration::from_secs(5), || async {
        c.last_key().await == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!msg3.is_finished(), "w=3 waits while secondary1 is paused");
    assert_eq!(c.append("Msg4", 1).await, 4);
    assert!(!msg3.is_finished(), "w=3 still waits");

    // Pause secondary2 as well: 1 of 3 nodes available, below the quorum → read-only.
    c.pause_until_unhealthy(&[2]).await;
    c.wait_mode("read-only", Duration::from_secs(5)).await;
    let before = c.health(0).await;
    assert_eq!(before["available"], 1, "{before}");
    assert_eq!(before["last_key"], 4, "{before}");

    let r = c
        .call(
            reqwest::Method::POST,
            0,
            "/message",
            json!({"value": "refused", "write_concern": 1}),
        )
        .await;
    r.assert_error(503, "append while read-only");
    let retry_after: u64 = r
        .headers
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry_after >= 1);
    assert_eq!(r.json["available"], 1, "{}", r.text);
    assert_eq!(r.json["quorum"], 2, "{}", r.text);
    let sentence = r.json["error"].as_str().unwrap();
    assert!(
        sentence.contains("read-only") && sentence.contains('1') && sentence.contains('2'),
        "the sentence says why: {sentence}"
    );

    // Nothing was appended and no key consumed.
    assert_eq!(c.last_key().await, 4);
    assert_eq!(c.values(0).await, ["Msg1", "Msg2", "Msg3", "Msg4"]);
    assert!(!msg3.is_finished(), "w=3 still waits");
    // Reads keep working.
    assert_eq!(c.get(0, "/messages?from=4").await.status, 200);

    // Resume both: read-write again, the waiting w=3 append completes, all nodes equal.
    c.resume_until_healthy(&[1, 2]).await;
    c.wait_mode("read-write", Duration::from_secs(5)).await;
    let (r, _) = msg3.join(Duration::from_secs(15)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["key"], 3);
    assert_eq!(r.json["acks"], 3);

    // The refused append consumed no key: the next one gets key 5.
    assert_eq!(c.append("Msg5", 3).await, 5);
    let expected: Vec<String> = ["Msg1", "Msg2", "Msg3", "Msg4", "Msg5"]
        .map(String::from)
        .to_vec();
    c.wait_converged(&expected, Duration::from_secs(10)).await;

    // Every transition is in the log file.
    for parts in [
        &["secondary1 healthy -> suspected"][..],
        &["secondary1 suspected -> unhealthy"],
        &["secondary2 suspected -> unhealthy"],
        &["secondary1 unhealthy -> healthy"],
        &["secondary2 unhealthy -> healthy"],
        &["mode change: read-write -> read-only"],
        &["mode change: read-only -> read-write"],
    ] {
        c.wait_log_line(parts, Duration::from_secs(5)).await;
    }
    let log = c.app_log();
    let ro = log
        .find("mode change: read-write -> read-only")
        .expect("logged");
    let rw = log
        .find("mode change: read-only -> read-write")
        .expect("logged");
    assert!(ro < rw, "read-only is logged before read-write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_suspected_secondary_still_counts_toward_the_quorum() {
    // Arrange: quorum 3 of 3, and a secondary that stays suspected for a long time.
    let mut c = TestCluster::builder(2)
        .master_with(toml::toml! {
            [master]
            quorum = 3
            [heartbeat]
            unhealthy_after = 1000
        })
        .start()
        .await;

    // Act
    c.nodes[1].pause();
    c.wait_status("secondary1", "suspected", Duration::from_secs(10))
        .await;

    // Assert: suspected nodes are available (SPEC §5): still read-write, appends with a w
    // that does not need secondary1 answer.
    let h = c.health(0).await;
    assert_eq!(h["mode"], "read-write", "{h}");
    assert_eq!(h["available"], 3, "{h}");
    assert_eq!(c.append("a", 2).await, 1);

    // Resumed, it catches up.
    c.resume_until_healthy(&[1]).await;
    c.wait_converged(&["a".to_string()], Duration::from_secs(10))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_resumed_secondary_gets_everything_at_once_despite_a_long_backoff() {
    // Arrange: retries back off for 5 minutes after the first failure.
    let mut c = TestCluster::builder(1)
        .master_with(toml::toml! {
            [master]
            quorum = 1
            [replication]
            retry_delays_s = [300.0]
            request_timeout_ms = 1000
        })
        .start()
        .await;
    assert_eq!(c.append("a", 2).await, 1);
    // Paused before the master notices: the replication of "b" times out and the next try
    // is 300 s away.
    c.nodes[1].pause();
    assert_eq!(c.append("b", 1).await, 2);
    c.wait_log_line(
        &["retry scheduled for secondary1 in 300"],
        Duration::from_secs(10),
    )
    .await;
    c.wait_status("secondary1", "unhealthy", Duration::from_secs(10))
        .await;
    for v in ["c", "d"] {
        c.append(v, 1).await;
    }

    // Act
    let w2 = c.spawn_append("e", 2);
    c.resume_until_healthy(&[1]).await;

    // Assert: everything it missed arrives without waiting out the 300 s backoff.
    let (r, _) = w2.join(Duration::from_secs(15)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let expected: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
    c.wait_converged(&expected, Duration::from_secs(10)).await;
    c.wait_lag_zero("secondary1", Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_catch_up_from_disk_is_paced_while_live_appends_go_on() {
    // Arrange: a master on disk; batches of 100; catch-up from disk at most 200 messages/s.
    let mut c = TestCluster::builder(2)
        .master_with(toml::toml! { [storage] engine = "disk" })
        .with(toml::toml! {
            [replication]
            max_batch_entries = 100
            max_catchup_messages_per_s = 200
        })
        .start()
        .await;
    c.pause_until_unhealthy(&[2]).await;
    let values: Vec<String> = (1..=600).map(|i| format!("m{i}")).collect();
    for chunk in values.chunks(50) {
        let pending: Vec<_> = chunk.iter().map(|v| c.spawn_append(v, 2)).collect();
        for p in pending {
            let (r, _) = p.join(Duration::from_secs(10)).await;
            assert_eq!(r.status, 201, "{}", r.text);
        }
    }
    // A restarted master has nothing in its in-memory tail: secondary2 is caught up from disk.
    c.nodes[0].kill();
    c.nodes[0].start();
    c.wait_up(0).await;
    c.wait_mode("read-write", Duration::from_secs(15)).await;
    let keys: Vec<u64> = (1..=600).collect();
    let listed: Vec<u64> = c.messages(0).await.iter().map(|(k, _)| *k).collect();
    assert_eq!(listed, keys, "the master kept its log");

    // Act: resume secondary2 and append while it catches up.
    let resumed = std::time::Instant::now();
    c.nodes[2].resume();
    wait_until(
        "secondary2 to start catching up",
        Duration::from_secs(15),
        || async { !c.messages(2).await.is_empty() },
    )
    .await;
    let live = c.spawn_append("live", 2);

    // Assert: the live append is answered while secondary2 is still behind, and secondary2
    // gets every message — no faster than 200 a second after the first batch: six batches
    // of 100, five waits of 0.5 s. (The pace also leaves the live append 2.5 s to be answered
    // before secondary2 is level, however loaded the machine.)
    let (r, _) = live.join(Duration::from_secs(10)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["key"], 601);
    let behind = c.messages(2).await.len();
    assert!(behind < 601, "secondary2 was level already ({behind})");
    // (Appends of a chunk ran concurrently: the master's list says which key each got.)
    let log = c.messages(0).await;
    assert_eq!(log.len(), 601);
    wait_until(
        "secondary2 to hold the master's log",
        Duration::from_secs(30),
        || async { c.messages(2).await == log },
    )
    .await;
    let took = resumed.elapsed();
    assert!(
        took >= Duration::from_millis(2400),
        "600 messages from disk at 200/s took only {took:?}"
    );
}
