//! Adversarial review of log matching (`docs/log-matching.md`, issue 15): sequences of
//! crashes, power losses, restarts, pauses, delays and script writes that try to break its
//! invariants. A test here that fails shows a break (see the review report); one that passes
//! is a regression test for a sequence found safe.
//!
//! Power loss is modelled as in `t90_issue_15`: the node is killed with SIGKILL and the newest
//! segment of its data directory loses its unsynced tail. Here the tail is cut back to a length
//! measured earlier (the end of a known key), which a power loss under `fsync = "never"` may
//! leave (nothing after it was ever fsynced).

use std::time::Duration;

use serde_json::json;

use crate::helpers::{TestCluster, newest_segment_len, on_disk, power_loss_back_to, wait_until};

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn values(prefix: &str, keys: std::ops::RangeInclusive<u64>) -> Vec<String> {
    keys.map(|k| format!("{prefix}{k}")).collect()
}

/// The lines of the shared log file that contain every one of `parts`.
fn log_lines(c: &TestCluster, parts: &[&str]) -> Vec<String> {
    c.app_log()
        .lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .map(str::to_string)
        .collect()
}

/// AdoptMatching / "nothing the secondaries hold is lost if they are heard within the
/// recovery wait": a master that lost its tail twice takes back a *stale* tail.
///
/// Epoch 1 writes a1..a10 everywhere and b11..b30 on the master and secondary1 (secondary2
/// down). Power loss on the master (back to a10), secondary1 down: the master (epoch 2) goes on
/// after its recovery wait with secondary2 and writes c11..c20, acknowledged at w=2 (master +
/// secondary2). Power loss on the master again (back to a10). Epoch 3 hears secondary1 first:
/// its history `1:1` agrees with the master's `1:1,2:11` on every key the master holds (≤ 10),
/// so the master adopts b11..b30 — keys its own history says epoch 2 wrote anew — and then
/// secondary2, heard within the recovery wait, is cut back to a10: the acknowledged c11..c20
/// are gone from every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t91_review_15_a_master_that_lost_its_tail_twice_does_not_adopt_a_stale_tail_over_acknowledged_messages()
 {
    // Arrange: the master never fsyncs (its power losses may cost any unsynced tail) and may
    // go on alone; a recovery wait long enough for the steps below.
    let mut c = TestCluster::builder(2)
        .with(on_disk())
        .master_with(toml::toml! {
            [master]
            quorum = 1
            recovery_wait_ms = 15000
            [storage]
            fsync = "never"
        })
        .start()
        .await;
    let a = values("a", 1..=10);
    for v in &a {
        c.append(v, 3).await;
    }
    let end_of_a10 = newest_segment_len(&c.data_dir(0));
    c.nodes[2].kill();
    let b = values("b", 11..=30);
    for v in &b {
        c.append(v, 2).await;
    }

    // Power loss 1: the master keeps a1..a10; secondary1 (holding b11..b30) is down.
    c.nodes[0].kill();
    c.nodes[1].kill();
    power_loss_back_to(&c.data_dir(0), end_of_a10);
    c.nodes[2].start();
    c.wait_up(2).await;
    c.nodes[0].start();
    c.wait_up(0).await;
    c.wait_mode("read-write", SECS(20)).await;
    assert_eq!(c.last_key().await, 10);
    // Epoch 2 writes c11..c20, acknowledged by the master and secondary2.
    let cs = values("c", 11..=20);
    for (i, v) in cs.iter().enumerate() {
        let (status, body) = c.post(json!({"value": v, "write_concern": 2})).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["key"], 11 + i as u64, "{body}");
        assert_eq!(body["acks"], 2, "{body}");
    }
    assert_eq!(c.health(0).await["epochs"], json!([[1, 1], [2, 11]]));

    // Power loss 2: the master keeps a1..a10 again. Secondary1 is back first; secondary2 is
    // paused until the master has heard secondary1, then heard well within the recovery wait.
    c.nodes[2].pause();
    c.nodes[0].kill();
    power_loss_back_to(&c.data_dir(0), end_of_a10);
    c.nodes[1].start();
    c.wait_up(1).await;
    c.nodes[0].start();
    c.wait_up(0).await;
    // Give the recovery a chance to act on secondary1 alone (what a slower secondary2 means):
    // once the master has heard secondary1, it adopts something from it or keeps waiting for
    // secondary2, which is then heard well within the recovery wait.
    wait_until(
        "the restarted master heard secondary1",
        SECS(10),
        || async {
            c.node_health("secondary1").await["status"] == "healthy"
                && c.health(1).await["contiguous_key"] == 30
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.nodes[2].resume();
    c.wait_mode("read-write", SECS(20)).await;
    let note = c.health(0).await["recovery"].clone();
    // One new message at w=3: both secondaries hold the master's log after it. (A secondary
    // heard after the recovery wait can still be adopted from, as long as the master has not
    // assigned a key: meanwhile appends get 503 "recovering", which a client retries.)
    let deadline = std::time::Instant::now() + SECS(20);
    let d = loop {
        let (status, body) = c.post(json!({"value": "d", "write_concern": 3})).await;
        if status == 503 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        assert_eq!(status, 201, "{body}");
        break body["key"].as_u64().expect("key");
    };

    // Assert: every message acknowledged at w=2 is still in the master's log.
    let master = c.messages(0).await;
    let adopted = log_lines(&c, &["recovered keys"]);
    let cuts = log_lines(&c, &["secondary2", "cut keys"]);
    let held: Vec<String> = master
        .iter()
        .filter(|(k, _)| (11..=20).contains(k))
        .map(|(_, v)| v.clone())
        .collect();
    assert_eq!(
        held, cs,
        "c11..c20 were acknowledged at w=2 and secondary2 (which held them) was heard within the \
         recovery wait (recovery note: {note}); the master now holds {held:?} under keys \
         11..=20 (new message at key {d}).\nadoption: {adopted:#?}\ncuts on secondary2: {cuts:#?}"
    );
}

/// AcksAreHeld / LabelsTrue with a script's `PUT /message`: a secondary that restarted (a new
/// incarnation) and took a script's message under the next key, first heard by the master after
/// the master wrote its own message under that key, is counted for it from its reported
/// contiguous prefix: the history it reports is the master's, though no master wrote that
/// entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t91_review_15_a_restarted_secondary_holding_a_scripts_message_is_not_counted_for_that_key()
{
    // Arrange: m1..m5 everywhere.
    let mut c = TestCluster::builder(2).with(on_disk()).start().await;
    for v in values("m", 1..=5) {
        c.append(&v, 3).await;
    }

    // Act: with the master held still, secondary1 restarts and a script stores "evil" under
    // key 6 on it; secondary1 is then paused, so the master first hears its new incarnation
    // after it wrote its own key 6.
    c.nodes[0].pause();
    c.nodes[1].kill();
    c.nodes[1].start();
    c.wait_up(1).await;
    let r = c
        .call(
            reqwest::Method::PUT,
            1,
            "/message",
            json!({"key": 6, "value": "evil"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    c.nodes[1].pause();
    c.nodes[0].resume();
    let w3 = c.spawn_append("good", 3);
    wait_until("the master wrote key 6", SECS(10), || async {
        c.last_key().await == 6
    })
    .await;
    c.nodes[1].resume();

    // Assert: the master heard secondary1 back and met its 409 for key 6; the w=3 append is
    // not answered (a moment for a wrong answer to arrive), and secondary1 is counted only up
    // to key 5.
    wait_until("the master met secondary1's 409", SECS(10), || async {
        c.node_health("secondary1").await["error"]
            .as_str()
            .is_some_and(|e| e.contains("409"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let health = c.node_health("secondary1").await;
    assert!(
        !w3.is_finished(),
        "the w=3 append was answered while secondary1 holds {:?} under key 6; the master shows \
         secondary1 as {health}",
        c.messages(1).await.get(5)
    );
    assert_eq!(health["acked_key"], 5, "{health}");
}

/// OneMasterPerEpoch / opening: a master whose power loss took *every* key its previous epoch
/// wrote must still be able to open its own epoch at the same first key.
///
/// Epoch 1 writes a1..a5 (fsynced by a clean stop); epoch 2 opens at key 6 and writes b6..b8;
/// power loss back to a5. Epoch 3 then opens at key 6 again, but the history on disk already
/// ends with `2:6`, and `History::push(3, 6)` refuses a first key that does not grow: every
/// append fails, at every later start too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t91_review_15_a_master_that_lost_every_key_of_its_last_epoch_can_append_again() {
    // Arrange: a master alone, fsync never.
    let mut c = TestCluster::builder(0)
        .with(on_disk())
        .with(toml::toml! {
            [storage]
            fsync = "never"
        })
        .start()
        .await;
    for v in values("a", 1..=5) {
        c.append(&v, 1).await;
    }
    let end_of_a5 = newest_segment_len(&c.data_dir(0));
    // Epoch 2 (a kill -9 loses nothing) writes b6..b8.
    c.nodes[0].kill();
    c.nodes[0].start();
    c.wait_up(0).await;
    c.wait_mode("read-write", SECS(10)).await;
    for v in values("b", 6..=8) {
        c.append(&v, 1).await;
    }
    assert_eq!(c.health(0).await["epochs"], json!([[1, 1], [2, 6]]));

    // Act: power loss back to a5; epoch 3 starts.
    c.nodes[0].kill();
    power_loss_back_to(&c.data_dir(0), end_of_a5);
    c.nodes[0].start();
    c.wait_up(0).await;
    c.wait_mode("read-write", SECS(10)).await;
    assert_eq!(c.last_key().await, 5);

    // Assert: the next append gets key 6.
    let (status, body) = c.post(json!({"value": "c6", "write_concern": 1})).await;
    assert_eq!(
        (status, &body["key"]),
        (201, &json!(6)),
        "{body}\n{:#?}",
        log_lines(&c, &["epoch 3"])
    );
}

/// A counter of the secondary's `/metrics`: replication requests answered `status`.
async fn replicate_answers(c: &TestCluster, i: usize, status: u16) -> u64 {
    let metrics = c.get(i, "/metrics").await.text;
    let want = format!("status=\"{status}\"");
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("replog_replication_requests_received_total")
                && l.contains("endpoint=\"replicate\"")
                && l.contains(&want)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Safe (regression): a master restarting while its old process's request is still being
/// processed by a secondary. The old master (epoch 1) sends x6, which secondary1 delays; the
/// master loses x6 (power loss) and, as epoch 2, gives key 6 to y6, acknowledged at w=2. The
/// old request must never overwrite, or end up beside, the new key 6: the secondary drops a
/// request whose sender went away before it reached the writer (the connection closed), and
/// refuses one of an older epoch that does reach it (`writer::tests`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t91_review_15_a_request_of_a_replaced_master_arriving_late_changes_nothing() {
    // Arrange: m1..m5 on both nodes.
    let mut c = TestCluster::builder(1)
        .with(on_disk())
        .master_with(toml::toml! {
            [storage]
            fsync = "never"
        })
        .start()
        .await;
    for v in values("m", 1..=5) {
        c.append(&v, 2).await;
    }
    let end_of_m5 = newest_segment_len(&c.data_dir(0));

    // Act: x6 (w=1) is replicated in a request secondary1 holds for 8 s; the master loses it.
    c.delay(1, 3.0).await;
    assert_eq!(c.append("x6", 1).await, 6);
    c.wait_log_line(&["secondary1", "delaying replication request"], SECS(5))
        .await;
    c.nodes[0].kill();
    let killed = std::time::Instant::now();
    power_loss_back_to(&c.data_dir(0), end_of_m5);
    c.nodes[0].start();
    c.wait_up(0).await;
    c.wait_mode("read-write", SECS(15)).await;
    let (status, body) = c.post(json!({"value": "y6", "write_concern": 2})).await;

    // Assert: y6 took key 6 on both nodes, and still holds it once the old request's delay is
    // over (a sleep only to show that nothing happens then).
    assert_eq!((status, &body["key"]), (201, &json!(6)), "{body}");
    tokio::time::sleep(SECS(4).saturating_sub(killed.elapsed())).await;
    let mut want = values("m", 1..=5);
    want.push("y6".into());
    c.wait_converged(&want, SECS(10)).await;
    assert_eq!(replicate_answers(&c, 1, 409).await, 0);
    assert_eq!(c.health(1).await["cuts"], json!([]));
}

/// Safe (regression): a secondary bound to no log yet, holding a script's messages, is
/// counted for none of them, and takes the master's log (cutting the script's keys, which no
/// master labels) before it is counted for any key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t91_review_15_an_unbound_secondary_holding_a_scripts_messages_is_cut_to_the_masters_log() {
    // Arrange: the master alone (quorum 1) takes m1..m3; secondary1 is not started.
    let mut c = TestCluster::builder(1)
        .with(on_disk())
        .master_with(toml::toml! {
            [master]
            quorum = 1
        })
        .start_only(&[])
        .start()
        .await;
    for v in values("m", 1..=3) {
        c.append(&v, 1).await;
    }

    // Act: while the master is held still, secondary1 starts empty and a script stores two
    // messages on it under keys 1 and 2.
    c.nodes[0].pause();
    c.nodes[1].start();
    c.wait_up(1).await;
    for k in 1..=2u64 {
        let r = c
            .call(
                reqwest::Method::PUT,
                1,
                "/message",
                json!({"key": k, "value": format!("script{k}")}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    c.nodes[0].resume();
    let (status, body) = c.post(json!({"value": "m4", "write_concern": 2})).await;

    // Assert: m4 was acknowledged by secondary1 holding the master's log, script's keys cut.
    assert_eq!(status, 201, "{body}");
    let want = values("m", 1..=4);
    assert_eq!(c.values(1).await, want);
    assert_eq!(
        c.health(1).await["cuts"],
        json!([{"from_key": 1, "entries": 2}])
    );
}

/// Safe (regression): logs from before epochs existed (no `epochs` file anywhere). The master
/// lost its tail (power loss) and the secondaries hold it: as epoch 1 with an empty history it
/// takes the tail back from them (empty histories agree), then opens its epoch after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t91_review_15_logs_from_before_epochs_recover_a_lost_tail_and_go_on() {
    // Arrange: a1..a5 everywhere; the master's log ends with a3 after a power loss, and no
    // node has an `epochs` file (an earlier build's data directories).
    let mut c = TestCluster::builder(2)
        .with(on_disk())
        .master_with(toml::toml! {
            [storage]
            fsync = "never"
        })
        .start()
        .await;
    let mut want = values("a", 1..=3);
    for v in &want {
        c.append(v, 3).await;
    }
    let end_of_a3 = newest_segment_len(&c.data_dir(0));
    for v in values("a", 4..=5) {
        c.append(&v, 3).await;
        want.push(v);
    }
    for i in 0..=2 {
        c.nodes[i].kill();
        std::fs::remove_file(c.data_dir(i).join("epochs")).expect("remove epochs");
    }
    power_loss_back_to(&c.data_dir(0), end_of_a3);

    // Act: everyone back; one more message at w=3.
    for i in [1, 2, 0] {
        c.nodes[i].start();
        c.wait_up(i).await;
    }
    c.wait_mode("read-write", SECS(15)).await;
    let (status, body) = c.post(json!({"value": "b6", "write_concern": 3})).await;

    // Assert: nothing lost, nothing cut, and every node labels key 6 as epoch 1's.
    assert_eq!((status, &body["key"]), (201, &json!(6)), "{body}");
    want.push("b6".into());
    c.wait_converged(&want, SECS(10)).await;
    for i in 0..=2 {
        let h = c.health(i).await;
        assert_eq!(h["epochs"], json!([[1, 6]]), "{h}");
    }
    assert!(log_lines(&c, &["cut keys"]).is_empty());
}
