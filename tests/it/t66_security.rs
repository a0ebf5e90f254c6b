//! Security and hardening (README "Security"): the cluster token guards every internal and
//! test endpoint and never shows up in answers or logs; a node's limits give slow, large and
//! numerous clients a clear answer without stopping it from serving everyone else.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestCluster, wait_until};
use crate::t60_bad_input::{batch, refused, state};

const TOKEN: &str = "t66-Zq8vN2r7XkP4mW1s";

/// A token file only its owner can read, in a directory of its own (kept alive by the caller).
fn token_file(token: &str) -> (tempfile::TempDir, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("token");
    std::fs::write(&path, format!("  {token}\n")).expect("write token");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    (dir, path.display().to_string())
}

/// Every operation of `/openapi.json` that declares the `cluster_token` security scheme.
async fn guarded_operations(c: &TestCluster) -> Vec<(Method, String)> {
    let doc = c.get(1, "/openapi.json").await.json;
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let guarded = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("cluster_token").is_some()));
            if guarded {
                let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
                out.push((m, path.clone()));
            }
        }
    }
    out.sort_by_key(|(m, p)| (p.clone(), m.to_string()));
    out
}

/// A request to `method path` on node `i` that would succeed with the token; `replicate`: the
/// log id and epoch headers of a replication request.
fn request(
    c: &TestCluster,
    replicate: &[(&'static str, String)],
    method: &Method,
    path: &str,
) -> reqwest::RequestBuilder {
    let mut rb = c.req(method.clone(), 1, path);
    match (method.as_str(), path) {
        ("PUT", "/message") => rb.json(&json!({"key": 1, "value": "a"})),
        ("POST", "/replicate") => {
            for (name, value) in replicate {
                rb = rb.header(*name, value);
            }
            rb.body(batch(&[(1, "a")]))
        }
        ("GET", "/replicate") => c.req(method.clone(), 1, "/replicate?from=1"),
        ("POST", "/delay") => rb.json(&json!({"value": 0})),
        ("POST", "/fault") => rb.json(&json!({"error_rate": 0.0})),
        _ => rb,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t66_every_internal_and_test_endpoint_needs_the_token_and_the_cluster_replicates_with_it() {
    // Arrange: every node reads the same token from an owner-only file.
    let (_keep, path) = token_file(TOKEN);
    let c = TestCluster::builder(2)
        .with(toml::toml! {
            [node]
            cluster_token_file = path
        })
        .start()
        .await;

    // The master sends the token: a w=3 append is replicated to both secondaries.
    assert_eq!(c.append("a", 3).await, 1);
    c.wait_converged(&["a".to_string()], Duration::from_secs(10))
        .await;
    let log_id = c.health(0).await["log_id"].as_str().unwrap().to_string();
    let mut replicate = vec![("x-replog-log-id", log_id)];
    replicate.extend(c.own_epoch_headers(1).await);
    // POST /vote answers 404 while failover is off, before the token is looked at (as
    // /delay does with fault injection off); its token is tested with failover on (t92).
    let ops: Vec<_> = guarded_operations(&c)
        .await
        .into_iter()
        .filter(|(_, p)| p != "/vote")
        .collect();
    assert_eq!(
        ops.len(),
        6,
        "PUT /message, POST and GET /replicate, /delay, GET and POST /fault: {ops:?}"
    );

    // Act + assert: without the token, with a wrong one, or with it in the wrong place, each is
    // 401 with a WWW-Authenticate challenge, and changes nothing.
    let before = state(&c).await;
    let wrong = [
        None,
        Some("Bearer wrong".to_string()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(format!("Basic {TOKEN}")),
        Some(TOKEN.to_string()),
    ];
    for (method, path) in &ops {
        for auth in &wrong {
            let mut rb = request(&c, &replicate, method, path);
            if let Some(a) = auth {
                rb = rb.header("authorization", a);
            }
            let r = c.send(rb).await;
            let what = format!("{method} {path} with authorization {auth:?}");
            assert!(
                r.headers.get("www-authenticate").is_some(),
                "{what}: no WWW-Authenticate"
            );
            refused(&c, &before, r, 401, &what).await;
        }
    }

    // With the token (the scheme name in any case) each one is served.
    for (method, path) in &ops {
        let r = c
            .send(
                request(&c, &replicate, method, path)
                    .header("authorization", format!("bearer {TOKEN}")),
            )
            .await;
        assert!(
            (200..300).contains(&r.status),
            "{method} {path} with the token: {} {}",
            r.status,
            r.text
        );
    }
    // The public endpoints need nothing.
    for path in [
        "/messages",
        "/health",
        "/heartbeat",
        "/metrics",
        "/openapi.json",
    ] {
        assert_eq!(c.get(1, path).await.status, 200, "{path}");
    }
    assert_eq!(c.append("b", 3).await, 2);

    // The token is in no answer and no log line.
    for i in 0..c.nodes.len() {
        for path in ["/health", "/metrics", "/openapi.json", "/heartbeat"] {
            assert!(
                !c.get(i, path).await.text.contains(TOKEN),
                "node {i} {path}"
            );
        }
        assert!(!c.nodes[i].output().contains(TOKEN), "node {i} output");
    }
    assert!(!c.app_log().contains(TOKEN), "app.log");
}

/// Opens a raw connection to `port`.
async fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect")
}

/// Reads until the peer closes (or resets) the connection; what it sent.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t66_a_client_trickling_its_headers_is_disconnected_while_others_are_served() {
    // Arrange: 1 s to send the headers.
    let c = TestCluster::builder(1)
        .with(toml::toml! {
            [limits]
            header_read_timeout_ms = 1000
        })
        .start()
        .await;
    let port = c.nodes[0].port;

    // Act: one byte every 100 ms of a header that would take 20 s to send.
    let started = Instant::now();
    let slow = tokio::spawn(async move {
        let mut s = connect(port).await;
        let head = format!(
            "GET /health HTTP/1.1\r\nhost: x\r\nx-slow: {}\r\n\r\n",
            "a".repeat(160)
        );
        for b in head.as_bytes() {
            if s.write_all(&[*b]).await.is_err() {
                return (true, started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            // The server closing its side shows as EOF on a read that does not block.
            let mut probe = [0u8; 1];
            if let Ok(Ok(0)) =
                tokio::time::timeout(Duration::from_millis(1), s.read(&mut probe)).await
            {
                return (true, started.elapsed());
            }
        }
        (false, started.elapsed())
    });

    // Meanwhile other clients are served.
    for _ in 0..5 {
        assert_eq!(c.get(0, "/health").await.status, 200);
        assert!(c.append("x", 2).await > 0);
    }

    // Assert: the slow client was cut off well before it finished.
    let (closed, after) = tokio::time::timeout(Duration::from_secs(30), slow)
        .await
        .expect("the slow client finishes")
        .expect("task");
    assert!(
        closed,
        "the connection stayed open for the whole header ({after:?})"
    );
    // Cut at its 1 s, give or take a loaded machine's seconds: not at some later bound.
    assert!(
        after < Duration::from_secs(1 + 3),
        "closed only after {after:?}"
    );
    assert_eq!(c.get(0, "/health").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t66_oversize_bodies_and_headers_and_slow_bodies_get_clear_answers_and_change_nothing() {
    // Arrange
    let c = TestCluster::builder(1)
        .with(toml::toml! {
            [limits]
            max_message_bytes = 1000
            max_header_bytes = 4096
            body_read_timeout_ms = 1000
            [replication]
            max_batch_bytes = 4096
        })
        .start()
        .await;
    assert_eq!(c.append("a", 2).await, 1);
    c.wait_converged(&["a".to_string()], Duration::from_secs(10))
        .await;
    let before = state(&c).await;
    let log_id = c.health(0).await["log_id"].as_str().unwrap().to_string();

    // Act + assert: bodies far over each endpoint's limit are 413. (A replication batch may
    // be 2 × max(replication.max_batch_bytes, limits.max_message_bytes) + 16 MiB, so that a
    // master configured with larger batches is still served.)
    let big = vec![b'x'; 4 << 20];
    let huge = vec![b'x'; 24 << 20];
    let cases: Vec<(usize, Method, &str, Vec<u8>)> = vec![
        (0, Method::POST, "/message", big.clone()),
        (1, Method::PUT, "/message", big.clone()),
        (1, Method::POST, "/replicate", huge),
        (1, Method::POST, "/delay", big.clone()),
        (1, Method::POST, "/fault", big),
    ];
    for (i, method, path, body) in cases {
        let len = body.len();
        let r = c
            .send(
                c.req(method.clone(), i, path)
                    .header("x-replog-log-id", &log_id)
                    .header("content-type", "application/json")
                    .body(body),
            )
            .await;
        refused(
            &c,
            &before,
            r,
            413,
            &format!("{method} {path} on node {i}, {len} bytes"),
        )
        .await;
    }

    // Headers over limits.max_header_bytes: 431, and nothing changes.
    let r = c
        .send(
            c.req(Method::POST, 0, "/message")
                .header("x-big", "h".repeat(8192))
                .json(&json!({"value": "big headers"})),
        )
        .await;
    assert_eq!(r.status, 431, "{}", r.text);
    assert_eq!(state(&c).await, before);

    // A body that stops arriving: 408 once limits.body_read_timeout_ms has passed, and the
    // connection is closed.
    let mut s = connect(c.nodes[0].port).await;
    s.write_all(b"POST /message HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"value\": \"sl")
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(20), read_to_close(&mut s))
        .await
        .expect("answered and closed");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("limits.body_read_timeout_ms"), "{text}");
    assert_eq!(state(&c).await, before);
}

/// Resident memory of `pid`, in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status: {status}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t66_a_connection_flood_beyond_the_cap_is_refused_and_the_node_serves_again_after_it() {
    // Arrange: a master alone, 16 connections at most.
    const CAP: usize = 16;
    const FLOOD: usize = 400;
    // Each flooding connection sends this much of a request head, never its end: a node that
    // kept the connections would hold every head (6.25 MiB), in buffers that grow to more
    // (a node without the cap: about 20 MiB).
    const HEAD: usize = 16 << 10;
    let c = TestCluster::builder(0)
        .with(toml::toml! {
            [limits]
            max_connections = 16
        })
        .start()
        .await;
    let port = c.nodes[0].port;
    let pid = c.nodes[0].pid();
    assert_eq!(c.append("a", 1).await, 1);
    // A fresh node's memory still grows for a moment after startup: measure once it is steady.
    let last = std::sync::Mutex::new(0u64);
    wait_until(
        "the node's memory is steady",
        Duration::from_secs(20),
        || {
            let now = rss_kib(pid);
            let before = std::mem::replace(&mut *last.lock().unwrap(), now);
            async move {
                tokio::time::sleep(Duration::from_millis(250)).await;
                now.abs_diff(before) < 1024
            }
        },
    )
    .await;
    let rss_before = rss_kib(pid);

    // Act: CAP idle connections take every slot, then FLOOD more arrive, each with the start
    // of a request head.
    let mut idle = Vec::new();
    for _ in 0..CAP {
        idle.push(connect(port).await);
    }
    // The node has accepted them all once a connection beyond them is refused.
    let mut extra = connect(port).await;
    let first = tokio::time::timeout(Duration::from_secs(10), read_to_close(&mut extra))
        .await
        .expect("a connection beyond the cap is answered and closed");
    let text = String::from_utf8_lossy(&first);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("limits.max_connections"), "{text}");

    let mut head = b"GET /health HTTP/1.1\r\nx-pad: ".to_vec();
    head.resize(HEAD, b'p');
    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        let mut s = connect(port).await;
        // The node may have refused and closed it already (then this fails, or the node
        // resets the connection): either is a refusal, checked below.
        s.write_all(&head).await.ok();
        flood.push(s);
    }
    // A client sending a whole request meanwhile gets a clear answer too. It connects after
    // the flood: once it is answered, the node has taken every flooding connection.
    let mut client = connect(port).await;
    client
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("send a request");
    let answer = tokio::time::timeout(Duration::from_secs(10), read_to_close(&mut client))
        .await
        .expect("a client is answered during the flood");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("limits.max_connections"), "{text}");

    // Assert: bounded. While every flooding connection is still open on this side, the node
    // holds next to nothing for them: less than their heads alone.
    let rss_during = rss_kib(pid);
    assert!(
        rss_during < rss_before + 4 * 1024,
        "RSS grew from {rss_before} KiB to {rss_during} KiB during a flood of {FLOOD} connections"
    );
    // Every one of them is closed by the node (503 or a reset), none is kept.
    let answers = tokio::time::timeout(
        Duration::from_secs(10),
        futures::future::join_all(flood.iter_mut().map(read_to_close)),
    )
    .await
    .expect("every flooding connection is closed by the node");
    for answer in answers {
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 503"),
            "{text}"
        );
    }

    // The flood ends: the node serves again.
    drop(idle);
    drop(flood);
    wait_until(
        "served after the flood",
        Duration::from_secs(15),
        || async {
            reqwest::Client::new()
                .get(format!("{}/health", c.master_url()))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        },
    )
    .await;
    assert_eq!(c.append("b", 1).await, 2);
    let h: Value = c.health(0).await;
    assert_eq!(h["last_key"], 2);
    c.wait_log_line(&["limits.max_connections"], Duration::from_secs(10))
        .await;
}
