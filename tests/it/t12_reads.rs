//! `GET /messages` (SPEC §2): `from` / `limit` on every node, long polls with `wait_ms`, and
//! a log large enough to be streamed in several chunks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Semaphore;

use crate::helpers::TestCluster;

fn keys(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap_or_else(|| panic!("an array: {v}"))
        .iter()
        .map(|m| m["key"].as_u64().expect("key"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_from_and_limit_on_every_node() {
    // Arrange
    let c = TestCluster::start(2).await;
    for i in 1..=5 {
        c.append(&format!("m{i}"), 3).await;
    }

    // Act + assert
    for node in 0..=2 {
        for (q, want) in [
            ("", vec![1, 2, 3, 4, 5]),
            ("?from=1", vec![1, 2, 3, 4, 5]),
            ("?from=2&limit=2", vec![2, 3]),
            ("?from=4&limit=100", vec![4, 5]),
            ("?from=5", vec![5]),
            ("?from=6", vec![]),
            ("?from=1000000", vec![]),
            ("?limit=0", vec![]),
            ("?limit=1", vec![1]),
            ("?from=3&wait_ms=0", vec![3, 4, 5]),
        ] {
            let r = c.get(node, &format!("/messages{q}")).await;
            assert_eq!(r.status, 200, "node {node} {q}: {}", r.text);
            assert_eq!(keys(&r.json), want, "node {node} {q}");
        }
        let r = c.get(node, "/messages?from=3&limit=1").await;
        assert_eq!(r.json, serde_json::json!([{"key": 3, "value": "m3"}]));
    }
}

/// How soon after its key is appended a long poll must answer. A woken poll answers within
/// milliseconds; this leaves a loaded 2-core machine seconds (15 heartbeat intervals of the
/// test cluster), and is far inside the polls' `wait_ms` (30 s): a poll that is not woken and
/// only answers at its deadline fails.
pub const WAKE: Duration = Duration::from_secs(3);

/// `GET path` on node `i` for a long poll: the client waits 40 s, past any `wait_ms` the
/// tests use (30 s), so a poll that only answers at its deadline shows as such.
pub fn long_poll(c: &TestCluster, i: usize, path: &str) -> reqwest::RequestBuilder {
    c.req(reqwest::Method::GET, i, path)
        .timeout(Duration::from_secs(40))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_long_poll_answers_when_the_message_arrives_or_empty_after_wait_ms() {
    // Arrange
    let c = TestCluster::start(2).await;
    assert_eq!(c.append("m1", 3).await, 1);

    // Act: long polls for key 2 on the master and on a secondary.
    let mut polls = Vec::new();
    for node in [0, 1] {
        let rb = long_poll(&c, node, "/messages?from=2&wait_ms=30000");
        polls.push(tokio::spawn(async move {
            let r = rb.send().await.expect("GET");
            let v: Value = r.json().await.expect("JSON");
            (v, Instant::now())
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        polls.iter().all(|p| !p.is_finished()),
        "a long poll waits while there is nothing at `from`"
    );
    assert_eq!(c.append("m2", 3).await, 2);
    // w=3: every node holds key 2 now.
    let appended = Instant::now();

    // Assert: both answer with the new message as it arrives, not at their wait_ms.
    for p in polls {
        let (v, answered) = tokio::time::timeout(Duration::from_secs(40), p)
            .await
            .expect("the long poll answers")
            .expect("task");
        assert_eq!(v, serde_json::json!([{"key": 2, "value": "m2"}]));
        let took = answered.saturating_duration_since(appended);
        assert!(took < WAKE, "answered {took:?} after key 2 was appended");
    }

    // Nothing arrives: an empty array after about wait_ms.
    let started = Instant::now();
    let r = c.get(1, "/messages?from=3&wait_ms=500").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json, serde_json::json!([]));
    assert!(started.elapsed() >= Duration::from_millis(450));

    // Read your own write on a secondary: from = the key the append returned, answered as
    // the key lands there (w=1: replicated at once), not at wait_ms.
    let key = c.append("mine", 1).await;
    let appended = Instant::now();
    let r = c
        .send(long_poll(
            &c,
            2,
            &format!("/messages?from={key}&wait_ms=30000"),
        ))
        .await;
    assert_eq!(r.json, serde_json::json!([{"key": key, "value": "mine"}]));
    let took = appended.elapsed();
    assert!(took < WAKE, "answered {took:?} after the append");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_a_large_log_reads_whole_and_in_order_on_every_node() {
    // Arrange: more messages than one chunk of a streamed answer (1024).
    const N: usize = 2500;
    let c = Arc::new(TestCluster::start(1).await);
    let gate = Arc::new(Semaphore::new(16));
    let mut tasks = Vec::new();
    for i in 0..N {
        let (c, gate) = (c.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _p = gate.acquire_owned().await.expect("semaphore");
            c.append(&format!("{i:05}-{}", "x".repeat(i % 300)), 1)
                .await
        }));
    }
    for t in tasks {
        t.await.expect("append");
    }
    let expected: Vec<String> = c.values(0).await;
    assert_eq!(expected.len(), N);

    // Act + assert: the whole log, and windows across chunk boundaries, on both nodes.
    c.wait_converged(&expected, Duration::from_secs(30)).await;
    for node in [0, 1] {
        let r = c.get(node, "/messages?from=1000&limit=1100").await;
        assert_eq!(
            keys(&r.json),
            (1000..=2099).collect::<Vec<u64>>(),
            "node {node}"
        );
        let r = c.get(node, "/messages?from=2000").await;
        assert_eq!(keys(&r.json), (2000..=N as u64).collect::<Vec<u64>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_a_secondary_serves_binary_batches_for_tail_recovery() {
    // Arrange
    let c = TestCluster::start(1).await;
    for i in 1..=5 {
        c.append(&format!("m{i}"), 2).await;
    }
    let url = |q: &str| format!("{}/replicate{q}", c.url(1));

    // Act
    let body = c
        .client
        .get(url("?from=2&limit=3"))
        .send()
        .await
        .expect("GET /replicate")
        .bytes()
        .await
        .expect("body");
    let bad = c.client.get(url("?from=x")).send().await.expect("GET");

    // Assert: keys 2..=4 with their values, in the replication batch layout.
    let entries = replog::protocol::decode_batch(body, 1 << 20).expect("a batch");
    let got: Vec<(u64, String)> = entries
        .iter()
        .map(|e| (e.key, String::from_utf8_lossy(&e.value).to_string()))
        .collect();
    assert_eq!(
        got,
        vec![(2, "m2".into()), (3, "m3".into()), (4, "m4".into())]
    );
    assert_eq!(bad.status().as_u16(), 400);
}
