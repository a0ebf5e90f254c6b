//! A damaged tail at the node level (SPEC §6: "a torn or corrupt tail is detected and cut at
//! startup, never served"): the node is stopped with SIGKILL, the last record of its last
//! segment is cut in half, has a bit flipped, or gets garbage after it; restarted, the node
//! starts, logs the cut, serves the intact prefix, and the master refills what is missing.
//!
//! Damage in a sealed (earlier, fsynced) segment is not a torn write but lost data: the node
//! refuses to start and points at `replog check`.
//!
//! On the master a cut tail is a lost acknowledged append (only power loss or a bad disk does
//! this; kill -9 does not). When the cut keys never left the master (w=1 appends while the
//! secondaries were down) nobody else holds them, and the master reusing those keys is
//! correct. When the secondaries do hold them, the master must not hand the same keys to other
//! messages: see `d30_master_that_lost_replicated_keys_does_not_reuse_them`.

use std::time::Duration;

use serde_json::json;

use crate::support::{
    Damage, damage_last_segment, data_dir, disk_cluster, health_u64, last_segment, records,
    replog_check, segments, values, wait_output_line,
};

const SECS: fn(u64) -> Duration = Duration::from_secs;
const N: usize = 40;

/// Small segments, so the damage is in the last of several.
fn small_segments() -> toml::Table {
    toml::toml! {
        [storage]
        segment_bytes = 4096
    }
}

