//! Exactly-once appends with a client `id` (SPEC §2): concurrent retries append once, an id
//! survives a master restart (disk engine), a retry after a 504 gets the same key and leaves
//! one copy on every node, and ids older than `master.dedup_window` are forgotten.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestCluster, wait_until};

/// How many times `value` appears in node `i`'s log.
async fn copies(c: &TestCluster, i: usize, value: &str) -> usize {
    c.values(i).await.iter().filter(|v| *v == value).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t81_concurrent_retries_of_one_id_append_once() {
    // Arrange
    let c = Arc::new(TestCluster::start(2).await);
    c.append("before", 3).await;

    // Act: 16 clients send the same id at once (a client retrying on several connections),
    // interleaved with appends of other ids.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let same = c
                .post(json!({"value": "once", "id": "order-1", "write_concern": 3}))
                .await;
            let other = c
                .post(json!({"value": format!("other-{i}"), "id": format!("o-{i}"), "write_concern": 1}))
                .await;
            (same, other)
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        let (same, other) = t.await.expect("task");
        assert_eq!(other.0, 201, "{}", other.1);
        answers.push(same);
    }

    // Assert: one 201, fifteen 200 duplicates, all with the same key and value.
    let created: Vec<&(u16, Value)> = answers.iter().filter(|(s, _)| *s == 201).collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    let key = created[0].1["key"].as_u64().expect("key");
    for (status, body) in &answers {
        assert!(*status == 201 || *status == 200, "{status} {body}");
        assert_eq!(body["key"], key, "{body}");
        assert_eq!(body["value"], "once");
        assert!(
            body["acks"].as_u64().unwrap_or(0) >= 3,
            "waited for w=3: {body}"
        );
        if *status == 200 {
            assert_eq!(body["duplicate"], true, "{body}");
        }
    }
    // 1 + 1 + 16 messages; "once" exactly once on every node.
    wait_until(
        "every node holds 18 messages",
        Duration::from_secs(15),
        || async {
            for i in 0..3 {
                if c.messages(i).await.len() != 18 {
                    return false;
                }
            }
            true
        },
    )
    .await;
    for i in 0..3 {
        assert_eq!(copies(&c, i, "once").await, 1, "node {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t81_an_id_is_remembered_across_a_master_restart() {
    // Arrange: every node on disk.
    let mut c = TestCluster::builder(2)
        .with(toml::toml! { [storage] engine = "disk" })
        .start()
        .await;
    let (s, first) = c
        .post(json!({"value": "pay 10", "id": "payment-42", "write_concern": 3}))
        .await;
    assert_eq!(s, 201, "{first}");
    let key = first["key"].as_u64().expect("key");
    c.append("later", 3).await;

    // Act: kill -9 the master, start it again, retry the same id (twice, concurrently).
    c.nodes[0].kill();
    c.nodes[0].start();
    c.wait_up(0).await;
    c.wait_mode("read-write", Duration::from_secs(15)).await;
    let body = json!({"value": "pay 10", "id": "payment-42", "write_concern": 3});
    let (a, b) = tokio::join!(c.post(body.clone()), c.post(body));

    // Assert: both are duplicates of the original key; nothing was appended.
    for (status, answer) in [a, b] {
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["key"], key);
        assert_eq!(answer["duplicate"], true);
    }
    assert_eq!(c.append("after", 3).await, 3, "the key sequence goes on");
    let want = ["pay 10", "later", "after"].map(String::from).to_vec();
    c.wait_converged(&want, Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t81_a_retry_after_a_504_gets_the_same_key_and_one_copy_on_every_node() {
    // Arrange: secondary2 paused (SIGSTOP), so w=3 cannot be reached.
    let mut c = TestCluster::start(2).await;
    c.append("m1", 3).await;
    c.nodes[2].pause_stopped().await;
    let body = json!({"value": "transfer", "id": "t-1", "write_concern": 3, "timeout_ms": 300});

    // Act + assert: 504 with the key; the message is appended.
    let (s, first) = c.post(body.clone()).await;
    assert_eq!(s, 504, "{first}");
    let key = first["key"].as_u64().expect("a 504 names the key");
    assert_eq!(key, 2);
    assert_eq!(first["write_concern"], 3);
    assert!(
        first["acks"].as_u64().is_some_and(|a| (1..3).contains(&a)),
        "{first}"
    );
    assert!(first["error"].as_str().is_some_and(|e| !e.is_empty()));

    // A retry while it is still paused: the same key, still 504 (it waits for its own w).
    let (s, again) = c.post(body.clone()).await;
    assert_eq!(s, 504, "{again}");
    assert_eq!(again["key"], key);
    // A retry asking for less: answered at once as a duplicate.
    let (s, w2) = c
        .post(json!({"value": "transfer", "id": "t-1", "write_concern": 2}))
        .await;
    assert_eq!(
        (s, &w2["key"], &w2["duplicate"]),
        (200, &json!(key), &json!(true))
    );

    // Resumed, a retry with w=3 answers 200 with the same key once secondary2 holds it.
    c.nodes[2].resume();
    let (s, last) = c
        .post(json!({"value": "transfer", "id": "t-1", "write_concern": 3, "timeout_ms": 20000}))
        .await;
    assert_eq!(s, 200, "{last}");
    assert_eq!(last["key"], key);
    assert_eq!(last["acks"], 3);

    // One copy on every node, under that key.
    let want = ["m1", "transfer"].map(String::from).to_vec();
    c.wait_converged(&want, Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t81_ids_older_than_the_dedup_window_are_forgotten() {
    // Arrange: the master remembers the ids of the last 3 messages.
    let c = TestCluster::builder(1)
        .master_with(toml::toml! { [master] dedup_window = 3 })
        .start()
        .await;
    let post = |v: &str, id: &str| c.post(json!({"value": v, "id": id, "write_concern": 2}));
    assert_eq!(post("a", "id-a").await.0, 201); // key 1
    assert_eq!(post("b", "id-b").await.0, 201); // key 2
    c.append("c", 2).await; // key 3, no id: it counts toward the window too

    // Act + assert: key 2 is within the last 3 (keys 1..=3 → 1, 2, 3): still a duplicate.
    let (s, dup) = post("b", "id-b").await;
    assert_eq!((s, &dup["key"]), (200, &json!(2)), "{dup}");
    c.append("d", 2).await; // key 4: the window is now keys 2..=4
    let (s, dup) = post("a", "id-a").await;
    assert_eq!(
        (s, &dup["key"]),
        (201, &json!(5)),
        "id-a (key 1) was forgotten: {dup}"
    );
    let (s, dup) = post("b", "id-b").await;
    assert_eq!(
        (s, &dup["key"]),
        (201, &json!(6)),
        "id-b (key 2) fell out at key 5: {dup}"
    );
    // The newest ones are remembered.
    let (s, dup) = post("b", "id-b").await;
    assert_eq!((s, &dup["key"]), (200, &json!(6)), "{dup}");
}
