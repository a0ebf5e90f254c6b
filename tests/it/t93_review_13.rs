//! Review of issue 13 (failover): sequences of events an adversarial read of the election, the
//! lease, taking office and rejoining suggested could break an invariant of SPEC §11, each
//! reproduced on real processes. A test that showed a bug is kept as its regression test (the
//! fix is named in its doc comment); a sequence found safe keeps its test, with why it holds.
//!
//! Every cluster here has failover on, three members (`master`, `secondary1`, `secondary2`),
//! heartbeats every 200 ms and an election timeout of 1 s, logs on disk, and a node back from
//! an unclean stop stands for no election for 3 s (`master.recovery_wait_ms`).

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::helpers::{
    ClusterBuilder, TestCluster, newest_segment_len, power_loss_back_to, wait_buffered_requests,
    wait_until,
};
use crate::t92_failover::{append_to, post_to};

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn failover_cluster() -> ClusterBuilder {
    crate::t92_failover::failover_cluster().with(toml::toml! {
        // A node back from an unclean stop stands for no election this long (review 13).
        [master]
        recovery_wait_ms = 3000
    })
}

/// The visible log of `nodes`, once they all show the same one (within `timeout`).
async fn converged(c: &TestCluster, nodes: &[usize], timeout: Duration) -> Vec<(u64, String)> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut logs = Vec::new();
        for &i in nodes {
            logs.push(c.messages(i).await);
        }
        if logs.windows(2).all(|w| w[0] == w[1]) {
            return logs.into_iter().next().unwrap_or_default();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the logs of nodes {nodes:?} did not converge within {timeout:?}: {logs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A replication request of master `i` as it would send it now (its log identity, epoch and
/// history), carrying `entries`: the test plays a master whose request is still on its way.
async fn replication_request_of(
    c: &TestCluster,
    i: usize,
    to: usize,
    entries: &[replog::domain::Entry],
) -> reqwest::RequestBuilder {
    let h = c.health(i).await;
    let log_id = h["log_id"].as_str().expect("log_id").to_string();
    let mut rb = c
        .req(reqwest::Method::POST, to, "/replicate")
        .header("content-type", "application/octet-stream")
        .header("x-replog-log-id", log_id)
        .header("x-replog-master", c.url(i))
        .header("x-replog-master-name", c.nodes[i].name.as_str());
    for (k, v) in c.own_epoch_headers(i).await {
        rb = rb.header(k, v);
    }
    rb.body(replog::protocol::encode_batch(entries))
}

/// **Bug, fixed.** A replication request of the master of epoch 1 reaches secondary1 and is held
/// there (`/delay`, or a slow disk or scheduler) while secondary1 is elected master of epoch 2
/// and writes its own key 3 ("c", acknowledged with w=2). When the request goes on, the writer
/// — a master's now — took it as a tail to adopt, adopted nothing (its epoch is open), and the
/// handler answered 200 with secondary1's contiguous key, 3. The old master, resumed or slow to
/// notice it was replaced, counts a 2xx's prefix for the keys it sent (`on_outcome`), so it
/// would acknowledge its own key 3 ("b", w=2) as held by secondary1 — a message acknowledged
/// by a majority that no later master holds. Fix: the writer of a master refuses replicated
/// entries (`Writer::replicate`): 409 with its epoch, nothing counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t93_review_13_a_replication_request_held_across_an_election_is_refused_by_the_new_master()
{
    // Arrange: keys 1 (all) and 2 (master and secondary1); secondary2 is down, so it cannot be
    // elected over secondary1 (its log is shorter).
    let mut c = failover_cluster().start().await;
    assert_eq!(append_to(&c, 0, "a", 3).await, 1);
    c.nodes[2].kill();
    assert_eq!(append_to(&c, 0, "b", 2).await, 2);
    // The master's request for key 3 ("old3") is held on secondary1 for 6 s.
    c.delay(1, 6.0).await;
    let rb = replication_request_of(
        &c,
        0,
        1,
        &[replog::domain::Entry {
            key: 3,
            value: Bytes::from_static(b"old3"),
            id: None,
        }],
    )
    .await;
    let held = tokio::spawn(async move { rb.send().await.map_err(|e| e.to_string()) });
    c.wait_log_line(&["secondary1", "delaying replication request"], SECS(5))
        .await;

    // Act: the master dies; secondary2 comes back; secondary1 is elected and writes key 3.
    c.nodes[0].kill();
    c.nodes[2].start();
    c.wait_up(2).await;
    let m = c.wait_master(&[0], SECS(15)).await;
    assert_eq!(m, 1, "secondary1 (the longer log) is elected");
    assert_eq!(append_to(&c, 1, "c", 2).await, 3);

    // Assert: the held request of epoch 1 is refused, not acknowledged.
    let resp = tokio::time::timeout(SECS(15), held)
        .await
        .expect("answered")
        .expect("task")
        .expect("an answer");
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(
        status, 409,
        "the new master answered a request of the replaced master's epoch {status} ({body}): \
         that master would count it as holding its key 3"
    );
    let log = converged(&c, &[1, 2], SECS(10)).await;
    assert_eq!(
        log,
        vec![(1, "a".into()), (2, "b".into()), (3, "c".into())],
        "{log:?}"
    );
}

/// **Bug, fixed.** The master is stopped (SIGSTOP) for longer than the election timeout; a new
/// master is elected; appends sent to the old one meanwhile wait in its listen queue. When it
/// is resumed, its handlers ran before its term's watch noticed that the lease had run out:
/// `lease_ok`, set by that watch at its last tick before the pause, still said yes, so a w=1
/// append was answered 201 by a master that had been replaced (FAILOVER-NOTES 5; the message
/// is cut when it rejoins). Fix: the lease is judged when an append is admitted, and again
/// before a w below a majority is answered, from when the answered heartbeats were sent
/// (`Failover::lease_holds`), and a heartbeat answered in a higher epoch does not count.
///
/// Also holds, checked here: every message acknowledged with w=2 before the pause survives,
/// and the old master rejoins with the same log as the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t93_review_13_a_master_resumed_after_sigstop_past_the_election_timeout_acknowledges_nothing()
 {
    // Arrange
    let mut c = failover_cluster().start().await;
    for (k, v) in ["a", "b", "c"].iter().enumerate() {
        assert_eq!(append_to(&c, 0, v, 2).await, k as u64 + 1);
    }

    // Act: the master is stopped; another is elected; appends reach the stopped one.
    c.nodes[0].pause_stopped().await;
    let m = c.wait_master(&[0], SECS(15)).await;
    let waiting: Vec<_> = (0..8)
        .map(|n| c.spawn_post(json!({"value": format!("late{n}"), "write_concern": 1})))
        .collect();
    // And a reader asks it whether it is master (the seed-1000 regression's election wait
    // once took its stale "read-write" for the new master).
    let health = {
        let rb = c.client.get(format!("{}/health", c.url(0)));
        tokio::spawn(async move { rb.send().await?.json::<Value>().await })
    };
    // The requests are in the stopped master's socket buffers (the kernel accepts for it).
    wait_buffered_requests(&c.url(0), 9, SECS(10)).await;
    c.nodes[0].resume();
    let mut answers = Vec::new();
    for p in waiting {
        let (r, _) = p.join(SECS(20)).await;
        answers.push((r.status, r.text));
    }
    let health = health
        .await
        .expect("the health request task")
        .expect("the resumed node answers /health");

    // Assert: the deposed master acknowledged none of them.
    assert!(
        answers.iter().all(|(s, _)| *s != 201),
        "a master replaced while it was stopped answered 201 after it resumed: {answers:?}"
    );
    assert!(
        !(health["role"] == "master" && health["mode"] == "read-write"),
        "a master replaced while it was stopped told a reader it is read-write: {health}"
    );
    wait_until("the old master stepped down", SECS(15), || async {
        c.health(0).await["role"] == "secondary"
    })
    .await;
    let log = converged(&c, &[0, 1, 2], SECS(15)).await;
    assert_eq!(
        &log[..3],
        &[(1, "a".into()), (2, "b".into()), (3, "c".into())],
        "master now: node {m}; {log:?}"
    );
}

/// Waits until secondary `i` holds `n` entries aside (beyond a gap).
async fn wait_held_aside(c: &TestCluster, i: usize, n: u64) {
    wait_until(&format!("node {i} holds {n} aside"), SECS(10), || async {
        c.health(i).await["held_aside"] == n
    })
    .await;
}

/// **Bug, fixed.** secondary1 holds key 3 of epoch 1 aside (key 2's request is held by a
/// `/delay`) when it is elected master of epoch 2. It opened its epoch at key 2 (its
/// contiguous key + 1) and kept key 3 of the old master: its first append (key 2) made that
/// entry visible under epoch 2's label — an entry no master of epoch 2 wrote — and its id was
/// unknown to the new master's idempotency index (loaded from the visible log only), so a
/// retry of that id was appended again under key 4: one id, two keys. (Two appends written in
/// one batch would even have met the held entry at key 3 and failed together.) Fix: a node
/// taking office cuts what it holds beyond its contiguous key before it opens its epoch
/// (logged with keys and ids, counted as cut); such an entry was acknowledged by at most a
/// minority (a majority's prefix would reach it, and the election would have chosen a log
/// that holds it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t93_review_13_entries_held_aside_by_an_elected_node_are_cut_not_taken_into_its_epoch() {
    // Arrange: key 1 on the master and secondary1 (secondary2 is down, with no key); key 2 is
    // held up on the way to secondary1, key 3 (id "X") reaches it and waits aside.
    let mut c = failover_cluster().start().await;
    c.nodes[2].kill();
    assert_eq!(append_to(&c, 0, "a", 2).await, 1);
    c.delay(1, 8.0).await;
    assert_eq!(append_to(&c, 0, "b", 1).await, 2);
    let (status, body) = post_to(&c, 0, json!({"value": "c", "write_concern": 1, "id": "X"})).await;
    assert_eq!((status, body["key"].clone()), (201, json!(3)), "{body}");
    wait_held_aside(&c, 1, 1).await;

    // Act: the master dies; secondary2 is back; secondary1 (the longer log) is elected.
    c.nodes[0].kill();
    c.nodes[2].start();
    c.wait_up(2).await;
    assert_eq!(c.wait_master(&[0], SECS(15)).await, 1);
    assert_eq!(append_to(&c, 1, "d", 2).await, 2);
    // The client of "c" retries it (safe with its id) on the new master.
    let (status, retry) =
        post_to(&c, 1, json!({"value": "c", "write_concern": 2, "id": "X"})).await;

    // Assert: one key per id, and both live nodes hold the same log.
    assert!(status == 201 || status == 200, "{status} {retry}");
    let log = converged(&c, &[1, 2], SECS(15)).await;
    let cs: Vec<_> = log.iter().filter(|(_, v)| v == "c").collect();
    assert_eq!(
        cs.len(),
        1,
        "the message of id X is in the log under {} keys: {log:?}",
        cs.len()
    );
    assert_eq!(
        cs[0].0,
        retry["key"].as_u64().expect("key"),
        "the retry is answered with the key its id holds: {retry} {log:?}"
    );
    assert_eq!(log[..2], [(1, "a".into()), (2, "d".into())], "{log:?}");
    // The cut of the held entry is logged with its key and id.
    c.wait_log_line(&["secondary1", "cut entries", "3:X"], SECS(5))
        .await;
}

/// **Bug, fixed.** The node configured `role = "master"` loses its disk while another is the
/// master and comes back empty. `node.role` counts "at the very first start", and an empty
/// data dir looks like one: it made itself master of epoch 1 at once and gave itself a new log
/// identity, so the real master's batches were refused (409, another log) forever — a wiped
/// node never received the log again (SPEC §4) — and, had the cluster still been in epoch 1,
/// its heartbeats in epoch 1 would have kept every member from electing anyone. Fix: with
/// failover, the configured master at its first start stands for election at once (pre-vote
/// first) instead of taking epoch 1: in a new cluster it wins at once, in a running one the
/// members hear their master and refuse, and it joins as a secondary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t93_review_13_a_wiped_master_comes_back_as_a_secondary_and_receives_the_whole_log() {
    // Arrange: two messages; the master dies and another is elected.
    let mut c = failover_cluster().start().await;
    assert_eq!(append_to(&c, 0, "a", 2).await, 1);
    assert_eq!(append_to(&c, 0, "b", 2).await, 2);
    c.nodes[0].kill();
    let m = c.wait_master(&[0], SECS(15)).await;

    // Act: the old master's disk is wiped and it starts again.
    std::fs::remove_dir_all(c.data_dir(0)).expect("wipe");
    c.nodes[0].start();
    c.wait_up(0).await;
    assert_eq!(append_to(&c, m, "c", 2).await, 3);

    // Assert: it is a secondary of the elected master, holding the whole log.
    let log = converged(&c, &[0, 1, 2], SECS(15)).await;
    assert_eq!(
        log,
        vec![(1, "a".into()), (2, "b".into()), (3, "c".into())],
        "{log:?}"
    );
    let h = c.health(0).await;
    assert_eq!(h["role"], "secondary", "{h}");
    assert_eq!(h["master"]["name"], c.nodes[m].name.as_str(), "{h}");
}

/// **Bug, fixed.** The election timeout is a setting of each node, and nothing made it the
/// same on every member: here the master's is 6 s (its lease 4 s), the secondaries' 1 s. The
/// lease argument (a master stops taking appends before anyone may vote for another) needs the
/// master's lease to be shorter than the time a voter waits: the secondaries elected a new
/// master after 1 s without word, and the old one, resumed 2 s after it was stopped, still had
/// its lease and answered w=1 appends 201. Fix: a master's heartbeats carry its election
/// timeout, and a member waits the longer of its own and its master's without word from that
/// master before it stands or votes (`Failover::heard`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t93_review_13_a_master_with_a_longer_election_timeout_than_its_members_is_not_replaced_within_its_lease()
 {
    // Arrange
    let mut c = failover_cluster()
        .master_with(toml::toml! {
            [failover]
            election_timeout_ms = 6000
        })
        .start()
        .await;
    assert_eq!(append_to(&c, 0, "a", 3).await, 1);

    // Act: the master is stopped until another is elected, then appended to and resumed.
    c.nodes[0].pause_stopped().await;
    let stopped = tokio::time::Instant::now();
    let m = c.wait_master(&[0], SECS(20)).await;
    let elected_after = stopped.elapsed();
    let waiting: Vec<_> = (0..8)
        .map(|n| c.spawn_post(json!({"value": format!("late{n}"), "write_concern": 1})))
        .collect();
    wait_buffered_requests(&c.url(0), 8, SECS(10)).await;
    c.nodes[0].resume();
    let mut answers = Vec::new();
    for p in waiting {
        let (r, _) = p.join(SECS(20)).await;
        answers.push((r.status, r.text));
    }

    // Assert: no election within the old master's lease, and no 201 from it after.
    assert!(
        answers.iter().all(|(s, _)| *s != 201),
        "a replaced master answered 201: {answers:?}"
    );
    assert!(
        elected_after >= Duration::from_millis(4000),
        "node {m} was elected {elected_after:?} after the master stopped, within its 4 s lease"
    );
    let log = converged(&c, &[0, 1, 2], SECS(20)).await;
    assert_eq!(log[..1], [(1, "a".into())], "{log:?}");
}

/// Appends `body` to whichever node is the master, following elections: retries on 421 and
/// 503 (electing, taking office) until `timeout`.
async fn append_anywhere(c: &TestCluster, body: Value, timeout: Duration) -> (u16, Value) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let m = c.wait_master(&[], timeout).await;
        let (status, answer) = post_to(c, m, body.clone()).await;
        if !matches!(status, 421 | 503) || tokio::time::Instant::now() > deadline {
            return (status, answer);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// **Safe.** An append with an id waits for w=3 on a master whose secondaries are both
/// stopped; the master steps down and answers 503 with its outcome unknown; the secondaries
/// come back and an election follows (either the old master, whose log is longer, or a
/// secondary wins). The client retries with the same id on whichever is the master: the
/// message ends up in the log exactly once, under the key the retry returns. Holds because
/// the new master's idempotency index is loaded from its whole visible log when it takes
/// office (`Writer::become_master`), and a master that did not hold the first attempt makes
/// every other node cut it when it rejoins (log matching), before the retry is stored again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t93_review_13_a_retry_with_the_same_id_after_outcome_unknown_lands_once_through_a_failover()
 {
    // Arrange
    let mut c = failover_cluster().start().await;
    assert_eq!(append_to(&c, 0, "a", 3).await, 1);
    c.nodes[1].pause_stopped().await;
    c.nodes[2].pause_stopped().await;
    let waiting = c.spawn_post(json!({"value": "x", "write_concern": 3, "id": "X"}));
    let (first, _) = waiting.join(SECS(20)).await;
    assert_eq!(first.status, 503, "{}", first.text);
    // (Refused before a key was assigned only if the lease ran out before it arrived.)
    if first.json["key"].is_u64() {
        assert_eq!(first.json["outcome"], "unknown", "{}", first.text);
    }

    // Act: the secondaries are back; the client retries on the master there is then.
    c.nodes[1].resume();
    c.nodes[2].resume();
    let (status, retry) = append_anywhere(
        &c,
        json!({"value": "x", "write_concern": 2, "id": "X"}),
        SECS(20),
    )
    .await;

    // Assert
    assert!(matches!(status, 200 | 201), "{status} {retry}");
    let key = retry["key"].as_u64().expect("key");
    let log = converged(&c, &[0, 1, 2], SECS(15)).await;
    let xs: Vec<_> = log.iter().filter(|(_, v)| v == "x").collect();
    assert_eq!(xs, vec![&(key, "x".to_string())], "{retry} {log:?}");
    assert_eq!(log[0], (1, "a".into()), "{log:?}");
}

/// **Bug, fixed.** A candidate's vote request in epoch 2 reaches the master of epoch 1, which
/// refuses it but takes epoch 2 (on disk) and steps down at its next look. Its replication
/// requests carried the writer's epoch — 2 by then — not its term's, so the batches it sent in
/// between told the secondaries "the master of epoch 2": they took epoch 2 from it and stored
/// its entries as that epoch's, although another node may be elected master of epoch 2 (and a
/// voter of that election would then ack the old master's keys, which the new one does not
/// hold). Fix: a master's requests carry the epoch of its term, whatever the node has seen
/// since (`ReplicationTask::send`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t93_review_13_a_master_asked_for_a_vote_in_a_later_epoch_never_replicates_in_that_epoch() {
    // Arrange: appends flow from four clients.
    let c = failover_cluster().start().await;
    let stop = stop_flag();
    let mut clients = Vec::new();
    for n in 0..4 {
        let (client, url, stop) = (c.client.clone(), c.url(0), stop.clone());
        clients.push(tokio::spawn(async move {
            for i in 0..100_000u64 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let r = client
                    .post(format!("{url}/message"))
                    .json(&json!({"value": format!("v{n}-{i}"), "write_concern": 1}))
                    .timeout(SECS(5))
                    .send()
                    .await;
                if r.is_err() {
                    break;
                }
            }
        }));
    }
    wait_until("appends flow", SECS(10), || async {
        c.health(0).await["last_key"].as_u64().unwrap_or(0) > 50
    })
    .await;

    // Act: a candidate of epoch 2 asks the master for its vote.
    let vote = json!({"epoch": 2, "candidate": "secondary1", "last_epoch": 1, "last_key": 0, "pre_vote": false});
    let r = c.call(reqwest::Method::POST, 0, "/vote", vote).await;
    assert_eq!(r.json["granted"], false, "{}", r.text);

    // Assert: within the election timeout (before any election of the members could end),
    // no secondary takes epoch 2 from the old master's requests.
    let until = tokio::time::Instant::now() + Duration::from_millis(600);
    let mut seen = Vec::new();
    while tokio::time::Instant::now() < until {
        for i in [1, 2] {
            let h = c.health(i).await;
            if h["epoch"] != 1 {
                seen.push(h.to_string());
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in clients {
        let _ = tokio::time::timeout(SECS(10), t).await;
    }
    assert!(
        seen.is_empty(),
        "secondaries took epoch 2 from the master of epoch 1: {:?}",
        &seen[..seen.len().min(2)]
    );
}

fn stop_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false))
}

