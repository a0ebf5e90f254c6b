//! Fixture code for the durability tests, on top of the integration suite's `helpers`
//! (`TestCluster`: real `replog serve` processes): disk-backed clusters, poking at a stopped
//! node's segment files, a bounded concurrent load that records every answer, and the check
//! that a cluster's logs agree with what the load was told.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::helpers::{BIN, ClusterBuilder, TestCluster, clean_env, wait_until};

/// A cluster of `n` secondaries keeping their logs on disk (`storage.engine = "disk"`), each
/// node in its own directory under the cluster's tempdir, so a killed node restarts with its
/// data.
pub fn disk_cluster(n: usize) -> ClusterBuilder {
    TestCluster::builder(n).with(toml::toml! {
        [storage]
        engine = "disk"
    })
}

/// Node `i`'s `data_dir` (the fixture puts it at `<tempdir>/data/<name>`).
pub fn data_dir(c: &TestCluster, i: usize) -> PathBuf {
    c.dir().join("data").join(&c.nodes[i].name)
}

/// `n` values, `"<prefix><k>"` for k in 1..=n, padded to `len` bytes with `.`.
pub fn values(prefix: &str, n: usize, len: usize) -> Vec<String> {
    (1..=n)
        .map(|k| {
            let mut v = format!("{prefix}{k}");
            while v.len() < len {
                v.push('.');
            }
            v
        })
        .collect()
}

/// Waits until node `i`'s output (it survives restarts) holds a line containing every one
/// of `parts`, and returns that line.
pub async fn wait_output_line(
    c: &TestCluster,
    i: usize,
    parts: &[&str],
    timeout: Duration,
) -> String {
    let find = || {
        c.nodes[i]
            .output()
            .lines()
            .find(|l| parts.iter().all(|p| l.contains(p)))
            .map(str::to_string)
    };
    wait_until(
        &format!("{} to log a line with {parts:?}", c.nodes[i].name),
        timeout,
        || async { find().is_some() },
    )
    .await;
    find().expect("the line is there")
}

/// Node `i`'s `/health` field `field` as a number; panics when it is absent (a renamed field
/// must not read as 0).
pub async fn health_u64(c: &TestCluster, i: usize, field: &str) -> u64 {
    let h = c.health(i).await;
    h[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{}'s /health has no number {field:?}: {h}", c.nodes[i].name))
}

// ---------------------------------------------------------------------------------------------
// Segment files (format: src/log/segment.rs and src/log/record.rs)
// ---------------------------------------------------------------------------------------------

/// Bytes before a segment's first record.
const SEGMENT_HEADER: u64 = 16;

/// The segment files of a data dir, in order.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

/// The active (last) segment of a data dir.
pub fn last_segment(dir: &Path) -> PathBuf {
    segments(dir)
        .pop()
        .unwrap_or_else(|| panic!("no segment in {}", dir.display()))
}

/// One record as found in a segment: where it starts, its length, its key.
#[derive(Clone, Copy, Debug)]
pub struct RecordAt {
    pub offset: u64,
    pub len: u64,
    pub key: u64,
}

/// The records of a (whole, undamaged) segment, walking the length prefixes.
pub fn records(seg: &Path) -> Vec<RecordAt> {
    let bytes = std::fs::read(seg).unwrap_or_else(|e| panic!("read {}: {e}", seg.display()));
    let mut out = Vec::new();
    let mut at = SEGMENT_HEADER as usize;
    while at + 20 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let key = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap());
        assert!(
            len >= 20 && at + len <= bytes.len(),
            "{}: bad record at {at}",
            seg.display()
        );
        out.push(RecordAt {
            offset: at as u64,
            len: len as u64,
            key,
        });
        at += len;
    }
    assert_eq!(at, bytes.len(), "{}: trailing bytes", seg.display());
    out
}

/// How a stopped node's last segment is damaged.
#[derive(Clone, Copy, Debug)]
pub enum Damage {
    /// The file is cut in the middle of its last record (a torn write).
    TruncateMidRecord,
    /// One bit of the last record's value is flipped (its checksum no longer matches).
    FlipBit,
    /// Bytes no writer produced are appended after the last record.
    GarbageTail,
}

