//! Tailing and read-your-write with `GET /messages?wait_ms` (SPEC §2), beyond t12's basics:
//! a long poll answers as soon as the key it waits for is visible and not before — not on a
//! later key held aside behind a hole on a secondary, not on an earlier key — and a client
//! reads its own write on a lagging secondary with `from=<key>`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{TestCluster, wait_until};
use crate::t12_reads::{WAKE, long_poll};

/// Starts the long poll `GET path` on node `i` in the background: (answer, when it came).
fn spawn_get(c: &TestCluster, i: usize, path: &str) -> tokio::task::JoinHandle<(Value, Instant)> {
    let rb = long_poll(c, i, path);
    tokio::spawn(async move {
        let r = rb.send().await.expect("GET");
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.json().await.expect("JSON");
        (v, Instant::now())
    })
}

/// Waits for a long poll's answer, past its `wait_ms` (at most 30 s).
async fn join(h: tokio::task::JoinHandle<(Value, Instant)>) -> (Value, Instant) {
    tokio::time::timeout(Duration::from_secs(40), h)
        .await
        .expect("the long poll answers")
        .expect("task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t82_long_poll_answers_when_its_key_arrives_not_on_an_earlier_one() {
    // Arrange: key 1 exists; polls for key 3 on the master and on a secondary.
    let c = TestCluster::start(1).await;
    c.append("m1", 2).await;
    let polls = [
        spawn_get(&c, 0, "/messages?from=3&wait_ms=30000"),
        spawn_get(&c, 1, "/messages?from=3&wait_ms=30000"),
    ];

    // Act: key 2 arrives everywhere; the polls wait on.
    c.append("m2", 2).await;
    wait_until(
        "secondary1 shows key 2",
        Duration::from_secs(10),
        || async { c.messages(1).await.len() == 2 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        polls.iter().all(|p| !p.is_finished()),
        "key 2 does not answer a poll for key 3"
    );

    // Key 3 arrives (w=2: on both nodes once the append is answered): both answer at once,
    // with it alone, not at their wait_ms.
    c.append("m3", 2).await;
    let appended = Instant::now();
    for p in polls {
        let (v, answered) = join(p).await;
        assert_eq!(v, json!([{"key": 3, "value": "m3"}]));
        let took = answered.saturating_duration_since(appended);
        assert!(took < WAKE, "answered {took:?} after key 3 was appended");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t82_a_secondary_long_poll_waits_for_the_hole_not_the_key_held_aside() {
    // Arrange: secondary1 delays the next replication request (key 2) by 2 s, so key 3
    // arrives first and is held aside behind the hole.
    let c = TestCluster::start(1).await;
    c.append("m1", 2).await;
    let poll = spawn_get(&c, 1, "/messages?from=2&wait_ms=30000");
    c.delay(1, 2.0).await;

    // Act
    let started = Instant::now();
    c.append("m2", 1).await;
    c.append("m3", 1).await;
    wait_until(
        "key 3 held aside on secondary1",
        Duration::from_secs(10),
        || async {
            c.health(1).await["held_aside"].as_u64().unwrap_or(0) >= 1
                || c.messages(1).await.len() == 3
        },
    )
    .await;

    // Assert: the poll answers once key 2 landed (after the 2 s delay, not before, and not
    // at its wait_ms), with 2 and 3.
    let (v, answered) = join(poll).await;
    let took = answered.duration_since(started);
    assert!(
        took >= Duration::from_millis(1800),
        "answered before the delayed key 2 arrived: {v}"
    );
    assert!(
        took < Duration::from_secs(2) + WAKE,
        "answered {took:?} after the appends: not woken when the delayed key 2 landed"
    );
    assert_eq!(
        v,
        json!([{"key": 2, "value": "m2"}, {"key": 3, "value": "m3"}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t82_read_your_write_on_a_lagging_secondary() {
    // Arrange: secondary1 will hold the next message back for 3 s.
    let c = TestCluster::start(1).await;
    c.delay(1, 3.0).await;

    // Act: append with w=1 (answered before secondary1 has it), then read it there at once.
    let key = c.append("mine", 1).await;
    let appended = Instant::now();
    let immediate = c.get(1, &format!("/messages?from={key}")).await;
    let r = c
        .send(long_poll(
            &c,
            1,
            &format!("/messages?from={key}&wait_ms=30000"),
        ))
        .await;
    let took = appended.elapsed();

    // Assert: without wait_ms the secondary does not have it yet; with it, the read waits
    // for it and sees it.
    assert_eq!(
        immediate.json,
        json!([]),
        "secondary1 lags behind the w=1 append"
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json, json!([{"key": key, "value": "mine"}]));
    // It lands once the 3 s delay is over.
    assert!(
        took < Duration::from_secs(3) + WAKE,
        "answered {took:?} after the append: not as the message landed, but at wait_ms?"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t82_long_poll_with_limit_and_nothing_arriving() {
    // Arrange
    let c = TestCluster::start(1).await;
    for i in 1..=3 {
        c.append(&format!("m{i}"), 2).await;
    }

    // Act + assert: something at `from` answers at once, within `limit`.
    let started = Instant::now();
    let r = c.get(1, "/messages?from=2&limit=1&wait_ms=30000").await;
    assert_eq!(r.json, json!([{"key": 2, "value": "m2"}]));
    assert!(started.elapsed() < Duration::from_secs(10));
    // Nothing arrives: [] after about wait_ms, on the master and on a secondary.
    for node in [0, 1] {
        let started = Instant::now();
        let r = c.get(node, "/messages?from=4&wait_ms=400").await;
        assert_eq!((r.status, &r.json), (200, &json!([])), "node {node}");
        assert!(
            started.elapsed() >= Duration::from_millis(380),
            "node {node}"
        );
    }
}