/// **Bug, fixed (detected, not prevented by config).** secondary2 is restarted with a member
/// list that names only itself (SPEC §11 asks for the same list on every node; nothing could
/// check it). A majority of its list is itself: stopped for longer than the election timeout
/// and resumed, it elected itself master of epoch 2 before the master's next heartbeat, with
/// no secondaries ("all" = 1), and took appends beside the real master — two masters, and
/// everything it acknowledged cut when the others' next epoch reached it. Fix: votes and a
/// master's heartbeats carry a fingerprint of the sender's member list; a node whose list
/// differs from its master's logs an error and stands for no election, and a member refuses
/// its vote to a candidate with another list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t93_review_13_a_node_with_another_member_list_does_not_elect_itself() {
    // Arrange: secondary2 restarted with a member list of its own.
    let mut c = failover_cluster().start().await;
    assert_eq!(append_to(&c, 0, "a", 3).await, 1);
    let path = c.nodes[2].config.clone();
    let mut cfg: toml::Table = std::fs::read_to_string(&path)
        .expect("config")
        .parse()
        .expect("toml");
    let own = json!([{"name": "secondary2", "url": c.url(2)}]);
    let own: toml::Value = serde_json::from_value(own).expect("members");
    cfg["failover"]
        .as_table_mut()
        .expect("[failover]")
        .insert("members".into(), own);
    std::fs::write(&path, toml::to_string(&cfg).expect("toml")).expect("write config");
    c.nodes[2].kill();
    c.nodes[2].start();
    c.wait_up(2).await;
    c.wait_log_line(&["secondary2", "another failover.members list"], SECS(10))
        .await;

    // Act: secondary2 hears nothing for twice the election timeout.
    c.nodes[2].pause_stopped().await;
    tokio::time::sleep(SECS(2)).await;
    c.nodes[2].resume();

    // Assert: for three election timeouts after, it never takes office, and the master stays.
    let until = tokio::time::Instant::now() + SECS(3);
    while tokio::time::Instant::now() < until {
        let h = c.health(2).await;
        assert_eq!(h["role"], "secondary", "{h}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let h = c.health(0).await;
    assert_eq!(
        (h["role"].clone(), h["epoch"].clone()),
        (json!("master"), json!(1)),
        "{h}"
    );
    assert_eq!(append_to(&c, 0, "b", 2).await, 2);
}

/// **Bug, fixed.** Elections compared logs by the *last epoch of the history*, and a node's
/// history can be ahead of the keys before its last epoch's first: the epochs file is fsynced
/// at once, the entries of the same batch only at the next interval fsync. Here: keys 6..=10
/// are acknowledged with w=2 (the master and secondary1) while secondary2 is down; the master
/// dies; secondary1 is elected (epoch 2, its first key 11) and replicates 6..=10 to secondary2
/// with its history. secondary1 dies, and secondary2 loses power before its interval fsync:
/// it comes back with epoch 2's history but only keys 1..=5. The old master comes back with
/// 1..=10: a holder of every acknowledged message survives. secondary2 — history ending in
/// epoch 2, contiguous key 5 — won the old master's vote over its log (epoch 1, key 10),
/// opened epoch 3 at key 6, and the old master cut 6..=10: five messages acknowledged by a
/// majority, lost. Fix: a log's completeness counts an epoch of its history only once it holds
/// every key before that epoch's first (the rule by which a master counts a secondary as
/// holding its record; `Epochs::held_epoch`): (1, 5) here, less complete than (1, 10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t93_review_13_a_history_ahead_of_the_keys_before_it_does_not_win_an_election() {
    // Arrange: keys 1..=5 everywhere; 6..=10 on the master and secondary1 only (w=2).
    let mut c = failover_cluster().start().await;
    for k in 1..=5u64 {
        assert_eq!(append_to(&c, 0, &format!("a{k}"), 3).await, k);
    }
    c.nodes[2].kill();
    let synced = newest_segment_len(&c.data_dir(2));
    for k in 6..=10u64 {
        assert_eq!(append_to(&c, 0, &format!("b{k}"), 2).await, k);
    }
    // The master dies; secondary2 is back and gets 6..=10 from secondary1, elected in epoch 2.
    c.nodes[0].kill();
    c.nodes[2].start();
    c.wait_up(2).await;
    wait_until("secondary2 holds 6..=10 in epoch 2", SECS(15), || async {
        let h = c.health(2).await;
        h["contiguous_key"] == 10 && h["epochs"].as_array().is_some_and(|e| e.len() == 2)
    })
    .await;

    // Act: secondary1 dies; secondary2 loses power before its entries were fsynced (its
    // epochs file was); the old master and secondary2 come back.
    c.nodes[1].kill();
    c.nodes[2].kill();
    power_loss_back_to(&c.data_dir(2), synced);
    c.nodes[0].start();
    c.nodes[2].start();
    c.wait_up(0).await;
    c.wait_up(2).await;
    let h = c.health(2).await;
    assert_eq!(h["contiguous_key"], 5, "{h}");
    let m = c.wait_master(&[1], SECS(20)).await;

    // Assert: every message acknowledged with w=2 is still there.
    c.nodes[1].start();
    c.wait_up(1).await;
    let (status, body) =
        append_anywhere(&c, json!({"value": "after", "write_concern": 3}), SECS(20)).await;
    assert_eq!(status, 201, "{body}");
    let log = converged(&c, &[0, 1, 2], SECS(20)).await;
    let values: Vec<&str> = log.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(
        values.get(..10),
        Some(&["a1", "a2", "a3", "a4", "a5", "b6", "b7", "b8", "b9", "b10"][..]),
        "elected: node {m}; {log:?}"
    );
}

