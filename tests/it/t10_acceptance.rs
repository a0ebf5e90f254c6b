//! The course acceptance test: a write concern above the nodes that are up blocks, others
//! don't, and a secondary started late receives the whole log in order.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{TestCluster, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_late_secondary_gets_everything_and_w3_waits_for_it() {
    // Arrange: master + secondary1 only.
    let mut c = TestCluster::builder(2).start_only(&[1]).start().await;

    // Act + assert: w=1 and w=2 answer while secondary2 is down.
    assert_eq!(c.append("Msg1", 1).await, 1);
    assert_eq!(c.append("Msg2", 2).await, 2);

    // w=3 waits…
    let url = format!("{}/message", c.master_url());
    let client = c.client.clone();
    let msg3 = tokio::spawn(async move {
        let r = client
            .post(url)
            .json(&json!({"value": "Msg3", "write_concern": 3}))
            .send()
            .await
            .expect("POST");
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.expect("json"),
        )
    });
    wait_until("Msg3 is appended", Duration::from_secs(5), || async {
        c.last_key().await == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !msg3.is_finished(),
        "w=3 must wait while only 2 nodes are up"
    );

    // …while w=1 answers at once.
    assert_eq!(c.append("Msg4", 1).await, 4);
    assert!(!msg3.is_finished(), "w=3 still waits");

    // Start secondary2: it receives everything, in order, and Msg3 completes.
    c.nodes[2].start();
    c.wait_up(2).await;
    let expected: Vec<String> = ["Msg1", "Msg2", "Msg3", "Msg4"].map(String::from).to_vec();
    c.wait_converged(&expected, Duration::from_secs(10)).await;
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), msg3)
        .await
        .expect("Msg3 completes once secondary2 holds it")
        .expect("task");
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["key"], 3);
    assert_eq!(body["acks"], 3);
}
