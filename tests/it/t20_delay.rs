//! `POST /delay` (SPEC §3): a delayed replication request blocks only the appends that need
//! that secondary; a later batch overtakes it (the replication window), and the secondary
//! hides what arrived after the gap until the gap fills. The delay is one-shot.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{TestCluster, wait_until};

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_delayed_secondary_blocks_w3_and_a_later_batch_overtakes_it() {
    // Arrange
    let c = TestCluster::start(2).await;
    assert_eq!(c.append("Msg1", 3).await, 1);
    c.delay(1, 3.0).await;

    // Act: Msg2 w=3 needs secondary1, whose next replication request waits 3 s.
    let msg2 = c.spawn_append("Msg2", 3);

    // Assert: meanwhile secondary2 shows Msg2, secondary1 does not.
    wait_until("secondary2 shows Msg2", Duration::from_secs(5), || async {
        c.values(2).await == strings(&["Msg1", "Msg2"])
    })
    .await;
    assert_eq!(c.values(1).await, strings(&["Msg1"]));
    assert!(
        !msg2.is_finished(),
        "Msg2 w=3 waits for the delayed secondary1"
    );

    // Msg3 w=3 answers while Msg2 still waits: its batch overtakes the delayed one…
    let (status, body) = c.post(json!({"value": "Msg3", "write_concern": 3})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["key"], 3);
    assert_eq!(body["acks"], 3);
    // …and secondary1 holds Msg3 aside, behind the gap at key 2.
    assert_eq!(c.messages(1).await, vec![(1, "Msg1".to_string())]);
    let h1 = c.health(1).await;
    assert_eq!(h1["contiguous_key"], 1, "{h1}");
    assert!(h1["held_aside"].as_u64().unwrap() >= 1, "{h1}");
    assert!(
        !msg2.is_finished(),
        "Msg2 still waits out the delay (checks above ran inside it)"
    );

    // Msg2 has not answered before ~2.5 s, and does answer once the delay is over.
    let early = msg2.started + Duration::from_millis(2500);
    tokio::time::sleep_until(early.into()).await;
    assert!(!msg2.is_finished(), "Msg2 answered before the 3 s delay");
    let (r, took) = msg2.join(Duration::from_secs(20)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["key"], 2);
    assert_eq!(r.json["acks"], 3);
    assert!(took >= Duration::from_millis(2500), "took {took:?}");

    // After the delay every node holds the same three messages.
    c.wait_converged(&strings(&["Msg1", "Msg2", "Msg3"]), Duration::from_secs(10))
        .await;
    assert_eq!(c.health(1).await["held_aside"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_w2_does_not_wait_for_a_delayed_secondary() {
    // Arrange
    let c = TestCluster::start(2).await;
    assert_eq!(c.append("Msg1", 3).await, 1);
    c.delay(1, 3.0).await;

    // Act: w=2 is met by the master and secondary2.
    let (status, body) = c.post(json!({"value": "Msg2", "write_concern": 2})).await;

    // Assert: answered while secondary1 still sits in its delay (it does not show Msg2 yet).
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["key"], 2);
    assert!(body["acks"].as_u64().unwrap() >= 2, "{body}");
    assert_eq!(c.values(1).await, strings(&["Msg1"]));
    assert_eq!(c.values(2).await, strings(&["Msg1", "Msg2"]));
    c.wait_converged(&strings(&["Msg1", "Msg2"]), Duration::from_secs(10))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_w1_does_not_wait_for_two_delayed_secondaries() {
    // Arrange
    let c = TestCluster::start(2).await;
    assert_eq!(c.append("Msg1", 3).await, 1);
    c.delay(1, 3.0).await;
    c.delay(2, 3.0).await;

    // Act
    let (status, body) = c.post(json!({"value": "Msg2", "write_concern": 1})).await;

    // Assert: answered while both secondaries are still delayed.
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["key"], 2);
    assert_eq!(c.values(1).await, strings(&["Msg1"]));
    assert_eq!(c.values(2).await, strings(&["Msg1"]));
    assert_eq!(c.values(0).await, strings(&["Msg1", "Msg2"]));
    c.wait_converged(&strings(&["Msg1", "Msg2"]), Duration::from_secs(10))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_delay_is_one_shot_and_the_retry_of_the_same_messages_is_not_delayed() {
    // Arrange: a delay far longer than the master's replication request timeout.
    let c = TestCluster::builder(2)
        .master_with(toml::toml! {
            [replication]
            request_timeout_ms = 1500
        })
        .start()
        .await;
    c.delay(1, 60.0).await;

    // Act: the first request takes the 60 s delay and times out on the master after 1.5 s;
    // the master's retry of the same message must not be delayed.
    let msg1 = c.spawn_append("Msg1", 3);

    // Assert: the append completes through the retry, long before the 60 s are over.
    let (r, _) = msg1.join(Duration::from_secs(20)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["acks"], 3);
    c.wait_log_line(
        &["replication of keys 1..=1 to secondary1 failed"],
        Duration::from_secs(5),
    )
    .await;

    // A later request is not delayed either.
    let (r, _) = c
        .spawn_append("Msg2", 3)
        .join(Duration::from_secs(20))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    c.wait_converged(&strings(&["Msg1", "Msg2"]), Duration::from_secs(10))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_delay_applies_to_one_put_message_only() {
    // Arrange: nothing is appended, so the master sends this secondary no replication.
    let c = TestCluster::start(1).await;
    c.delay(1, 60.0).await;

    // Act: the first PUT takes the delay…
    let first = tokio::spawn({
        let rb = c
            .req(reqwest::Method::PUT, 1, "/message")
            .json(&json!({"key": 1, "value": "x"}));
        async move { rb.send().await.map(|r| r.status().as_u16()) }
    });
    c.wait_log_line(
        &["secondary1", "delaying PUT /message key 1"],
        Duration::from_secs(10),
    )
    .await;

    // …and the next one is stored at once, while the first still waits.
    let r = c
        .call(
            reqwest::Method::PUT,
            1,
            "/message",
            json!({"key": 2, "value": "y"}),
        )
        .await;

    // Assert
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(!first.is_finished(), "the first PUT waits out its delay");
    let h = c.health(1).await;
    assert_eq!(h["contiguous_key"], 0, "{h}");
    assert_eq!(h["held_aside"], 1, "key 2 waits behind key 1: {h}");
    assert!(c.messages(1).await.is_empty());
}