/// **Bug, fixed.** With failover, an election timeout shorter than two heartbeat intervals
/// (here 300 ms against 200 ms: a lease of 200 ms) was accepted: the lease lapsed between
/// heartbeats, so the master kept turning read-only, and its members stood for election
/// between two heartbeats. Fix: such a setting stops the node at startup, naming it.
#[test]
fn t93_review_13_an_election_timeout_below_two_heartbeat_intervals_stops_the_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = crate::helpers::reserve_ports(1)[0];
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[node]
name = "n1"
role = "master"
listen = "127.0.0.1:{port}"
data_dir = "{dir}/data"
[heartbeat]
interval_ms = 200
[failover]
enabled = true
election_timeout_ms = 300
members = [{{ name = "n1", url = "http://127.0.0.1:{port}" }}]
[log]
file = ""
"#,
            dir = dir.path().display()
        ),
    )
    .expect("write config");
    let mut cmd = std::process::Command::new(crate::helpers::BIN);
    cmd.arg("serve").arg("--config").arg(&config);
    crate::helpers::clean_env(&mut cmd);
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + SECS(15);
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("replog serve kept running with an election timeout below two heartbeats");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    use std::io::Read;
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut stderr).expect("stderr");
    }
    assert!(!status.success(), "{status:?}: {stderr}");
    assert!(stderr.contains("failover.election_timeout_ms"), "{stderr}");
}

