//! Error injection (`fault.error_rate`, SPEC §3): secondaries store a request's messages and
//! then answer 500. The master must retry (a 500 is never an ack), the secondaries must store
//! idempotently, and every node must end with the same log: exactly once, keys 1..n in order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::helpers::{TestCluster, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_concurrent_appends_under_injected_errors_end_identical_and_exactly_once() {
    // Arrange: both secondaries fail 30% of replication requests after storing them.
    const N: usize = 300;
    const PARALLEL: usize = 16;
    let c = Arc::new(
        TestCluster::builder(2)
            .secondaries_with(toml::toml! {
                [fault]
                error_rate = 0.3
            })
            .start()
            .await,
    );
    for i in 1..=2 {
        let f = c.get(i, "/fault").await;
        assert_eq!(f.json["error_rate"], 0.3, "{}", f.text);
    }

    // Act: N appends, PARALLEL at a time, w cycling through 1, 2, 3.
    let gate = Arc::new(Semaphore::new(PARALLEL));
    let mut tasks = Vec::new();
    for i in 0..N {
        let (c, gate) = (c.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore");
            let value = format!("v{i:03}");
            let w = (i % 3 + 1) as u64;
            let (status, body) = c.post(json!({"value": value, "write_concern": w})).await;
            (value, w, status, body)
        }));
    }
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    for t in tasks {
        let (value, w, status, body) = tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("every append answers")
            .expect("task");
        // Assert: every append answers 201 with its w met.
        assert_eq!(status, 201, "{value} w={w}: {body}");
        assert!(body["acks"].as_u64().unwrap() >= w, "{body}");
        let key = body["key"].as_u64().expect("key");
        assert!(
            acked.insert(key, value.clone()).is_none(),
            "key {key} given twice"
        );
    }

    // Keys 1..=N, each acknowledged once; the values are exactly the ones appended.
    assert_eq!(
        acked.keys().copied().collect::<Vec<_>>(),
        (1..=N as u64).collect::<Vec<_>>()
    );
    let values: BTreeSet<String> = acked.values().cloned().collect();
    let sent: BTreeSet<String> = (0..N).map(|i| format!("v{i:03}")).collect();
    assert_eq!(values, sent, "every value acknowledged exactly once");

    // Every node ends with the same log: the acknowledged messages, exactly once, in order.
    let expected: Vec<(u64, String)> = acked.into_iter().collect();
    for i in 0..=2 {
        wait_until(
            &format!("node {i} holds all {N} messages"),
            Duration::from_secs(30),
            || {
                let (c, expected) = (c.clone(), expected.clone());
                async move { c.messages(i).await == expected }
            },
        )
        .await;
    }
    for name in ["secondary1", "secondary2"] {
        c.wait_lag_zero(name, Duration::from_secs(10)).await;
    }
    // The faults really happened and were retried.
    c.wait_log_line(&["injected fault"], Duration::from_secs(5))
        .await;
    c.wait_log_line(&["retry scheduled for secondary"], Duration::from_secs(5))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_error_rate_changes_at_run_time_and_a_500_is_never_an_ack() {
    // Arrange
    let c = TestCluster::start(2).await;
    let f = c.get(1, "/fault").await;
    assert_eq!(f.status, 200, "{}", f.text);
    assert_eq!(f.json["error_rate"], 0.0);

    // Act: secondary1 now stores every request and answers 500.
    c.set_error_rate(1, 1.0).await;
    assert_eq!(c.get(1, "/fault").await.json["error_rate"], 1.0);
    let w3 = c.spawn_append("m1", 3);

    // Assert: secondary1 holds the message but the master does not count its 500 as an ack.
    wait_until("secondary1 stores m1", Duration::from_secs(5), || async {
        c.values(1).await == ["m1"]
    })
    .await;
    wait_until(
        "the master shows secondary1's 500",
        Duration::from_secs(5),
        || async {
            let n = c.node_health("secondary1").await;
            n["error"].as_str().is_some_and(|e| e.contains("500"))
        },
    )
    .await;
    assert!(!w3.is_finished(), "a 500 is not an ack: w=3 still waits");
    // w=2 does not need secondary1.
    assert_eq!(c.append("m2", 2).await, 2);

    // Back to no faults: the retry succeeds and w=3 completes.
    c.set_error_rate(1, 0.0).await;
    let (r, _) = w3.join(Duration::from_secs(15)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["acks"], 3);
    c.wait_converged(
        &["m1".to_string(), "m2".to_string()],
        Duration::from_secs(10),
    )
    .await;

    // Out-of-range rates are refused and change nothing.
    for bad in [
        json!({"error_rate": 1.5}),
        json!({"error_rate": -0.1}),
        json!({}),
    ] {
        let r = c
            .call(reqwest::Method::POST, 1, "/fault", bad.clone())
            .await;
        r.assert_error(400, &format!("POST /fault {bad}"));
    }
    assert_eq!(c.get(1, "/fault").await.json["error_rate"], 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_appends_through_errors_a_pause_and_a_restart_end_identical() {
    // Arrange: injected errors on both secondaries.
    const N: usize = 400;
    let mut c = TestCluster::builder(2)
        .secondaries_with(toml::toml! {
            [fault]
            error_rate = 0.2
        })
        .start()
        .await;

    // Act: a stream of w=1 / w=2 appends, at most 8 at a time, in three phases: the first
    // third at once, the second once secondary1 is paused, the last once secondary2 is dead…
    let gate = Arc::new(Semaphore::new(8));
    let (phase_tx, phase) = tokio::sync::watch::channel(0usize);
    let mut tasks = Vec::new();
    for i in 0..N {
        let (gate, mut phase) = (gate.clone(), phase.clone());
        let rb = c.req(reqwest::Method::POST, 0, "/message").json(&json!({
            "value": format!("c{i:03}"),
            "write_concern": i % 2 + 1,
        }));
        tasks.push(tokio::spawn(async move {
            let mine = i * 3 / N;
            phase.wait_for(|p| *p >= mine).await.expect("phase");
            let _permit = gate.acquire_owned().await.expect("semaphore");
            let r = rb.send().await.expect("POST /message");
            let status = r.status().as_u16();
            (
                format!("c{i:03}"),
                status,
                r.json::<Value>().await.unwrap_or_default(),
            )
        }));
    }
    drop(phase);
    // …secondary1 paused until suspected, then resumed; secondary2 killed, and restarted
    // empty while the last third runs. One secondary is always up for w=2, and the quorum
    // (2) holds throughout.
    c.nodes[1].pause();
    wait_until(
        "secondary1 not healthy",
        Duration::from_secs(10),
        || async { c.node_health("secondary1").await["status"] != "healthy" },
    )
    .await;
    phase_tx.send(1).expect("phase");
    wait_until(
        "the second third under way",
        Duration::from_secs(20),
        || async { c.last_key().await >= (N / 3 + 20) as u64 },
    )
    .await;
    c.resume_until_healthy(&[1]).await;
    c.nodes[2].kill();
    wait_until(
        "secondary2 not healthy",
        Duration::from_secs(10),
        || async { c.node_health("secondary2").await["status"] != "healthy" },
    )
    .await;
    phase_tx.send(2).expect("phase");
    wait_until(
        "the last third under way",
        Duration::from_secs(20),
        || async { c.last_key().await >= (2 * N / 3 + 20) as u64 },
    )
    .await;
    c.nodes[2].start();

    // Assert: every append answered 201 with its own key; every node ends with exactly the
    // acknowledged messages in key order.
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    for t in tasks {
        let (value, status, body) = tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("every append answers")
            .expect("task");
        assert_eq!(status, 201, "{value}: {body}");
        let key = body["key"].as_u64().expect("key");
        assert!(acked.insert(key, value).is_none(), "key {key} given twice");
    }
    assert_eq!(
        acked.keys().copied().collect::<Vec<_>>(),
        (1..=N as u64).collect::<Vec<_>>()
    );
    let expected: Vec<String> = acked.into_values().collect();
    c.wait_converged(&expected, Duration::from_secs(30)).await;
    for name in ["secondary1", "secondary2"] {
        c.wait_lag_zero(name, Duration::from_secs(10)).await;
    }
}
