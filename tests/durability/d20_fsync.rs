//! Per fsync policy: kill -9 of the master right after w=1 appends were acknowledged loses
//! none of them. A killed process's writes are in the kernel's page cache, which outlives it,
//! so this holds even for `never` and for `interval` with an interval that never comes
//! (power loss is another matter: see docs/durability.md).

use serde_json::json;

use crate::helpers::TestCluster;

const CLIENTS: usize = 8;
const PER_CLIENT: usize = 25;

async fn master_killed_right_after_w1_acks_keeps_them(fsync: &str) {
    // Arrange: a master alone (so only its own disk counts), fsync interval of an hour.
    let mut c = TestCluster::builder(0)
        .with(toml::toml! {
            [storage]
            engine = "disk"
            fsync = (fsync)
            fsync_interval_ms = 3_600_000
        })
        .start()
        .await;

    // Act: concurrent w=1 appends; as soon as the last is acknowledged, kill -9.
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let (http, url) = (c.client.clone(), format!("{}/message", c.master_url()));
        let fsync = fsync.to_string();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..PER_CLIENT {
                let value = format!("{fsync}-c{client}-{i}");
                let r = http
                    .post(&url)
                    .json(&json!({"value": value, "write_concern": 1}))
                    .send()
                    .await
                    .expect("POST /message");
                assert_eq!(r.status(), 201, "{value}");
                let body: serde_json::Value = r.json().await.expect("JSON");
                acked.push((body["key"].as_u64().expect("key"), value));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.expect("client"));
    }
    c.nodes[0].kill();
    acked.sort();

    // Assert: the restarted master holds exactly what it acknowledged, and goes on after it.
    c.nodes[0].start();
    c.wait_up(0).await;
    let n = (CLIENTS * PER_CLIENT) as u64;
    assert_eq!(
        c.messages(0).await,
        acked,
        "fsync = {fsync}: every acknowledged w=1 append survives kill -9, under its key"
    );
    assert_eq!(acked.last().map(|a| a.0), Some(n));
    assert_eq!(c.last_key().await, n);
    assert_eq!(c.append("after the restart", 1).await, n + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d20_fsync_always_master_killed_right_after_w1_acks_keeps_them() {
    master_killed_right_after_w1_acks_keeps_them("always").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d20_fsync_interval_master_killed_right_after_w1_acks_keeps_them() {
    master_killed_right_after_w1_acks_keeps_them("interval").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d20_fsync_never_master_killed_right_after_w1_acks_keeps_them() {
    master_killed_right_after_w1_acks_keeps_them("never").await;
}