/// **Safe.** Two elections in a row: the master dies, secondary1 or secondary2 is elected and
/// writes with w=2, then that master dies too, and the first master comes back. Every message
/// acknowledged with w=2 in either epoch stays, under its key, on every node. Holds because
/// each w=2 acknowledgement needs a majority's contiguous prefix (`docs/failover.md`, rule
/// 5), every election needs a majority of votes from logs no more complete than the winner's
/// (rule 3), and the two majorities meet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t93_review_13_two_elections_in_a_row_keep_every_message_acknowledged_by_a_majority() {
    // Arrange
    let mut c = failover_cluster().start().await;
    assert_eq!(append_to(&c, 0, "a", 2).await, 1);
    assert_eq!(append_to(&c, 0, "b", 2).await, 2);

    // Act: the master dies; the next one writes and dies; the first comes back.
    c.nodes[0].kill();
    let m1 = c.wait_master(&[0], SECS(15)).await;
    assert_eq!(append_to(&c, m1, "c", 2).await, 3);
    assert_eq!(append_to(&c, m1, "d", 2).await, 4);
    c.nodes[m1].kill();
    c.nodes[0].start();
    c.wait_up(0).await;
    let m2 = c.wait_master(&[m1], SECS(20)).await;
    assert_eq!(append_to(&c, m2, "e", 2).await, 5);
    c.nodes[m1].start();
    c.wait_up(m1).await;

    // Assert
    let log = converged(&c, &[0, 1, 2], SECS(20)).await;
    let want: Vec<(u64, String)> = ["a", "b", "c", "d", "e"]
        .iter()
        .enumerate()
        .map(|(k, v)| (k as u64 + 1, v.to_string()))
        .collect();
    assert_eq!(log, want, "masters: node {m1}, then node {m2}");
    for i in 0..3 {
        assert!(c.health(i).await["epoch"].as_u64() >= Some(3), "node {i}");
    }
}

