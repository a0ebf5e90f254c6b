//! Backpressure (performance issue): a bounded number of appends may be in progress at once;
//! past it the master answers 503 with Retry-After and appends nothing, instead of holding
//! ever more requests in memory.

use std::time::Duration;

use crate::helpers::{TestCluster, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t85_appends_past_max_pending_get_503_and_append_nothing() {
    // Arrange: room for two appends in progress; secondary2 is down, so w=3 waits.
    let mut c = TestCluster::builder(2)
        .start_only(&[1])
        .master_with(toml::toml! {
            [master]
            max_pending_appends = 2
        })
        .start()
        .await;
    let first = c.spawn_append("a", 3);
    let second = c.spawn_append("b", 3);
    wait_until("both appends written", Duration::from_secs(10), || async {
        c.last_key().await == 2
    })
    .await;

    // Act: a third append, even one that needs only the master.
    let (status, body) = c
        .post(serde_json::json!({"value": "c", "write_concern": 1}))
        .await;

    // Assert: refused, nothing appended; once the two complete, appends work again.
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["mode"], "overloaded", "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("max_pending_appends"))
    );
    assert_eq!(c.last_key().await, 2);
    c.nodes[2].start();
    c.wait_up(2).await;
    let (a, _) = first.join(Duration::from_secs(15)).await;
    let (b, _) = second.join(Duration::from_secs(15)).await;
    assert_eq!((a.status, b.status), (201, 201));
    assert_eq!(c.append("c", 3).await, 3);
}
