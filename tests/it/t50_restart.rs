//! A secondary killed with SIGKILL and restarted empty (in-memory storage) is refilled with
//! the whole log, including what was appended while it was down (SPEC §4: "a secondary that
//! lost its data receives the whole log again").

use std::time::Duration;

use crate::helpers::TestCluster;

fn values(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("m{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_killed_secondary_restarted_empty_is_refilled_with_the_whole_log() {
    // Arrange
    let mut c = TestCluster::start(2).await;
    for v in &values(5) {
        c.append(v, 3).await;
    }

    // Act: kill secondary1; append while it is down; restart it (empty).
    c.nodes[1].kill();
    c.wait_status("secondary1", "unhealthy", Duration::from_secs(10))
        .await;
    for v in &values(10)[5..] {
        c.append(v, 2).await;
    }
    let lag = c.node_health("secondary1").await["lag"].as_u64().unwrap();
    assert!(lag >= 5, "the master sees secondary1 behind: lag {lag}");
    c.nodes[1].start();
    c.wait_up(1).await;

    // Assert: it holds the whole log again, and the master's view of it catches up.
    c.wait_converged(&values(10), Duration::from_secs(15)).await;
    c.wait_lag_zero("secondary1", Duration::from_secs(10)).await;
    c.wait_status("secondary1", "healthy", Duration::from_secs(5))
        .await;
    assert_eq!(c.append("m11", 3).await, 11);
    c.wait_converged(&values(11), Duration::from_secs(10)).await;
    c.wait_log_line(
        &["heartbeat: secondary1 is a new incarnation"],
        Duration::from_secs(5),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_secondary_restarted_before_the_master_noticed_is_refilled() {
    // Arrange
    let mut c = TestCluster::start(2).await;
    for v in &values(5) {
        c.append(v, 3).await;
    }

    // Act: kill and restart at once, faster than the heartbeats can call it unhealthy; the
    // master still believes it holds keys 1..=5.
    c.nodes[1].kill();
    c.nodes[1].start();
    c.wait_up(1).await;
    let w3 = c.spawn_append("m6", 3);

    // Assert: w=3 is only met once the new, empty incarnation holds key 6 — and every key
    // before it is sent again.
    let (r, _) = w3.join(Duration::from_secs(15)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    c.wait_converged(&values(6), Duration::from_secs(15)).await;
    c.wait_lag_zero("secondary1", Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_killed_secondary_blocks_only_the_appends_that_need_it() {
    // Arrange
    let mut c = TestCluster::start(2).await;
    c.nodes[2].kill();

    // Act + assert: w=3 waits, w=2 answers; restarted, secondary2 completes the w=3 append.
    let w3 = c.spawn_append("a", 3);
    crate::helpers::wait_until("a is appended", Duration::from_secs(5), || async {
        c.last_key().await == 1
    })
    .await;
    assert_eq!(c.append("b", 2).await, 2);
    assert!(!w3.is_finished(), "w=3 waits for the dead secondary2");
    c.nodes[2].start();
    let (r, _) = w3.join(Duration::from_secs(15)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["key"], 1);
    c.wait_converged(&["a".to_string(), "b".to_string()], Duration::from_secs(10))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_secondaries_of_an_old_log_refuse_a_restarted_empty_master() {
    // Arrange: a log replicated everywhere; then the master restarts empty (in-memory), with
    // a new log identity.
    let mut c = TestCluster::start(2).await;
    for v in &values(3) {
        c.append(v, 3).await;
    }
    let old_id = c.health(0).await["log_id"].clone();
    c.nodes[0].kill();
    c.nodes[0].start();
    c.wait_up(0).await;
    let new_id = c.health(0).await["log_id"].clone();
    assert_ne!(old_id, new_id, "an empty master starts a new log");

    // Act
    assert_eq!(c.append("new1", 1).await, 1);
    let w2 = c.spawn_append("new2", 2);

    // Assert: the secondaries keep the old log (409 to the new one), the master shows why,
    // and an append that needs a secondary is not acknowledged.
    for name in ["secondary1", "secondary2"] {
        crate::helpers::wait_until(
            &format!("the master shows {name}'s 409"),
            Duration::from_secs(10),
            || async {
                let n = c.node_health(name).await;
                n["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("409") && e.contains("log identity"))
            },
        )
        .await;
    }
    assert!(!w2.is_finished(), "no secondary can hold the new log");
    for i in 1..=2 {
        assert_eq!(c.values(i).await, values(3), "node {i} keeps the old log");
        assert_eq!(c.health(i).await["log_id"], old_id);
    }
}
