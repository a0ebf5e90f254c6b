//! Adversarial review of the failover changes of this round (`git diff e3b525b..a37bbae`):
//! `/health` and `/events` judging a master's lease afresh, `/fault` on a master,
//! `replog append` passing over the URLs again while no master is in office, rule 9 (a node
//! back from an unclean stop with a log not fsynced on every write refuses votes and
//! pre-votes for `master.recovery_wait_ms`, and stands an election timeout after that), and
//! the 421 of a node that knows no master.
//!
//! Each test's doc comment says **Bug** (the test failed; ignored while open, with the fix
//! proposed), **Bug, fixed** (failed before the fix, now on) or **Found safe** (the test
//! passes, and why). The power
//! losses are those of `t95_failover_model.rs`: kill -9, then the newest segment cut back to
//! the length it had before the unsynced write (`power_loss_back_to`).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{
    TestCluster, newest_segment_len, on_disk, power_loss_back_to, run_cli, wait_until,
};

/// A failover cluster of three on disk (`fsync = "interval"`, the default) with this election
/// timeout and recovery wait on every node.
pub(crate) async fn disk_failover_cluster(
    election_timeout_ms: i64,
    recovery_wait_ms: i64,
) -> TestCluster {
    let mut t = toml::Table::new();
    t.insert(
        "failover".into(),
        toml::Value::Table(toml::toml! { election_timeout_ms = election_timeout_ms }),
    );
    t.insert(
        "master".into(),
        toml::Value::Table(toml::toml! { recovery_wait_ms = recovery_wait_ms }),
    );
    TestCluster::builder(2)
        .failover()
        .with(on_disk())
        .with(t)
        .start()
        .await
}

/// A failover cluster on disk (`fsync = "interval"`, the default) with these election
/// timeout and recovery wait on every node; "a" on every node, then "k" acknowledged with
/// w = 2 by the master and secondary1 while the batch to secondary2 is held up (`/delay`).
/// Returns the cluster and the master's segment length before "k" (what a power loss keeps).
pub(crate) async fn k_held_by_master_and_secondary1(
    election_timeout_ms: i64,
    recovery_wait_ms: i64,
) -> (TestCluster, u64) {
    let c = disk_failover_cluster(election_timeout_ms, recovery_wait_ms).await;
    assert_eq!(c.append("a", 3).await, 1);
    c.delay(2, 60.0).await;
    let synced = newest_segment_len(&c.data_dir(0));
    assert_eq!(crate::t92_failover::append_to(&c, 0, "k", 2).await, 2);
    (c, synced)
}

/// Stops node `i` cleanly (SIGTERM) and waits for it to exit.
pub(crate) fn stop_cleanly(c: &mut TestCluster, i: usize) {
    let pid = c.nodes[i].pid();
    // SAFETY: kill(2) on a child process the test spawned and has not reaped.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    assert!(
        c.nodes[i].wait_exit(Duration::from_secs(15)).is_some(),
        "{} did not stop on SIGTERM",
        c.nodes[i].name
    );
}

