//! Issue 15, "Correctness": a diverged secondary was counted as level, acks outlived a wiped
//! secondary, timed-out waiters leaked, a failed fsync could be acknowledged. One test per
//! finding that can be shown with real processes (the fsync one is a unit test of the writer,
//! `writer::tests::always_acknowledges_nothing_after_a_failed_fsync_*`, and of the store).
//! Each failed on the code before the fix; see `docs/log-matching.md` for the mechanism.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{TestCluster, newest_segment_len, on_disk, power_loss_back_to, wait_until};

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn values(prefix: &str, n: u64) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}{i}")).collect()
}

/// Finding 1, as reproduced: all three nodes killed, the master's unsynced tail lost; the
/// master comes back alone, waits out its recovery wait, and goes on from the keys it kept.
/// Secondary1, holding the old messages under those keys, comes back: it must end with the
/// master's log (its divergent keys cut, logged, shown and counted), never be counted for
/// keys it holds another message under.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90_issue_15_a_secondary_whose_log_diverged_is_cut_to_the_masters_and_it_shows() {
    // Arrange: quorum 1 (the master may go on alone); 100 messages held by all three nodes.
    let mut c = TestCluster::builder(2)
        .with(on_disk())
        .master_with(toml::toml! {
            [master]
            quorum = 1
            recovery_wait_ms = 1000
        })
        .start()
        .await;
    let old = values("old", 100);
    for v in &old {
        let (status, body) = c
            .post(json!({"value": v, "write_concern": 3, "id": format!("id-{v}")}))
            .await;
        assert_eq!(status, 201, "{body}");
    }

    // Act: kill -9 all three; the master loses the tail of its newest segment; alone, it goes
    // on after its recovery wait and takes 30 new messages.
    for i in 0..=2 {
        c.nodes[i].kill();
    }
    let dir = c.data_dir(0);
    power_loss_back_to(&dir, newest_segment_len(&dir) - 2000);
    c.nodes[0].start();
    c.wait_up(0).await;
    c.wait_mode("read-write", SECS(15)).await;
    let kept = c.last_key().await;
    assert!(kept > 0 && kept < 100, "the master kept keys 1..={kept}");
    let new = values("new", 30);
    for (i, v) in new.iter().enumerate() {
        assert_eq!(c.append(v, 1).await, kept + 1 + i as u64);
    }
    c.nodes[1].start();
    c.wait_up(1).await;

    // Assert: secondary1 ends with the master's log…
    let expected: Vec<String> = old[..kept as usize].iter().chain(&new).cloned().collect();
    wait_until("secondary1 holds the master's log", SECS(20), || async {
        c.values(1).await == expected
    })
    .await;
    assert_eq!(c.values(0).await, expected);
    assert!(
        c.health(0).await["recovery"]
            .as_str()
            .is_some_and(|r| r.contains("went on without")),
        "the master's /health says it went on without its secondaries"
    );
    // …cut exactly its keys from the first key the master gave anew…
    let cut = 100 - kept;
    let h = c.health(1).await;
    assert_eq!(
        h["cuts"],
        json!([{"from_key": kept + 1, "entries": cut}]),
        "{h}"
    );
    // …and the cut is counted, logged with its keys, and shown by the master.
    let metrics = c.get(1, "/metrics").await.text;
    assert!(
        metrics.contains(&format!("replog_cut_entries_total {cut}")),
        "{metrics}"
    );
    c.wait_log_line(
        &["secondary1", &format!("cut keys {}..=100", kept + 1)],
        SECS(5),
    )
    .await;
    c.wait_log_line(
        &["secondary1", &format!("{}:id-old{}", kept + 1, kept + 1)],
        SECS(5),
    )
    .await;
    c.wait_lag_zero("secondary1", SECS(10)).await;
    let n = c.node_health("secondary1").await;
    wait_until("the master shows secondary1's cut", SECS(5), || async {
        c.node_health("secondary1").await["cut_entries"] == cut
    })
    .await;
    assert_eq!(n["acked_key"], kept + 30, "{n}");
}

