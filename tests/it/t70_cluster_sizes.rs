//! Cluster sizes (SPEC §1: any number of secondaries, 0..=N): ALL, the write concern's range,
//! "all" / "majority" and the default quorum all scale with the number of nodes.

use std::time::Duration;

use serde_json::json;

use crate::helpers::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t70_master_alone_all_is_1() {
    // Arrange: no secondaries.
    let c = TestCluster::start(0).await;
    let h = c.health(0).await;
    assert_eq!(h["quorum"], 1, "{h}");
    assert_eq!(h["available"], 1, "{h}");
    assert_eq!(h["mode"], "read-write", "{h}");
    assert_eq!(h["nodes"], json!([]), "{h}");

    // Act + assert: w=1, "all", "majority" and the default all mean 1 node.
    assert_eq!(c.append("a", 1).await, 1);
    for (w, key) in [(json!("all"), 2), (json!("majority"), 3), (json!(null), 4)] {
        let (status, body) = c.post(json!({"value": "x", "write_concern": w})).await;
        assert_eq!(status, 201, "w={w}: {body}");
        assert_eq!(body["key"], key);
        assert_eq!(body["write_concern"], 1, "w={w}: {body}");
        assert_eq!(body["acks"], 1);
    }
    // w=2 is more than ALL.
    let r = c
        .call(
            reqwest::Method::POST,
            0,
            "/message",
            json!({"value": "b", "write_concern": 2}),
        )
        .await;
    r.assert_error(400, "w=2 with no secondaries");
    assert_eq!(c.last_key().await, 4);
    assert_eq!(c.append("c", 1).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t70_four_secondaries_all_is_5_majority_3_quorum_3() {
    // Arrange
    let mut c = TestCluster::start(4).await;
    let h = c.health(0).await;
    assert_eq!(h["quorum"], 3, "{h}");
    assert_eq!(h["available"], 5, "{h}");
    assert_eq!(h["nodes"].as_array().unwrap().len(), 4, "{h}");

    // Act + assert: w=5 is ALL; "majority" is 3; w=6 is out of range.
    assert_eq!(c.append("m1", 5).await, 1);
    let (status, body) = c
        .post(json!({"value": "m2", "write_concern": "majority"}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["write_concern"], 3);
    let (status, body) = c.post(json!({"value": "m3"})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["write_concern"], 5, "the default is \"all\"");
    assert_eq!(body["acks"], 5);
    let r = c
        .call(
            reqwest::Method::POST,
            0,
            "/message",
            json!({"value": "x", "write_concern": 6}),
        )
        .await;
    r.assert_error(400, "w=6 with 4 secondaries");

    // Two secondaries paused: 3 of 5 available ≥ quorum 3, still read-write; w=5 waits for
    // all, while w=3 ("majority") answers.
    c.pause_until_unhealthy(&[1, 2]).await;
    let h = c.health(0).await;
    assert_eq!(h["mode"], "read-write", "{h}");
    assert_eq!(h["available"], 3, "{h}");
    let w5 = c.spawn_append("m4", 5);
    crate::helpers::wait_until("m4 is appended", Duration::from_secs(5), || async {
        c.last_key().await == 4
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!w5.is_finished(), "w=5 waits for the paused secondaries");
    let (status, body) = c
        .post(json!({"value": "m5", "write_concern": "majority"}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["key"], 5);

    // A third one paused: 2 of 5 < 3 → read-only.
    c.pause_until_unhealthy(&[3]).await;
    c.wait_mode("read-only", Duration::from_secs(5)).await;
    let r = c
        .call(
            reqwest::Method::POST,
            0,
            "/message",
            json!({"value": "refused", "write_concern": 1}),
        )
        .await;
    r.assert_error(503, "append with 2 of 5 nodes available");
    assert_eq!(r.json["available"], 2, "{}", r.text);
    assert_eq!(r.json["quorum"], 3, "{}", r.text);
    assert_eq!(c.last_key().await, 5);

    // One back: read-write again. All back: w=5 completes and every node is equal.
    c.resume_until_healthy(&[3]).await;
    c.wait_mode("read-write", Duration::from_secs(5)).await;
    assert!(!w5.is_finished(), "w=5 still waits for secondaries 1 and 2");
    c.resume_until_healthy(&[1, 2]).await;
    let (r, _) = w5.join(Duration::from_secs(15)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["acks"], 5);
    assert_eq!(c.append("m6", 5).await, 6);
    let expected: Vec<String> = (1..=6).map(|i| format!("m{i}")).collect();
    c.wait_converged(&expected, Duration::from_secs(10)).await;
}