/// Node `i`'s `/health`, `Null` if it does not answer within a second.
pub(crate) async fn health_of(c: &TestCluster, i: usize) -> Value {
    match c
        .client
        .get(format!("{}/health", c.url(i)))
        .timeout(Duration::from_secs(1))
        .send()
        .await
    {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// Waits up to `timeout` for one of `among` to say it is the master (in any mode): an
/// election among them ended. Returns it, or `None` if none did.
pub(crate) async fn elected_among(
    c: &TestCluster,
    among: &[usize],
    timeout: Duration,
) -> Option<usize> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        for &i in among {
            if health_of(c, i).await["role"] == "master" {
                return Some(i);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Once a master is in office again and secondary1 (which held "k") has caught up with it:
/// asserts that "k" is at key 2 in both logs.
async fn assert_k_survived(c: &TestCluster) {
    assert_k_survived_on(c, &[1]).await;
}

/// Once a master is in office and each of `nodes` holds its log: asserts that "k" is at key 2
/// there.
pub(crate) async fn assert_k_survived_on(c: &TestCluster, nodes: &[usize]) {
    let m = c.wait_master(&[], Duration::from_secs(30)).await;
    wait_until(
        &format!("nodes {nodes:?} hold the master's log"),
        Duration::from_secs(20),
        || async {
            let want = c.messages(m).await;
            for &i in nodes {
                if c.messages(i).await != want {
                    return false;
                }
            }
            true
        },
    )
    .await;
    let log = c.messages(m).await;
    assert_eq!(
        log.get(1),
        Some(&(2, "k".to_string())),
        "elected: {}; its log: {log:?}; cuts: {}",
        c.nodes[m].name,
        c.app_log()
            .lines()
            .filter(|x| x.contains("cut keys") || x.contains("voted for"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
}

/// **Bug, fixed** (a stop while holding back is recorded as unclean: `WriterOptions::
/// keep_unclean`, set until the node has caught up) (rule 9's hold was forgotten across a clean restart). The hold lives in memory only
/// (`Failover::hold_until`, from `!store.last_stop_clean()` at this start), and a clean stop
/// writes `CLEAN` whatever the node still lacks. So a node back from a power loss that is
/// stopped cleanly while it holds back (an operator restarting it because it "does nothing",
/// `systemctl restart`, a rolling upgrade) comes back with no hold at all: the tail it lost is
/// still lost, but it votes (and, the master of its last epoch, stands at once). The sequence
/// is t95's (a w = 2 "k" held by the master and secondary1; the master loses power; secondary1
/// away for seconds, far less than the recovery wait of 10 s) with one SIGTERM + start of the
/// master in between: the master and secondary2, neither holding "k", elect one of them, and
/// secondary1 cuts "k" when it comes back. Fails 3 of 3 runs.
///
/// **Fix proposed**: make the hold durable: on an unclean start write its end (or a
/// "holding" marker) to disk, fsynced before the node answers a vote, and keep it across clean
/// stops until the wait has run its course *while the node was up* (or the node holds the
/// record of an epoch above the one it came back in, the model's condition); `mark_clean_stop`
/// must not end it. Simplest: while the hold runs, the clean stop does not write `CLEAN`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_a_clean_restart_while_holding_back_does_not_end_the_hold() {
    // Arrange
    let (mut c, synced) = k_held_by_master_and_secondary1(1000, 10_000).await;

    // Act: secondary1 away; the master loses power and comes back (holding back), is
    // restarted cleanly at once, and an election may follow.
    c.nodes[1].pause();
    c.nodes[0].kill();
    power_loss_back_to(&c.data_dir(0), synced);
    c.nodes[0].start();
    c.wait_up(0).await;
    assert!(
        c.nodes[0]
            .output()
            .contains("stands for no election and votes in none"),
        "the master holds back after its power loss"
    );
    stop_cleanly(&mut c, 0);
    c.nodes[0].start();
    c.wait_up(0).await;
    // secondary1 stays away until the other two elected one of them (as they do now), or for
    // five election timeouts, far less than the recovery wait.
    let elected = elected_among(&c, &[0, 2], Duration::from_secs(5)).await;
    c.nodes[1].resume();

    // Assert
    eprintln!("elected while secondary1 was away: {elected:?}");
    assert_k_survived(&c).await;
}

/// **Bug, fixed** (rule 9's survey and floor: a held node learns each member's log from its
/// `/heartbeat` and, until it has caught up with a master, votes and stands only for a log at
/// least as complete as the best it heard within `master.recovery_wait_ms`; failed 3 of 3 runs
/// before it, as below) (rule 9's wait is not tied to the election timeouts; a node now warns at
/// startup when the wait is below 1.5 x its own election timeout + the heartbeat timeout, but
/// the members' timeouts differ here, so each node's own check passes). The hold ends after
/// `master.recovery_wait_ms` whatever happened meanwhile; the argument for it ("a member
/// holding the tail is elected first") needs that member to *stand* within the wait, i.e. its
/// election timeout (and jitter) to end before the wait does. Nothing checks that: election
/// timeouts are per node, and `recovery_wait_ms` is a separate setting. Here the master
/// (election timeout 1 s) loses power with "k" (w = 2) held by secondary1 (its own timeout
/// 4 s, with a recovery wait of 1 s everywhere); no node is paused or slow. secondary2 (1 s,
/// never had "k") stands first: refused while the master holds back, it stands again once the
/// hold is over, has the master's vote, and is elected; secondary1 cuts "k". With one election
/// timeout for all and a wait below 1.5 of it the same happens at random (whichever of the two
/// secondaries' jittered timers ends first after the hold). Fails 3 of 3 runs.
///
/// **Fix proposed** (then): at startup refuse (or raise, with a warning) a `recovery_wait_ms` below
/// 1.5 × the election timeout + `heartbeat.timeout_ms` when failover is on and fsync is not
/// `always`, and say in SPEC/README that members' election timeouts must not exceed 2/3 of
/// every member's recovery wait; better, hold until the node has heard a master of an epoch
/// above the one it came back in (the model's condition) with the time as a fallback only
/// (a whole-cluster power loss), and let a held node count the largest election timeout it
/// has seen in heartbeats (`x-replog-election-timeout-ms`) into its wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_a_recovery_wait_shorter_than_the_holders_election_timeout_loses_a_majority_ack() {
    master_loses_power_while_secondary1_has_a_longer_election_timeout(1000).await;
}

/// **Found safe** (the control of the test above): the same cluster and power loss with a
/// recovery wait of 10 s, above 1.5 × secondary1's election timeout of 4 s. secondary2 stands
/// first and is refused (by the master, holding back, and by secondary1, whose longer
/// timeout has not run out: it heard the master recently); secondary1 stands and wins with
/// secondary2's vote (its log is more complete); "k" stays. So what breaks the test above
/// is the wait, not the timeouts alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_a_recovery_wait_above_the_holders_election_timeout_keeps_the_majority_ack() {
    master_loses_power_while_secondary1_has_a_longer_election_timeout(10_000).await;
}

/// The sequence of the two tests above, with this recovery wait on every node.
async fn master_loses_power_while_secondary1_has_a_longer_election_timeout(recovery_wait_ms: i64) {
    // Arrange: secondary1's election timeout is 4 s (restarted cleanly with it: no hold).
    let (mut c, synced) = k_held_by_master_and_secondary1(1000, recovery_wait_ms).await;
    stop_cleanly(&mut c, 1);
    let path = c.nodes[1].config.clone();
    let mut conf: toml::Table = std::fs::read_to_string(&path)
        .expect("config")
        .parse()
        .expect("toml");
    conf["failover"]
        .as_table_mut()
        .expect("[failover]")
        .insert("election_timeout_ms".into(), toml::Value::Integer(4000));
    std::fs::write(&path, toml::to_string(&conf).expect("toml")).expect("write config");
    c.nodes[1].start();
    c.wait_up(1).await;
    c.wait_status("secondary1", "healthy", Duration::from_secs(10))
        .await;

    // Act: the master loses power and comes back at once; nobody is paused.
    c.nodes[0].kill();
    power_loss_back_to(&c.data_dir(0), synced);
    c.nodes[0].start();
    c.wait_up(0).await;

    // Assert
    assert_k_survived(&c).await;
}

/// **Bug, fixed** (a node started with an empty log votes above epoch 1 only once it heard
/// from a master, or after `master.recovery_wait_ms`: `Failover::fresh_hold`) (a wiped member
/// voted at once). A wiped node is a node back with none of what it
/// held: its log, its votes, its epoch. `last_stop_clean` is true for a new directory, so
/// rule 9 does not hold it back, and it votes at once, for any log (its own is empty). It is
/// t95's sequence with the master's data directory removed instead of its unsynced tail cut:
/// "k" (w = 2) held by the master and secondary1; the master wiped and restarted; secondary1
/// away (SIGSTOP) for seconds; secondary2, which never had "k", is elected with the wiped
/// master's vote and secondary1 cuts "k". (It breaks "nothing acknowledged with w >= majority
/// is lost" with one node wiped and another paused for seconds; Raft has the same hazard,
/// which is why a member that lost its disk must rejoin without a vote.) Fails 3 of 3 runs.
/// A wiped member also forgets its vote in the current epoch, so it can give a second one in
/// an epoch it voted in (two masters in one epoch); not reproduced here.
///
/// **Fix proposed**: a node whose log was created at this start (no `epochs` file) grants no
/// vote or pre-vote for an epoch above 1 until it has heard a master (or held the record of an
/// epoch): a new cluster's first election (epoch 1, the configured master) still works, and a
/// wiped member of a running cluster waits to be refilled — as rule 9's hold, with the same
/// time fallback so that a whole new cluster whose first election failed is not stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_a_wiped_master_does_not_vote_a_member_without_its_tail_into_office() {
    // Arrange
    let (mut c, _) = k_held_by_master_and_secondary1(1000, 10_000).await;

    // Act: secondary1 away; the master is wiped and restarted.
    c.nodes[1].pause();
    c.nodes[0].kill();
    std::fs::remove_dir_all(c.data_dir(0)).expect("wipe");
    c.nodes[0].start();
    c.wait_up(0).await;
    let elected = elected_among(&c, &[0, 2], Duration::from_secs(5)).await;
    c.nodes[1].resume();

    // Assert
    eprintln!("elected while secondary1 was away: {elected:?}");
    assert_k_survived(&c).await;
}

/// **Found safe** (liveness after a whole-cluster unclean restart). Every member is killed
/// (-9) under `fsync = "interval"` and all restart together: each holds back (no vote, no
/// candidacy) for `recovery_wait_ms` and stands an election timeout after that, so no master
/// for the whole wait (documented: "while every member is held back nobody is elected until
/// the wait ends"), and one in office within the wait + 1.5 election timeouts (a split
/// vote's retry) + 2 s. Nothing is lost: every message acknowledged before is in the new
/// master's log. It does not block forever: the hold is a deadline from each start.
/// Seen here: a master 3.23-3.25 s after the restart with a wait of 2 s and timeouts of 1 s,
/// the first candidate (the node started first) winning at start + 3.0 s. (Note, from the
/// code, not seen: the hold's deadline `hold + election_timeout` has no jitter and takes over
/// the jittered timer (`max`), so nodes started within the same millisecond would stand
/// together and split the first round; the retry's jitter separates them. Here the start
/// order, tens of ms apart, did. Adding the jitter to that deadline too would save it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_every_member_back_from_kill_9_elects_a_master_after_the_wait() {
    // Arrange
    let (wait_ms, timeout_ms) = (2000u64, 1000u64);
    let mut c = TestCluster::builder(2)
        .failover()
        .with(on_disk())
        .with(toml::toml! {
            [failover]
            election_timeout_ms = 1000

            [master]
            recovery_wait_ms = 2000
        })
        .start()
        .await;
    for (k, v) in ["a", "b", "c"].iter().enumerate() {
        assert_eq!(c.append(v, 2).await, k as u64 + 1);
    }

    // Act: the whole cluster dies at once and restarts together.
    for i in 0..3 {
        c.nodes[i].kill();
    }
    let restarted = Instant::now();
    for i in 0..3 {
        c.nodes[i].start();
    }
    let m = c.wait_master(&[], Duration::from_secs(30)).await;
    let took = restarted.elapsed();

    // Assert
    eprintln!("a master in office {took:?} after the restart");
    assert!(
        took >= Duration::from_millis(wait_ms),
        "elected {took:?} after the restart, inside the recovery wait"
    );
    assert!(
        took <= Duration::from_millis(wait_ms + timeout_ms * 3 / 2 + 2000),
        "elected only {took:?} after the restart"
    );
    assert_eq!(
        c.values(m).await,
        ["a", "b", "c"].map(String::from).to_vec()
    );
    let r = c
        .call(
            reqwest::Method::POST,
            m,
            "/message",
            json!({"value": "d", "write_concern": 3}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

/// **Found safe** (`replog append` passing over the URLs again, change 3: a 503 "taking
/// office" is retried, and the append lands once). The master is killed with a one-shot
/// `/delay` of 3 s armed on both secondaries, so whichever is elected answers appends 503
/// "taking office" for about 3 s (its first batch to the other is held up, and no majority
/// holds its record). `replog append` without an id, started then, meets a refused connection
/// (the old master), a 421 or a 503 "taking office" — each a refusal with nothing appended
/// (`post_message` answers "taking office" before it touches the writer; `is_connect` is set
/// only when no connection was made, so no request was half-sent) — passes again, and
/// appends once, when the new master takes office. The value is in the log exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_replog_append_retries_a_master_taking_office_and_appends_once() {
    // Arrange
    let mut c = TestCluster::builder(2).failover().start().await;
    assert_eq!(c.append("a", 3).await, 1);
    c.delay(1, 3.0).await;
    c.delay(2, 3.0).await;
    let urls = (0..3).map(|i| c.url(i)).collect::<Vec<_>>().join(",");

    // Act: the master dies; once a new one is elected (taking office), the append is sent.
    c.nodes[0].kill();
    let elected = elected_among(&c, &[1, 2], Duration::from_secs(10))
        .await
        .expect("a master elected");
    let mode = health_of(&c, elected).await["mode"].clone();
    let out = run_cli(&["append", "x", "-w", "2", "--master", &urls]).await;

    // Assert
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("mode when the append was sent: {mode}; stderr: {stderr}");
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2", "{stderr}");
    let m = c.wait_master(&[0], Duration::from_secs(15)).await;
    assert_eq!(m, elected);
    wait_until(
        "both live nodes hold the same log",
        Duration::from_secs(15),
        || async { c.messages(1).await == c.messages(2).await },
    )
    .await;
    assert_eq!(c.values(m).await, ["a", "x"].map(String::from).to_vec());
}

/// **Bug, fixed** (rule 9's survey and floor: a held node learns each member's log from its
/// `/heartbeat` and, until it has caught up with a master, votes and stands only for a log at
/// least as complete as the best it heard within `master.recovery_wait_ms`; failed 3 of 3 runs
/// before it, as below) (two nodes holding back at once: the holds end at a fixed time, and the two held
/// nodes can then elect one of them before the member holding the tail wins a round). The
/// master loses power with "k" (w = 2) held by secondary1 only, and secondary2 (which never had
/// "k") is killed (-9) at the same moment; both come back and hold back for the wait of 6 s.
/// secondary1, up all along, stands again and again and is refused by both (each holds back).
/// When their holds end both vote again, and each stands one election timeout later. If
/// secondary1 is not standing in that one timeout — its retries after a refused pre-vote are
/// an election timeout plus a jitter of up to half of it apart, so by the code's arithmetic
/// this happens at random in a fraction of runs with every node up, and here it is away
/// (SIGSTOP) from 0.2 s before the holds end until an election is over, about 1.3 s, far less
/// than the wait — the master (or secondary2) pre-votes, the other held node grants (equal
/// logs), and it is elected without "k"; secondary1 cuts it. The model does not see this: there
/// a node back from a kill -9 ends its hold at once (it lost nothing) and a hold ends when the
/// node is refilled, not at a time. The README's exception ("unless every other node holding it
/// stays away for the whole recovery wait") does not cover it. Fails 3 of 3 runs.
///
/// **Fix proposed**: a held node's refusal says until when it holds back (`VoteReply`, e.g.
/// `held_until_ms`), and a candidate refused by held-back members stands again right when the
/// first of those holds ends (plus a short jitter), rather than an election timeout later; and
/// a held node stands only `1.5 × election_timeout + heartbeat.timeout` after its hold ends
/// (with a jitter), so the member holding the tail has had a whole round first. Even so, a
/// member holding the tail that is away just then loses it: the sound fix is to end the hold
/// only on hearing a master of a later epoch (the model's condition), with the time fallback
/// only for nodes that heard no member at all during it (a whole-cluster power loss).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_two_nodes_holding_back_at_once_do_not_elect_one_of_them_over_the_tail_holder() {
    // Arrange
    let wait = Duration::from_millis(6000);
    let (mut c, synced) = k_held_by_master_and_secondary1(1000, 6000).await;

    // Act: the master loses power and secondary2 is killed at once; both restart (holding
    // back); secondary1 is away from just before the holds end until an election is over.
    c.nodes[0].kill();
    c.nodes[2].kill();
    power_loss_back_to(&c.data_dir(0), synced);
    let restarted = tokio::time::Instant::now();
    c.nodes[0].start();
    c.nodes[2].start();
    c.wait_up(0).await;
    c.wait_up(2).await;
    // A fault's schedule (secondary1 away from then), not a wait for a condition.
    tokio::time::sleep_until(restarted + wait - Duration::from_millis(200)).await;
    assert!(
        health_of(&c, 1).await["role"] != "master",
        "secondary1 was elected during the holds"
    );
    c.nodes[1].pause();
    let paused = Instant::now();
    let elected = elected_among(&c, &[0, 2], Duration::from_secs(4)).await;
    c.nodes[1].resume();

    // Assert
    eprintln!(
        "elected while secondary1 was away ({:?}): {elected:?}",
        paused.elapsed()
    );
    assert_k_survived(&c).await;
}

/// **Bug, fixed** (as the wiped master's above: `Failover::fresh_hold`) (a wiped member
/// forgot its vote: two masters in one epoch). Under
/// `fsync = "always"` (no hold after kill -9, so only the wipe is at play): secondary2 is
/// down (killed: paused, it would take epoch 2 from the vote requests queued in its socket
/// when resumed, and stand in epoch 3 — tried first, found safe that way); the master is killed and restarted; it and secondary1 elect one of them, X, in
/// epoch 2 with the other's vote, Y. X is paused; Y is wiped (its `epochs` file, with its vote
/// in epoch 2, is gone) and restarted; secondary2 is restarted, stands in epoch 2 (its epoch is
/// still 1) and Y grants its vote again in epoch 2: secondary2 is elected master of epoch 2,
/// as X was. SPEC §11 / the design's "at most one master per epoch" is broken (each logs
/// "elected master in epoch 2"); the two histories then both claim epoch 2. Fails 3 of 3
/// runs.
///
/// **Fix proposed**: as for the wiped master above — a node whose log was created at this
/// start grants no vote or pre-vote for an epoch above 1 until it has heard a master of the
/// cluster; a new cluster's first election (epoch 1) is unaffected.
///
/// **Limit of the fix as built**: the hold also ends after `master.recovery_wait_ms`, so that
/// a wiped member whose vote is needed does not stall the cluster for ever; X paused for
/// longer than that still lets Y vote again in epoch 2 (seen once in CI, 2026-12-01, when
/// this test's window equalled the wait). Nothing Y can ask tells it the epochs it voted in:
/// only X knows, and X is away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_a_wiped_member_does_not_vote_twice_in_one_epoch() {
    // Arrange: fsync always (no rule 9 hold); "a" everywhere; secondary2 down.
    let mut c = TestCluster::builder(2)
        .failover()
        .with(on_disk())
        .with(toml::toml! {
            [failover]
            election_timeout_ms = 1000

            [storage]
            fsync = "always"

            // The wiped node's hold (`Failover::fresh_hold`) lasts this long; the test's
            // window for a second master (10 s) must end well inside it. With the default of
            // 10 s the two ran out together, and secondary2, standing every second, was
            // elected with Y's vote just after the hold in one CI run: the time bound of the
            // fix, not a failure of it (docs/failover.md, rule 9, "the cost").
            [master]
            recovery_wait_ms = 20000
        })
        .start()
        .await;
    assert_eq!(c.append("a", 3).await, 1);
    c.nodes[2].kill();
    c.nodes[0].kill();
    c.nodes[0].start();
    c.wait_up(0).await;
    let x = c.wait_master(&[], Duration::from_secs(15)).await;
    let y = 1 - x;
    assert_eq!(health_of(&c, x).await["epoch"], json!(2));

    // Act: X away; Y wiped and restarted; secondary2 back (still in epoch 1).
    c.nodes[x].pause();
    c.nodes[y].kill();
    std::fs::remove_dir_all(c.data_dir(y)).expect("wipe");
    c.nodes[y].start();
    c.wait_up(y).await;
    c.nodes[2].start();
    c.wait_up(2).await;
    let second = elected_among(&c, &[2], Duration::from_secs(10)).await;
    let epoch = health_of(&c, 2).await["epoch"].clone();
    c.nodes[x].resume();

    // Assert
    let elected_in_2: Vec<String> = c
        .app_log()
        .lines()
        .filter(|l| l.contains("elected master in epoch 2 "))
        .map(|l| l.split_whitespace().nth(2).unwrap_or_default().to_string())
        .collect();
    eprintln!(
        "secondary2 elected: {second:?} in epoch {epoch}; elected in epoch 2: {elected_in_2:?}"
    );
    assert!(
        elected_in_2.len() <= 1,
        "two masters of epoch 2: {elected_in_2:?} (X = {}, Y = {} wiped)",
        c.nodes[x].name,
        c.nodes[y].name
    );
}

/// **Bug, fixed** (rule 9's survey and floor: a held node learns each member's log from its
/// `/heartbeat` and, until it has caught up with a master, votes and stands only for a log at
/// least as complete as the best it heard within `master.recovery_wait_ms`; failed 3 of 3 runs
/// before it, as below) (the member holding the tail holds back too, so it is the last to stand). The
/// master loses power with "k" (w = 2) and secondary1, holding "k", is killed (-9: it loses
/// nothing) at the same moment; both restart, the master first (secondary1 about 0.1-0.3 s
/// later: the master's `wait_up`), and nobody is paused or slow. Both hold back for the wait of
/// 3 s. When the master's hold ends it votes again, for any log as complete as its own
/// (which lost "k"), and stands itself `hold + election_timeout` after its start; secondary2
/// (never held, never had "k") retries its candidacy every election timeout + jitter all
/// along; secondary1 stands only `hold + election_timeout` after its own, later, start. So
/// secondary2 (with the master's vote; seen 2 of 3 runs) or the master (with secondary2's;
/// 1 of 3) is elected without "k", secondary1 refusing in vain, and secondary1 cuts "k". One
/// power loss and one crash, no member away: outside the README's exception. Fails 3 of 3
/// runs.
///
/// **Fix proposed** (covers this test and the three other rule 9 tests above except the clean
/// restart, which also needs the hold to be durable): during its hold a node asks every member
/// for its completeness (rule 3's pair; `/health` or a pre-vote answer can carry it) and,
/// until it hears a master of a later epoch, grants votes and pre-votes only to a candidate at
/// least as complete as the most complete member it heard from since its unclean start, and
/// stands only if it is itself that complete. Here the master sees secondary1's (1, 2) during
/// its hold and refuses secondary2's (1, 1); secondary1 is elected once it stands. The time
/// of the hold then only bounds how long it waits for members that do not answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_a_tail_holder_back_from_kill_9_with_the_power_lost_master_keeps_the_majority_ack() {
    // Arrange
    let (mut c, synced) = k_held_by_master_and_secondary1(1000, 3000).await;

    // Act: the master loses power and secondary1 is killed at once; both restart.
    c.nodes[0].kill();
    c.nodes[1].kill();
    power_loss_back_to(&c.data_dir(0), synced);
    c.nodes[0].start();
    c.wait_up(0).await;
    c.nodes[1].start();
    c.wait_up(1).await;

    // Assert
    assert_k_survived(&c).await;
}
