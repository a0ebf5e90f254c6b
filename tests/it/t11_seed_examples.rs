//! The seed's curl examples (SEED.md "Testing"), sent byte for byte as curl sends them (same
//! method, path, `Content-Type` and body, whitespace included), against a real cluster.

use std::time::Duration;

use reqwest::Method;

use crate::helpers::{TestCluster, wait_until};

/// `curl -X POST http://0.0.0.0:8000/message -H "Content-Type: application/json" -d '…'`
const POST_BODY: &str = r#"{
        "value": "testValue",
        "write_concern": 2
    }"#;

/// `curl -X PUT http://0.0.0.0:8001/message -H "Content-Type: application/json" -d '…'`
const PUT_BODY: &str = r#"{
        "key": 2,
        "value": "testSetValue"
    }"#;

/// `curl -X POST http://0.0.0.0:8001/delay -H "Content-Type: application/json" -d '…'`
const DELAY_BODY: &str = r#"{
        "value": 30
    }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t11_seed_curl_examples_work_verbatim() {
    // Arrange
    let c = TestCluster::start(2).await;

    // Act + assert: "Add a new message on the Master node".
    let r = c.call_raw(Method::POST, 0, "/message", POST_BODY).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["key"], 1);
    assert_eq!(r.json["value"], "testValue");
    assert_eq!(r.json["write_concern"], 2);

    // "Get list of all messages" from the master and both secondaries.
    c.wait_converged(&["testValue".to_string()], Duration::from_secs(10))
        .await;
    for i in 0..=2 {
        let r = c.get(i, "/messages").await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json,
            serde_json::json!([{"key": 1, "value": "testValue"}]),
            "node {i}"
        );
    }

    // "Store a message with specific key on the Secondary node" (secondary1).
    let r = c.call_raw(Method::PUT, 1, "/message", PUT_BODY).await;
    assert!((200..300).contains(&r.status), "{} {}", r.status, r.text);
    assert_eq!(
        c.values(1).await,
        ["testValue", "testSetValue"],
        "key 2 follows key 1 on secondary1"
    );

    // The master's own key 2 now conflicts with it on secondary1: the master shows the 409
    // for that secondary and appends that do not need it keep working.
    assert_eq!(c.append("fromMaster", 2).await, 2);
    wait_secondary1_refused(&c).await;
    assert_eq!(c.append("after1", 2).await, 3);
    assert_eq!(c.append("after2", 1).await, 4);
    let master_log = ["testValue", "fromMaster", "after1", "after2"];
    wait_until(
        "secondary2 follows the master",
        Duration::from_secs(10),
        || async { c.values(2).await == master_log },
    )
    .await;
    assert_eq!(c.values(0).await, master_log);
    // A stored message is never overwritten, not even by the master.
    assert_eq!(c.values(1).await, ["testValue", "testSetValue"]);
    let n = c.node_health("secondary1").await;
    assert_eq!(n["acked_key"], 1, "{n}");
    assert_eq!(n["lag"], 3, "{n}");

    // "Set a one-time delay in seconds on the Secondary node" (here secondary2, whose log is
    // the master's): accepted, and the next w=1 append does not wait for it.
    let r = c.call_raw(Method::POST, 2, "/delay", DELAY_BODY).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(c.append("delayed", 1).await, 5);
    assert_eq!(
        c.values(2).await,
        master_log,
        "secondary2 sits in its delay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t11_a_scripted_put_beyond_the_gap_is_never_counted_as_the_masters_message() {
    // Arrange: secondary1 holds key 1; a script puts its own key 3 there (held aside).
    let c = TestCluster::start(2).await;
    assert_eq!(c.append("m1", 3).await, 1);
    put_scripted(&c, 3).await;
    // The master's key 2 fills the gap: secondary1's contiguous prefix is now 1..=3, but its
    // key 3 is not the master's.
    assert_eq!(c.append("m2", 3).await, 2);
    assert_eq!(c.values(1).await, ["m1", "m2", "scripted"]);

    // Act: the master's own key 3.
    let m3 = c.spawn_append("m3", 3);

    // Assert: secondary1 refuses it (409, shown by the master) and is never counted for it.
    wait_secondary1_refused(&c).await;
    assert!(
        !m3.is_finished(),
        "w=3 must not count secondary1, which holds another message under key 3"
    );
    assert_eq!(c.append("m4", 2).await, 4);
    let n = c.node_health("secondary1").await;
    assert_eq!(
        n["acked_key"], 2,
        "secondary1 holds the master's log up to 2: {n}"
    );
    assert_eq!(c.values(1).await, ["m1", "m2", "scripted"]);
    wait_until(
        "secondary2 follows the master",
        Duration::from_secs(10),
        || async { c.values(2).await == ["m1", "m2", "m3", "m4"] },
    )
    .await;
    assert!(!m3.is_finished(), "w=3 still not met");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t11_keys_after_a_refused_key_never_land_behind_it_while_its_retry_is_in_flight() {
    // Arrange: secondary1 holds a script's message under key 2, so it refuses the master's
    // key 2 (409) on every try.
    let c = TestCluster::start(2).await;
    assert_eq!(c.append("m1", 3).await, 1);
    put_scripted(&c, 2).await;
    let m2 = c.spawn_append("m2", 3);
    wait_secondary1_refused(&c).await;

    // Act: a retry of key 2 is held in secondary1 for 2 s (a /delay) while key 3 is appended.
    c.delay(1, 2.0).await;
    c.wait_log_line(
        &["secondary1", "delaying replication request"],
        Duration::from_secs(10),
    )
    .await;
    let failed = "to secondary1 failed: answered 409";
    let failures_before = c.app_log().matches(failed).count();
    assert_eq!(c.append("m3", 2).await, 3);
    wait_until(
        "the delayed retry is answered (409)",
        Duration::from_secs(10),
        || async { c.app_log().matches(failed).count() > failures_before },
    )
    .await;

    // Assert: key 3 did not go out beside the retry, so secondary1 did not store the master's
    // key 3 behind its own key 2: its log is still its own, and w=3 for m2 still waits.
    assert_eq!(c.values(1).await, ["m1", "scripted"]);
    assert_eq!(
        c.values(2).await,
        ["m1", "m2", "m3"],
        "secondary2 follows the master"
    );
    assert!(!m2.is_finished(), "w=3 must not count secondary1");
    let n = c.node_health("secondary1").await;
    assert_eq!(n["acked_key"], 1, "{n}");
}

/// A script's `PUT /message` of key `key` ("scripted") on secondary1, as the seed does it.
async fn put_scripted(c: &TestCluster, key: u64) {
    let r = c
        .call(
            Method::PUT,
            1,
            "/message",
            serde_json::json!({"key": key, "value": "scripted"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

/// Waits until the master's /health shows secondary1 refusing a key with 409.
async fn wait_secondary1_refused(c: &TestCluster) {
    wait_until(
        "the master's /health shows secondary1's 409",
        Duration::from_secs(10),
        || async {
            let n = c.node_health("secondary1").await;
            n["error"].as_str().is_some_and(|e| e.contains("409"))
        },
    )
    .await;
}