/// Damages the last segment of `dir` (its node must be stopped) and returns the keys whose
/// records are now broken (none for a garbage tail).
pub fn damage_last_segment(dir: &Path, how: Damage) -> Vec<u64> {
    let seg = last_segment(dir);
    let recs = records(&seg);
    let last = *recs
        .last()
        .unwrap_or_else(|| panic!("{} holds no record", seg.display()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .expect("open segment");
    match how {
        Damage::TruncateMidRecord => {
            file.set_len(last.offset + last.len / 2).expect("truncate");
            vec![last.key]
        }
        Damage::FlipBit => {
            // A bit of the value (past the 20-byte header), so only the checksum catches it.
            let at = last.offset + last.len - 1;
            let mut b = [0u8; 1];
            file.read_exact_at(&mut b, at).expect("read byte");
            b[0] ^= 0x10;
            file.write_all_at(&b, at).expect("write byte");
            vec![last.key]
        }
        Damage::GarbageTail => {
            let garbage: Vec<u8> = (0..57u8).map(|i| i.wrapping_mul(37) | 0x80).collect();
            file.write_all_at(&garbage, last.offset + last.len)
                .expect("append garbage");
            vec![]
        }
    }
}

/// Runs `replog check DIR`: (exit success, stdout + stderr).
pub fn replog_check(dir: &Path) -> (bool, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("check").arg(dir).stdin(Stdio::null());
    clean_env(&mut cmd);
    let out = cmd.output().expect("run replog check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

// ---------------------------------------------------------------------------------------------
// Consecutive ports (for `replog cluster --base-port P`)
// ---------------------------------------------------------------------------------------------

/// Held port locks (same files as `helpers::reserve_ports`, so neither hands out our ports).
static HELD: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());

fn lock_port(port: u16) -> Option<std::fs::File> {
    use std::os::fd::AsRawFd;
    let dir = std::env::temp_dir().join("replog-it-ports");
    std::fs::create_dir_all(&dir).ok()?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(port.to_string()))
        .ok()?;
    // SAFETY: flock(2) on a descriptor we own; the lock lives as long as the File. flock
    // conflicts between open file descriptions even within one process.
    let ok = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    ok.then_some(f)
}

/// Reserves `n` consecutive free loopback ports (locked against every other test process)
/// and returns the first.
pub fn reserve_consecutive_ports(n: u16) -> u16 {
    for _ in 0..10_000 {
        let base: u16 = 20_000 + rand::random::<u16>() % 12_000;
        let mut locks = Vec::new();
        for p in base..base + n {
            if std::net::TcpListener::bind(("127.0.0.1", p)).is_err() {
                break;
            }
            match lock_port(p) {
                Some(f) => locks.push(f),
                None => break,
            }
        }
        if locks.len() == n as usize {
            HELD.lock().extend(locks);
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

// ---------------------------------------------------------------------------------------------
// Load: concurrent clients that record every answer
// ---------------------------------------------------------------------------------------------

/// What one append was told.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// 201: acknowledged by w nodes under this key.
    Acked(u64),
    /// 504: appended under this key, replication pending (SPEC §2: it stays).
    TimedOut(u64),
    /// 503: read-only, nothing appended.
    Refused,
    /// No answer (connection error: the master died) or an unexpected one: the message may
    /// or may not be in the log, but at most once.
    Unknown(String),
}

/// One append the load made.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub value: String,
    pub w: u64,
    /// The load's phase when the request was sent (see [`Load::set_phase`]).
    pub phase: u32,
    pub outcome: Outcome,
}

/// `clients` concurrent clients appending to the master with w cycling through `ws`, each
/// until it made `per_client` appends or the load is stopped. Requests wait while the gate
/// is closed. A client that got no answer backs off briefly before its next append.
pub struct Load {
    attempts: Arc<Mutex<Vec<Attempt>>>,
    acked: Arc<AtomicU64>,
    gate: watch::Sender<(bool, u32)>,
    stop: watch::Sender<bool>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(c: &TestCluster, clients: usize, per_client: usize, ws: &[u64]) -> Load {
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let acked = Arc::new(AtomicU64::new(0));
        let (gate, _) = watch::channel((true, 0u32));
        let (stop, _) = watch::channel(false);
        let url = format!("{}/message", c.master_url());
        let mut handles = Vec::new();
        for client in 0..clients {
            let (attempts, acked, url) = (attempts.clone(), acked.clone(), url.clone());
            let (mut gate, stop) = (gate.subscribe(), stop.subscribe());
            let ws = ws.to_vec();
            let http = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client");
            handles.push(tokio::spawn(async move {
                for seq in 0..per_client {
                    if *stop.borrow() {
                        return;
                    }
                    let phase = match gate.wait_for(|(open, _)| *open).await {
                        Ok(g) => g.1,
                        Err(_) => return,
                    };
                    let w = ws[(client + seq) % ws.len()];
                    let value = format!("c{client}-{seq}-w{w}");
                    let body = json!({"value": value, "write_concern": w, "timeout_ms": 1500});
                    let outcome = match http.post(&url).json(&body).send().await {
                        Err(e) => Outcome::Unknown(e.to_string()),
                        Ok(resp) => {
                            let status = resp.status().as_u16();
                            let body: Value = resp.json().await.unwrap_or(Value::Null);
                            let key = body["key"].as_u64();
                            match (status, key) {
                                (201, Some(k)) => Outcome::Acked(k),
                                (504, Some(k)) => Outcome::TimedOut(k),
                                (503, _) => Outcome::Refused,
                                _ => Outcome::Unknown(format!("{status} {body}")),
                            }
                        }
                    };
                    let failed = matches!(outcome, Outcome::Unknown(_) | Outcome::Refused);
                    if matches!(outcome, Outcome::Acked(_)) {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    attempts.lock().push(Attempt {
                        value,
                        w,
                        phase,
                        outcome,
                    });
                    if failed {
                        // Not a synchronisation: a client does not hammer a dead master.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }));
        }
        Load {
            attempts,
            acked,
            gate,
            stop,
            handles,
        }
    }

    /// Appends acknowledged (201) so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until `more` appends beyond the current count were acknowledged.
    pub async fn wait_acked_more(&self, more: u64, timeout: Duration) {
        let target = self.acked() + more;
        wait_until(
            &format!("{target} acknowledged appends"),
            timeout,
            || async { self.acked() >= target },
        )
        .await;
    }

    /// Holds new requests back (those in flight go on).
    pub fn close_gate(&self) {
        self.gate.send_modify(|g| g.0 = false);
    }

    /// Lets requests through again, tagged with `phase`.
    pub fn open_gate(&self, phase: u32) {
        self.gate.send_replace((true, phase));
    }

    /// Every attempt so far.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.attempts.lock().clone()
    }

    /// Stops the clients and waits until each finished its request in flight.
    pub async fn stop(mut self) -> Vec<Attempt> {
        self.stop.send_replace(true);
        self.gate.send_replace((true, u32::MAX));
        for h in self.handles.drain(..) {
            tokio::time::timeout(Duration::from_secs(60), h)
                .await
                .expect("load clients stop within 60 s")
                .expect("load client");
        }
        self.attempts.lock().clone()
    }
}

/// Waits until every running node shows exactly what the master shows, and the master's
/// `last_key` is its log's length; returns the master's log.
pub async fn wait_all_equal(c: &TestCluster, timeout: Duration) -> Vec<(u64, String)> {
    wait_until("every node to show the master's log", timeout, || async {
        let m = c.messages(0).await;
        if c.last_key().await != m.len() as u64 {
            return false;
        }
        for i in 1..c.nodes.len() {
            if c.nodes[i].is_running() && c.messages(i).await != m {
                return false;
            }
        }
        true
    })
    .await;
    c.messages(0).await
}

/// Asserts that `log` (one node's whole log) keeps every promise made to the load:
/// keys 1..=n without gaps; every 201 and 504 message under the key it was given; no 503
/// message anywhere; every other message at most once; nothing that was never sent.
pub fn assert_log_keeps_promises(node: &str, log: &[(u64, String)], attempts: &[Attempt]) {
    for (i, (k, _)) in log.iter().enumerate() {
        assert_eq!(*k, i as u64 + 1, "{node}: keys are 1..=n in order, no gaps");
    }
    let mut seen: HashMap<&str, u64> = HashMap::new();
    for (k, v) in log {
        if let Some(first) = seen.insert(v.as_str(), *k) {
            panic!("{node}: {v:?} is in the log twice (keys {first} and {k})");
        }
    }
    let by_key: HashMap<u64, &str> = log.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut sent = HashSet::new();
    for a in attempts {
        sent.insert(a.value.as_str());
        match &a.outcome {
            Outcome::Acked(k) | Outcome::TimedOut(k) => assert_eq!(
                by_key.get(k).copied(),
                Some(a.value.as_str()),
                "{node}: key {k} holds what the master answered ({:?}, w={})",
                a.outcome,
                a.w
            ),
            Outcome::Refused => assert!(
                !seen.contains_key(a.value.as_str()),
                "{node}: {:?} was refused with 503 but is in the log",
                a.value
            ),
            Outcome::Unknown(_) => {}
        }
    }
    for (k, v) in log {
        assert!(
            sent.contains(v.as_str()),
            "{node}: key {k} holds {v:?}, which nobody sent"
        );
    }
}