/// Finding 1, what prevents it: after an unclean stop the master takes no appends until its
/// secondaries have answered, and takes back the tail it lost from them: nothing acknowledged
/// is lost when they come back within `master.recovery_wait_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90_issue_15_after_an_unclean_stop_the_master_waits_for_its_secondaries_and_loses_nothing()
{
    // Arrange: as above, with the default (long) recovery wait.
    let mut c = TestCluster::builder(2)
        .with(on_disk())
        .master_with(toml::toml! {
            [master]
            quorum = 1
        })
        .start()
        .await;
    let old = values("old", 100);
    for v in &old {
        c.append(v, 3).await;
    }
    for i in 0..=2 {
        c.nodes[i].kill();
    }
    let dir = c.data_dir(0);
    power_loss_back_to(&dir, newest_segment_len(&dir) - 2000);

    // Act: the master starts alone; then its secondaries come back.
    c.nodes[0].start();
    c.wait_up(0).await;
    let kept = c.last_key().await;
    assert!(kept < 100);
    // Long enough for a master that trusted failed heartbeats to have gone on.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = c.post(json!({"value": "early", "write_concern": 1})).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["mode"], "recovering", "{body}");
    c.nodes[1].start();
    c.nodes[2].start();
    c.wait_up(1).await;
    c.wait_up(2).await;

    // Assert: it took back keys kept+1..=100 before its first new key.
    c.wait_mode("read-write", SECS(15)).await;
    assert_eq!(c.values(0).await, old);
    assert_eq!(c.append("new", 3).await, 101);
    let mut expected = old.clone();
    expected.push("new".into());
    c.wait_converged(&expected, SECS(20)).await;
    assert!(c.health(0).await["recovery"].is_null());
}

/// Finding 2, as reproduced: a w=3 append waits on a paused secondary2; secondary1 holds it;
/// secondary1 loses its data and comes back, its next replication request delayed. When
/// secondary2 resumes, the append must not be answered from secondary1's old ack: only once
/// secondary1 holds the message again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90_issue_15_an_ack_does_not_outlive_the_data_of_a_secondary_that_lost_it() {
    // Arrange: memory engine, so a restart is a wipe.
    let mut c = TestCluster::start(2).await;
    c.nodes[2].pause_stopped().await;
    let w3 = c.spawn_append("m", 3);
    wait_until("secondary1 acknowledged key 1", SECS(10), || async {
        c.node_health("secondary1").await["acked_key"] == 1
    })
    .await;

    // Act: with the master held still, secondary1 restarts empty and delays its next
    // replication request; then the master goes on and sees it back with nothing.
    c.nodes[0].pause_stopped().await;
    c.nodes[1].kill();
    c.nodes[1].start();
    c.wait_up(1).await;
    c.delay(1, 6.0).await;
    c.nodes[0].resume();
    wait_until(
        "the master sees secondary1 back at key 0",
        SECS(10),
        || async {
            let n = c.node_health("secondary1").await;
            n["acked_key"] == 0 && n["status"] == "healthy"
        },
    )
    .await;
    c.nodes[2].resume();
    wait_until("secondary2 acknowledged key 1", SECS(15), || async {
        c.node_health("secondary2").await["acked_key"] == 1
    })
    .await;

    // Assert: two nodes hold it, so the w=3 append still waits (a moment for a wrong answer
    // to arrive)…
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !w3.is_finished(),
        "answered w=3 while secondary1 holds nothing"
    );
    // …until secondary1's delayed copy is stored.
    let (r, waited) = w3.join(SECS(20)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["acks"], 3);
    assert_eq!(c.values(1).await, ["m"]);
    assert!(waited > SECS(5), "answered after {waited:?}");
}

/// Finding 3: appends that timed out waiting for a dead secondary stayed registered, and the
/// per-key ack counts grew with every append. Both must be bounded by what is pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90_issue_15_timed_out_appends_leave_nothing_behind_while_a_secondary_is_dead() {
    // Arrange
    let mut c = TestCluster::start(2).await;
    c.nodes[2].kill();

    // Act: 2 000 w=3 appends that time out after 5 ms, 16 at a time.
    let client = reqwest::Client::new();
    let url = format!("{}/message", c.master_url());
    let mut tasks = Vec::new();
    for t in 0..16 {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..125 {
                let body =
                    json!({"value": format!("t{t}-{i}"), "write_concern": 3, "timeout_ms": 5});
                let r = client.post(&url).json(&body).send().await.expect("POST");
                statuses.push(r.status().as_u16());
            }
            statuses
        }));
    }
    let mut answered = 0;
    for t in tasks {
        let statuses = t.await.expect("task");
        assert!(statuses.iter().all(|s| *s == 504), "{statuses:?}");
        answered += statuses.len();
    }
    assert_eq!(answered, 2000);

    // Assert: nothing waits any more, and what the tracker keeps does not grow with appends.
    let metrics = c.get(0, "/metrics").await.text;
    let gauge = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /metrics:\n{metrics}"))
    };
    assert_eq!(gauge("replog_appends_waiting"), 0);
    assert!(
        gauge("replog_ack_tracker_ranges") <= 4,
        "{}",
        gauge("replog_ack_tracker_ranges")
    );
}
