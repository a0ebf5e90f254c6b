//! Writes the seed inputs in `fuzz/seeds/<target>/` (run by hand after a format change:
//! `cargo run --bin gen_seeds` in `fuzz/`). libFuzzer starts from these and mutates them.

use std::fs;
use std::path::Path;

use bytes::Bytes;
use replog::domain::Entry;
use replog::storage::record::{self, Record};
use replog::storage::segment;
use replog::protocol;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let write = |target: &str, name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let dir = root.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(name), bytes)
    };

    let records: Vec<Vec<u8>> = (1..=5u64)
        .map(|key| {
            let id = format!("id-{key}");
            let value = format!("message {key}");
            let mut out = Vec::new();
            let rec = Record {
                key,
                id: (key % 2 == 0).then_some(id.as_bytes()),
                value: value.as_bytes(),
            };
            record::encode(&rec, &mut out).expect("encode a seed record");
            out
        })
        .collect();
    write("record", "no-id", &records[0])?;
    write("record", "with-id", &records[1])?;
    write(
        "record",
        "two",
        &[&records[2][..], &records[3][..]].concat(),
    )?;

    // segment_recovery: mode 0 = one segment, header added; mode 1 = two segments.
    let all: Vec<u8> = records.concat();
    write(
        "segment_recovery",
        "one-segment",
        &[&[0u8][..], &all].concat(),
    )?;
    let first = [&records[0][..], &records[1][..]].concat();
    let mut two = vec![1u8];
    two.extend_from_slice(&(first.len() as u16).to_le_bytes());
    two.extend_from_slice(&first);
    two.extend_from_slice(&[&records[2][..], &records[3][..]].concat());
    write("segment_recovery", "two-segments", &two)?;
    let mut whole = vec![4u8];
    whole.extend_from_slice(&segment::header(1));
    whole.extend_from_slice(&records[0]);
    whole.extend_from_slice(&records[1][..10]);
    write("segment_recovery", "torn-tail", &whole)?;
    write(
        "segment_recovery",
        "planned",
        &[0x80, 2, 0, 3, 1, 0, 5, 2, 1, 7, 9],
    )?;

    let entries = [
        (1u64, None, "first"),
        (2, Some("id-2"), "second"),
        (5, None, "ünïcödé"),
    ]
    .map(|(key, id, value): (u64, Option<&str>, &str)| Entry {
        key,
        value: Bytes::copy_from_slice(value.as_bytes()),
        id: id.map(|i| Bytes::copy_from_slice(i.as_bytes())),
    });
    write(
        "batch",
        "empty",
        &[&[2u8][..], &protocol::encode_batch(&[])].concat(),
    )?;
    write(
        "batch",
        "three",
        &[&[2u8][..], &protocol::encode_batch(&entries)].concat(),
    )?;

    write("config", "master.toml", MASTER.as_bytes())?;
    write("config", "secondary.toml", SECONDARY.as_bytes())?;
    write(
        "config",
        "env",
        b"[node]\nname = \"n\"\0NODE_ROLE=secondary\0HEARTBEAT_INTERVAL_MS=500\0MASTER_SECONDARIES=s1=http://127.0.0.1:9001,s2=http://h:2\0REPLICATION_RETRY_DELAYS_S=[0.5, 1]",
    )?;
    Ok(())
}

const MASTER: &str = r#"[node]
name = "master"
role = "master"
listen = "0.0.0.0:8000"
data_dir = "data/master"

[master]
secondaries = [
  { name = "secondary1", url = "http://secondary1:8001" },
  { name = "secondary2", url = "http://secondary2:8002" },
]
quorum = 2
default_write_concern = "all"
default_timeout_ms = 5000
dedup_window = 1000
max_pending_appends = 100

[replication]
retry_delays_s = [1, 2, 5, 10, 30, 60, 90, 180, 300]
request_timeout_ms = 30000
max_inflight = 8

[heartbeat]
interval_ms = 1000
suspected_after = 2
unhealthy_after = 5

[storage]
engine = "disk"
fsync = "interval"
fsync_interval_ms = 100
segment_bytes = 67108864

[log]
file = "log/app.log"
level = "info"

[fault]
enabled = false
error_rate = 0.0

[limits]
max_message_bytes = 1048576
"#;

const SECONDARY: &str = r#"[node]
name = "secondary1"
role = "secondary"
listen = "127.0.0.1:8001"
cluster_token = "secret"
worker_threads = 1

[secondary]
master_url = "http://master:8000"

[heartbeat]
timeout_ms = 300

[storage]
engine = "memory"
fsync = "always"

[fault]
enabled = true
error_rate = 0.25
"#;
