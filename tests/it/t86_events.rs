//! `GET /events` (SPEC §12): the state first, then one event per change, in order; coalesced
//! `acked` events; a reconnecting client told the current state first; a reader that stops
//! reading disconnected, with the node's memory flat. Real nodes, real sockets.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{TestCluster, wait_until};

/// One server-sent event.
#[derive(Clone, Debug)]
struct Ev {
    id: u64,
    event: String,
    data: Value,
}

/// A client of `/events`, reading frames as they come.
struct Events {
    resp: reqwest::Response,
    buf: String,
    seen: Vec<Ev>,
}

impl Events {
    async fn open(url: &str) -> Events {
        let resp = reqwest::Client::new()
            .get(format!("{url}/events"))
            .send()
            .await
            .expect("GET /events");
        assert_eq!(resp.status(), 200);
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Events {
            resp,
            buf: String::new(),
            seen: Vec::new(),
        }
    }

    /// The next event (keep-alive comments skipped), or `None` after `timeout`.
    async fn next(&mut self, timeout: Duration) -> Option<Ev> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, None, None);
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse().ok();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).expect("data is one JSON object"));
                    }
                }
                let Some(event) = event else { continue };
                let data: Value = data.expect("an event has data");
                assert!(data.is_object(), "{event}: {data}");
                let ev = Ev {
                    id: id.expect("an event has an id"),
                    event,
                    data,
                };
                self.seen.push(ev.clone());
                return Some(ev);
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk()).await;
            match chunk {
                Ok(Ok(Some(c))) => self.buf.push_str(std::str::from_utf8(&c).expect("UTF-8")),
                Ok(Ok(None)) | Ok(Err(_)) => panic!("the event stream ended"),
                Err(_) => return None,
            }
        }
    }

    /// Reads until `pred` holds for an event; panics with `what` after `timeout`.
    async fn until(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Ev) -> bool) -> Ev {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(e) if pred(&e) => return e,
                Some(_) => {}
                None => panic!(
                    "timed out after {timeout:?} waiting for {what}; saw {:?}",
                    self.seen
                        .iter()
                        .map(|e| format!("{} {}", e.event, e.data))
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    /// The events of the first burst: everything with the id of the first.
    async fn initial(&mut self) -> Vec<Ev> {
        let first = self
            .next(Duration::from_secs(5))
            .await
            .expect("a first event");
        let mut out = vec![first.clone()];
        while let Some(e) = self.next(Duration::from_millis(300)).await {
            if e.id != first.id {
                break;
            }
            out.push(e);
        }
        out
    }
}

fn of<'a>(evs: &'a [Ev], event: &str) -> Vec<&'a Ev> {
    evs.iter().filter(|e| e.event == event).collect()
}