async fn secondary_with_damaged_tail_is_cut_serves_the_rest_and_is_refilled(how: Damage) {
    // Arrange: N messages of ~200 bytes everywhere (w=3), in several segments.
    let mut c = disk_cluster(2).with(small_segments()).start().await;
    let vals = values("m", N, 200);
    for v in &vals {
        c.append(v, 3).await;
    }

    // Act: pause the master (so that what secondary1 serves after its restart is what it
    // recovered, not what the master sent it since), kill secondary1, damage its last
    // segment, restart it.
    c.nodes[0].pause();
    c.nodes[1].kill();
    let dir = data_dir(&c, 1);
    assert!(segments(&dir).len() >= 2, "the log spans several segments");
    let broken = damage_last_segment(&dir, how);
    c.nodes[1].start();
    c.wait_up(1).await;

    // Assert: it started, logged the cut, and serves exactly the intact prefix.
    let line = wait_output_line(&c, 1, &["startup recovery", "cut a damaged tail"], SECS(10)).await;
    let intact = match how {
        Damage::GarbageTail => {
            assert!(broken.is_empty());
            N
        }
        _ => {
            assert_eq!(broken, vec![N as u64], "the last record holds the last key");
            N - 1
        }
    };
    assert!(
        line.contains(&format!("visible log 1..={intact}")),
        "{how:?}: {line}"
    );
    assert_eq!(
        c.values(1).await,
        vals[..intact],
        "{how:?}: the intact prefix"
    );
    assert_eq!(health_u64(&c, 1, "contiguous_key").await, intact as u64);

    // … and the master refills it to the full log.
    c.nodes[0].resume();
    c.wait_converged(&vals, SECS(20)).await;
    c.wait_lag_zero("secondary1", SECS(10)).await;
    assert_eq!(c.append("after", 3).await, N as u64 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d30_secondary_truncated_mid_record_is_cut_serves_the_prefix_and_is_refilled() {
    secondary_with_damaged_tail_is_cut_serves_the_rest_and_is_refilled(Damage::TruncateMidRecord)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d30_secondary_flipped_bit_in_last_record_is_cut_serves_the_prefix_and_is_refilled() {
    secondary_with_damaged_tail_is_cut_serves_the_rest_and_is_refilled(Damage::FlipBit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d30_secondary_garbage_tail_is_cut_serves_everything_and_stays_in_step() {
    secondary_with_damaged_tail_is_cut_serves_the_rest_and_is_refilled(Damage::GarbageTail).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d30_secondary_with_damage_in_a_sealed_segment_refuses_to_start_until_wiped() {
    // Arrange: N messages everywhere, in several segments.
    let mut c = disk_cluster(2).with(small_segments()).start().await;
    let vals = values("m", N, 200);
    for v in &vals {
        c.append(v, 3).await;
    }

    // Act: flip a bit in the first record of secondary1's first segment (sealed: fsynced
    // before the next one was created, so this is not a torn write but lost data).
    c.nodes[1].kill();
    let dir = data_dir(&c, 1);
    let first = segments(&dir)[0].clone();
    assert_ne!(first, last_segment(&dir));
    let rec = records(&first)[0];
    flip_bit(&first, rec.offset + rec.len - 1);
    c.nodes[1].start();

    // Assert: it stops (exit ≠ 0) naming the file and pointing at `replog check`, which
    // calls it fatal; nothing was changed.
    let code = c.nodes[1].wait_exit(SECS(15));
    assert!(matches!(code, Some(k) if k != 0), "exit code {code:?}");
    let out = c.nodes[1].output();
    assert!(out.contains("0000000001.seg"), "{out}");
    assert!(out.contains("replog check"), "{out}");
    let (ok, report) = replog_check(&dir);
    assert!(!ok, "{report}");
    assert!(report.contains("FATAL"), "{report}");

    // The operator's way out: wipe it; it is refilled with the whole log.
    std::fs::remove_dir_all(&dir).expect("wipe");
    c.nodes[1].start();
    c.wait_up(1).await;
    c.wait_converged(&vals, SECS(20)).await;
}

fn flip_bit(path: &std::path::Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).expect("read");
    b[0] ^= 0x01;
    f.write_all_at(&b, at).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d30_master_torn_tail_of_unreplicated_w1_appends_is_cut_and_the_log_goes_on() {
    // Arrange: N messages everywhere; then, with both secondaries down (quorum 1 keeps the
    // master writable), 5 w=1 appends that only the master holds.
    let mut c = disk_cluster(2)
        .with(small_segments())
        .master_with(toml::toml! {
            [master]
            quorum = 1
        })
        .start()
        .await;
    let vals = values("m", N, 200);
    for v in &vals {
        c.append(v, 3).await;
    }
    c.nodes[1].kill();
    c.nodes[2].kill();
    let extra = values("x", 5, 200);
    for (i, v) in extra.iter().enumerate() {
        assert_eq!(c.append(v, 1).await, (N + i + 1) as u64);
    }

    // Act: kill -9 the master, tear its last record (key N+5), restart it.
    c.nodes[0].kill();
    let broken = damage_last_segment(&data_dir(&c, 0), Damage::TruncateMidRecord);
    assert_eq!(broken, vec![N as u64 + 5]);
    c.nodes[0].start();
    c.wait_up(0).await;

    // Assert: it cut the torn record and serves the rest.
    let line = wait_output_line(&c, 0, &["startup recovery", "cut a damaged tail"], SECS(10)).await;
    assert!(
        line.contains(&format!("visible log 1..={}", N + 4)),
        "{line}"
    );
    let mut expected: Vec<String> = vals.iter().chain(&extra[..4]).cloned().collect();
    assert_eq!(c.values(0).await, expected);
    assert_eq!(c.last_key().await, N as u64 + 4);

    // The lost key N+5 existed nowhere else: the next append takes it, and the secondaries,
    // back, converge on the master's log (they never held the old N+5). With its
    // secondaries down the restarted master first waits out its tail recovery (503
    // "recovering" until then): wait for read-write, as a client retrying would.
    c.wait_mode("read-write", SECS(15)).await;
    assert_eq!(c.append("y", 1).await, N as u64 + 5);
    expected.push("y".into());
    c.nodes[1].start();
    c.nodes[2].start();
    c.wait_up(1).await;
    c.wait_up(2).await;
    c.wait_converged(&expected, SECS(20)).await;
    assert_eq!(c.append("z", 3).await, N as u64 + 6);
}

/// What should happen when the master loses acknowledged keys that its secondaries hold (a
/// master-only power loss under `fsync = "interval"` — the default — or a bad disk): the
/// master must not give those keys to other messages. Either it takes them back from a
/// secondary of its own log, or it refuses appends until it has; either way the acknowledged
/// message stays under its key everywhere.
///
/// replog takes them back (`src/recovery.rs`): appends wait (503) until it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d30_master_that_lost_replicated_keys_does_not_reuse_them() {
    // Arrange: 10 messages acknowledged by all three nodes.
    let mut c = disk_cluster(2).start().await;
    let vals = values("m", 10, 100);
    for v in &vals {
        c.append(v, 3).await;
    }

    // Act: the master loses its last record (key 10); both secondaries still hold it.
    c.nodes[0].kill();
    assert_eq!(
        damage_last_segment(&data_dir(&c, 0), Damage::TruncateMidRecord),
        vec![10]
    );
    c.nodes[0].start();
    c.wait_up(0).await;
    // A master that refuses appends (503) until it has its keys back would be correct too.
    let deadline = std::time::Instant::now() + SECS(20);
    let (status, body) = loop {
        let r = c.post(json!({"value": "new", "write_concern": 1})).await;
        if r.0 != 503 || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Assert: key 10 keeps the message all three nodes acknowledged.
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["key"], 11,
        "the new message must not take key 10, which the secondaries hold as {:?}",
        vals[9]
    );
    let mut expected = vals.clone();
    expected.push("new".into());
    c.wait_converged(&expected, SECS(20)).await;
}

/// What reusing key 10 would lead to: a restart of the secondaries making the master count
/// their *old* key 10 as an ack of the *new* message, so that a w=3 append is acknowledged
/// (201) although no secondary holds it. It must never happen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d30_master_that_lost_replicated_keys_never_acknowledges_a_message_no_secondary_holds() {
    // Arrange: as above, the master lost key 10 that both secondaries hold.
    let mut c = disk_cluster(2).start().await;
    let vals = values("m", 10, 100);
    for v in &vals {
        c.append(v, 3).await;
    }
    c.nodes[0].kill();
    damage_last_segment(&data_dir(&c, 0), Damage::TruncateMidRecord);
    c.nodes[0].start();
    c.wait_up(0).await;
    // Until it has its keys back it answers 503 ("recovering"), and this append is not retried.
    c.wait_mode("read-write", SECS(15)).await;

    // Act: a w=3 append, then both secondaries restart (kill -9).
    let w3 = c.spawn_append("new", 3);
    crate::helpers::wait_until("the append is written", SECS(10), || async {
        c.last_key().await >= 11
    })
    .await;
    for i in [1, 2] {
        c.nodes[i].kill();
        c.nodes[i].start();
        c.wait_up(i).await;
    }
    let (r, _) = w3.join(SECS(30)).await;

    // Assert: it is acknowledged (201: the master was read-write when it was sent, so only a
    // shutdown could refuse it, and without `timeout_ms` it waits for both restarted
    // secondaries), by three nodes that hold it under its key.
    assert_eq!(r.status, 201, "the w=3 append: {}", r.text);
    assert_eq!(r.json["acks"], 3, "{}", r.text);
    let key = r.json["key"].as_u64().expect("key") as usize;
    for i in 0..=2 {
        let log = c.values(i).await;
        assert_eq!(
            log.get(key - 1).map(String::as_str),
            Some("new"),
            "201 w=3 for key {key}, but {} holds {:?} there",
            c.nodes[i].name,
            log.get(key - 1)
        );
    }
}