/// **Bug, fixed.** Under `storage.fsync = "interval"` (the default) an elected master counts
/// itself for a key once written, before it is fsynced. Here the master of epoch 2 writes key
/// 4 (w=2: itself and the other secondary), then loses power before its fsync and comes back
/// with keys 1..=3; the old master of epoch 1 comes back too, with 1..=3. The restarted master
/// stood at once (it had voted for itself), won the old master's vote ((2, 3) against
/// (1, 3)) and opened epoch 3 at key 4, so the secondary holding key 4 — acknowledged by a
/// majority, and still held by a live node — cut it. (A fixed master waits for its
/// secondaries after an unclean stop and takes back such a tail; with failover nothing is
/// adopted.) Fix: a node back from an unclean stop whose log is not fsynced on every write
/// stands for no election for `master.recovery_wait_ms`: a member holding more is elected
/// first, and the node takes its log from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t93_review_13_a_master_back_from_a_power_loss_does_not_win_over_a_holder_of_its_lost_tail()
{
    // Arrange: keys 1..=3 everywhere; the master dies, another is elected.
    let mut c = failover_cluster().start().await;
    for k in 1..=3u64 {
        assert_eq!(append_to(&c, 0, &format!("a{k}"), 3).await, k);
    }
    c.nodes[0].kill();
    let m = c.wait_master(&[0], SECS(15)).await;
    let synced = newest_segment_len(&c.data_dir(m));
    assert_eq!(append_to(&c, m, "k4", 2).await, 4);

    // Act: the new master loses power before key 4 was fsynced; it and the old master restart.
    c.nodes[m].kill();
    power_loss_back_to(&c.data_dir(m), synced);
    c.nodes[m].start();
    c.nodes[0].start();
    c.wait_up(m).await;
    c.wait_up(0).await;

    // Assert: key 4 stays.
    let (status, body) =
        append_anywhere(&c, json!({"value": "after", "write_concern": 3}), SECS(30)).await;
    assert_eq!(status, 201, "{body}");
    let log = converged(&c, &[0, 1, 2], SECS(20)).await;
    let values: Vec<&str> = log.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(
        values.get(..4),
        Some(&["a1", "a2", "a3", "k4"][..]),
        "the power-lost master was node {m}; {log:?}"
    );
}