fn health_of<'a>(evs: &'a [Ev], name: &str) -> Option<&'a Ev> {
    evs.iter()
        .find(|e| e.event == "health" && e.data["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t86_events_give_the_state_first_then_each_change_in_order() {
    // Arrange
    let mut c = TestCluster::start(2).await;
    let mut ev = Events::open(&c.master_url()).await;

    // Assert: the state first, under one id.
    let first = ev.initial().await;
    let names: Vec<&str> = first.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names[0], "node", "{names:?}");
    let node = &first[0].data;
    assert_eq!(
        (node["name"].as_str(), node["role"].as_str()),
        (Some("master"), Some("master"))
    );
    let mode = of(&first, "mode");
    assert_eq!(mode.len(), 1, "{names:?}");
    assert_eq!(mode[0].data["mode"], "read-write");
    assert_eq!(mode[0].data["available"], 3);
    assert_eq!(of(&first, "appended")[0].data["last_key"], 0);
    for s in ["secondary1", "secondary2"] {
        let h = health_of(&first, s).unwrap_or_else(|| panic!("health of {s}: {names:?}"));
        assert_eq!(h.data["status"], "healthy");
    }
    assert_eq!(of(&first, "master")[0].data["epoch"], 1);
    assert_eq!(of(&first, "rates").len(), 1);

    // Act: appends. Assert: the new last key and every secondary's acked key follow.
    for i in 0..3 {
        c.append(&format!("m{i}"), 3).await;
    }
    ev.until("appended up to 3", Duration::from_secs(5), |e| {
        e.event == "appended" && e.data["last_key"] == 3
    })
    .await;
    for s in ["secondary1", "secondary2"] {
        let already = ev
            .seen
            .iter()
            .any(|e| e.event == "acked" && e.data["name"] == s && e.data["acked_key"] == 3);
        if !already {
            ev.until(&format!("{s} acked 3"), Duration::from_secs(5), |e| {
                e.event == "acked" && e.data["name"] == s && e.data["acked_key"] == 3
            })
            .await;
        }
    }

    // Act: secondary1 paused, then both. Assert: its health goes healthy → suspected →
    // unhealthy, and the mode turns read-only once both are unhealthy.
    c.nodes[1].pause();
    ev.until("secondary1 unhealthy", Duration::from_secs(10), |e| {
        e.event == "health" && e.data["name"] == "secondary1" && e.data["status"] == "unhealthy"
    })
    .await;
    c.nodes[2].pause();
    ev.until("read-only", Duration::from_secs(10), |e| {
        e.event == "mode" && e.data["mode"] == "read-only"
    })
    .await;
    c.resume_until_healthy(&[1, 2]).await;
    ev.until("read-write, all available", Duration::from_secs(10), |e| {
        e.event == "mode" && e.data["mode"] == "read-write" && e.data["available"] == 3
    })
    .await;

    // Ids increase after the first burst; each status change is told once, in order, with
    // the status before it.
    let ids: Vec<u64> = ev.seen[first.len()..].iter().map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    assert!(ids.first().is_some_and(|i| *i > first[0].id));
    let s1: Vec<(String, String)> = ev.seen[first.len()..]
        .iter()
        .filter(|e| e.event == "health" && e.data["name"] == "secondary1")
        .map(|e| {
            (
                e.data["from"].as_str().unwrap_or("").to_string(),
                e.data["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let s1: Vec<(&str, &str)> = s1.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(
        s1,
        [
            ("healthy", "suspected"),
            ("suspected", "unhealthy"),
            ("unhealthy", "healthy")
        ]
    );
    // Mode events also tell a change of `available`; the mode itself went read-only once
    // and back.
    let mut modes: Vec<&str> = ev.seen[first.len()..]
        .iter()
        .filter(|e| e.event == "mode")
        .map(|e| e.data["mode"].as_str().unwrap_or(""))
        .collect();
    modes.dedup();
    assert_eq!(modes, ["read-write", "read-only", "read-write"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t86_acked_events_are_coalesced_to_ten_a_second_per_secondary() {
    // Arrange
    let c = TestCluster::start(1).await;
    let mut ev = Events::open(&c.master_url()).await;
    ev.initial().await;

    // Act: about 2 s of appends from 8 clients.
    let started = Instant::now();
    let mut load = Vec::new();
    for k in 0..8 {
        let (client, url) = (c.client.clone(), c.master_url());
        load.push(tokio::spawn(async move {
            let mut n = 0u64;
            while started.elapsed() < Duration::from_secs(2) && n < 5_000 {
                let _ = client
                    .post(format!("{url}/message"))
                    .json(&serde_json::json!({"value": format!("c{k}-{n}"), "write_concern": 2}))
                    .send()
                    .await;
                n += 1;
            }
            n
        }));
    }
    let mut sent = 0;
    for l in load {
        sent += l.await.expect("load");
    }
    let last = c.last_key().await;
    assert_eq!(last, sent, "every append got its key");
    ev.until("acked up to the end", Duration::from_secs(10), |e| {
        e.event == "acked" && e.data["acked_key"] == last
    })
    .await;

    // Assert: far fewer events than appends, and at most 10 per second of each kind (by the
    // node's clock, `t_ms`: arrival times bunch up on a busy machine).
    let acked: Vec<&Ev> = of(&ev.seen, "acked");
    let appended: Vec<&Ev> = of(&ev.seen, "appended");
    assert!(last > 50, "a real load: {last} appends");
    for (kind, list) in [("acked", &acked), ("appended", &appended)] {
        let t: Vec<u64> = list
            .iter()
            .map(|e| e.data["t_ms"].as_u64().expect("t_ms"))
            .collect();
        for i in 0..t.len() {
            let in_window = t[i..].iter().take_while(|x| **x < t[i] + 1000).count();
            assert!(
                in_window <= 10,
                "{in_window} {kind} events within one second: {t:?}"
            );
        }
    }
    let keys: Vec<u64> = acked
        .iter()
        .filter_map(|e| e.data["acked_key"].as_u64())
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "acked keys only move forward: {keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t86_a_reconnecting_client_gets_the_current_state_first() {
    // Arrange: a stream open while a secondary is paused until unhealthy and two appends go
    // in; then closed.
    let mut c = TestCluster::start(2).await;
    let mut ev = Events::open(&c.master_url()).await;
    ev.initial().await;
    c.pause_until_unhealthy(&[1]).await;
    c.append("a", 1).await;
    c.append("b", 2).await;
    drop(ev);

    // Act: a new stream.
    let mut again = Events::open(&c.master_url()).await;
    let first = again.initial().await;

    // Assert: the state as it is now, without waiting for a change.
    assert_eq!(first[0].event, "node");
    assert_eq!(
        health_of(&first, "secondary1").map(|e| e.data["status"].clone()),
        Some("unhealthy".into())
    );
    let s1 = health_of(&first, "secondary1").expect("s1");
    assert_eq!(s1.data["lag"], 2, "{}", s1.data);
    assert_eq!(
        health_of(&first, "secondary2").map(|e| e.data["status"].clone()),
        Some("healthy".into())
    );
    assert_eq!(of(&first, "appended")[0].data["last_key"], 2);
    assert_eq!(of(&first, "mode")[0].data["available"], 2);

    // A secondary's own stream: its role, its contiguous key and where the master is.
    let mut sec = Events::open(&c.url(2)).await;
    let first = sec.initial().await;
    assert_eq!(first[0].data["role"], "secondary");
    let appended = of(&first, "appended");
    assert_eq!(appended[0].data["last_key"], 2);
    assert_eq!(appended[0].data["held_aside"], 0);
    assert!(of(&first, "mode").is_empty());
    assert!(of(&first, "master").len() == 1);
    c.resume_until_healthy(&[1]).await;
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// A client that asks for `/events` and never reads: a small receive buffer, so what the
/// node sends it piles up on the node's side.
fn stalled_reader(port: u16) -> std::net::TcpStream {
    let s =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    s.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    s.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
        .expect("connect");
    let mut t: std::net::TcpStream = s.into();
    t.write_all(b"GET /events HTTP/1.1\r\nhost: test\r\n\r\n")
        .expect("request");
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t86_a_reader_that_stops_reading_is_dropped_and_memory_stays_flat() {
    // Arrange: four secondaries (more events per second), 24 readers that never read, and
    // one that does.
    let c = TestCluster::start(4).await;
    let pid = c.nodes[0].pid();
    let mut good = Events::open(&c.master_url()).await;
    good.initial().await;
    let mut stalled: Vec<std::net::TcpStream> =
        (0..24).map(|_| stalled_reader(c.nodes[0].port)).collect();
    // The stalled ones got their first burst (the node counts them as listeners).
    let rss_before = rss_kib(pid);

    // Act: appends until the node has dropped every stalled reader (bounded: 60 s).
    let started = Instant::now();
    let mut n = 0u64;
    let dropped_all = loop {
        for _ in 0..20 {
            let _ = c
                .client
                .post(format!("{}/message", c.master_url()))
                .json(&serde_json::json!({"value": format!("m{n}"), "write_concern": 5}))
                .send()
                .await;
            n += 1;
        }
        // The good reader keeps up meanwhile.
        while good.next(Duration::from_millis(1)).await.is_some() {}
        let count = c
            .app_log()
            .lines()
            .filter(|l| l.contains("events: dropped a listener that stopped reading"))
            .count();
        if count >= stalled.len() {
            break true;
        }
        if started.elapsed() > Duration::from_secs(60) {
            break false;
        }
    };
    let rss_after = rss_kib(pid);
    eprintln!(
        "{} stalled readers dropped after {:?} and {n} appends; master RSS {rss_before} → {rss_after} KiB",
        stalled.len(),
        started.elapsed()
    );

    // Assert: every stalled reader was dropped (its socket closed by the node: after what
    // was sent, end of stream), the memory stayed flat, and the reading client was told
    // every key.
    assert!(
        dropped_all,
        "the node dropped the readers that stopped reading within 60 s ({n} appends)"
    );
    for s in &mut stalled {
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut sink = Vec::new();
        let r = s.read_to_end(&mut sink);
        assert!(
            r.is_ok()
                || r.as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "the node closed the connection: {r:?} after {} bytes",
            sink.len()
        );
        assert!(sink.len() < 1 << 20, "{} bytes", sink.len());
    }
    let grown = rss_after.saturating_sub(rss_before);
    assert!(
        grown < 32 * 1024,
        "the master's memory grew by {grown} KiB ({rss_before} → {rss_after}) with {} stalled readers",
        stalled.len()
    );
    let last = c.last_key().await;
    // The drain in the loop above may have read it already.
    let is_last = |e: &Ev| e.event == "appended" && e.data["last_key"] == last;
    if !good.seen.iter().any(is_last) {
        good.until("the last key", Duration::from_secs(5), is_last)
            .await;
    }
    wait_until(
        "a new stream still opens",
        Duration::from_secs(5),
        || async {
            reqwest::Client::new()
                .get(format!("{}/events", c.master_url()))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t86_failover_elections_and_the_new_master_are_told_as_they_happen() {
    // Arrange: failover on, three members, a 1 s election timeout; both secondaries'
    // streams open.
    let mut c = TestCluster::builder(2)
        .failover()
        .with(toml::toml! {
            [failover]
            election_timeout_ms = 1000
        })
        .start()
        .await;
    let mut streams = Vec::new();
    for i in [1, 2] {
        let mut ev = Events::open(&c.url(i)).await;
        let first = ev.initial().await;
        assert_eq!(first[0].data["failover"], true);
        let m = of(&first, "master");
        assert_eq!(
            (m[0].data["name"].as_str(), m[0].data["epoch"].as_u64()),
            (Some("master"), Some(1)),
            "node {i}: {}",
            m[0].data
        );
        assert_eq!(of(&first, "election")[0].data["standing"], false);
        streams.push(ev);
    }

    // Act: the master paused until another is elected.
    c.nodes[0].pause();
    let new = c.wait_master(&[0], Duration::from_secs(20)).await;
    let name = c.nodes[new].name.clone();

    // Assert: on the new master's stream, it stood for election, then named itself master in
    // a higher epoch and turned master (`node`), with its own `mode` and secondaries; the
    // other member's stream names it too.
    let ev = &mut streams[new - 1];
    ev.until("the new master named", Duration::from_secs(10), |e| {
        e.event == "master" && e.data["name"] == name.as_str()
    })
    .await;
    if !ev
        .seen
        .iter()
        .any(|e| e.event == "node" && e.data["role"] == "master")
    {
        ev.until("its role: master", Duration::from_secs(10), |e| {
            e.event == "node" && e.data["role"] == "master"
        })
        .await;
    }
    assert!(
        ev.seen
            .iter()
            .any(|e| e.event == "election" && e.data["standing"] == true),
        "the winner's stream told that it stood: {:?}",
        ev.seen
            .iter()
            .map(|e| format!("{} {}", e.event, e.data))
            .collect::<Vec<_>>()
    );
    let epoch = ev
        .seen
        .iter()
        .rev()
        .find(|e| e.event == "master")
        .and_then(|e| e.data["epoch"].as_u64())
        .expect("epoch");
    assert!(epoch > 1, "a new epoch: {epoch}");
    let other = &mut streams[2 - new];
    other
        .until(
            "the other member names the new master",
            Duration::from_secs(10),
            |e| e.event == "master" && e.data["name"] == name.as_str(),
        )
        .await;
    c.nodes[0].resume();
}
