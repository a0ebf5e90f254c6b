//! Every bad request of SPEC §2–3 gets its 4xx with a JSON `{"error": "..."}` body and
//! changes nothing: after each one, every node's log (and the master's `last_key`) is what it
//! was before.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Reply, TestCluster};

/// Everything a bad request must not change: each node's messages, the master's last key,
/// each secondary's held-aside count.
#[derive(Debug, PartialEq)]
pub(crate) struct State {
    logs: Vec<Vec<(u64, String)>>,
    last_key: u64,
    aside: Vec<Value>,
}

pub(crate) async fn state(c: &TestCluster) -> State {
    let mut logs = Vec::new();
    let mut aside = Vec::new();
    for i in 0..c.nodes.len() {
        if !c.nodes[i].is_running() {
            continue;
        }
        logs.push(c.messages(i).await);
        if i > 0 {
            aside.push(c.health(i).await["held_aside"].clone());
        }
    }
    State {
        logs,
        last_key: c.last_key().await,
        aside,
    }
}

/// Asserts `r` is the error `status` and that nothing changed since `before`.
pub(crate) async fn refused(c: &TestCluster, before: &State, r: Reply, status: u16, what: &str) {
    r.assert_error(status, what);
    assert_eq!(&state(c).await, before, "{what} changed something");
}

/// The body of `POST /replicate` (layout in `src/protocol.rs`), written by hand so that the
/// test does not share the server's encoder.
pub(crate) fn batch(entries: &[(u64, &str)]) -> Vec<u8> {
    let mut b = vec![1u8];
    b.extend((entries.len() as u32).to_le_bytes());
    for (key, value) in entries {
        b.extend(key.to_le_bytes());
        b.extend(0u16.to_le_bytes());
        b.extend((value.len() as u32).to_le_bytes());
        b.extend(value.as_bytes());
    }
    b
}

async fn cluster() -> TestCluster {
    let c = TestCluster::builder(2)
        .master_with(toml::toml! {
            [limits]
            max_message_bytes = 100
        })
        .start()
        .await;
    assert_eq!(c.append("a", 3).await, 1);
    c.wait_converged(&["a".to_string()], Duration::from_secs(10))
        .await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_bad_appends_get_400_or_413_and_append_nothing() {
    // Arrange
    let c = cluster().await;
    let before = state(&c).await;

    // Act + assert: bodies that are not a JSON object.
    for raw in [
        "not json",
        "",
        "{\"value\": ",
        "[1, 2]",
        "\"value\"",
        "42",
        "null",
    ] {
        let r = c.call_raw(Method::POST, 0, "/message", raw).await;
        refused(&c, &before, r, 400, &format!("body {raw:?}")).await;
    }

    // Objects with a bad field.
    let over = "x".repeat(101);
    let long_id = "i".repeat(257);
    let cases: Vec<(Value, u16)> = vec![
        (json!({}), 400),
        (json!({"write_concern": 1}), 400),
        (json!({"value": 5}), 400),
        (json!({"value": null}), 400),
        (json!({"value": ["a"]}), 400),
        (json!({"value": {"text": "a"}}), 400),
        (json!({"value": "b", "write_concern": 0}), 400),
        (json!({"value": "b", "write_concern": 4}), 400),
        (json!({"value": "b", "write_concern": -1}), 400),
        (json!({"value": "b", "write_concern": 2.5}), 400),
        (json!({"value": "b", "write_concern": "most"}), 400),
        (json!({"value": "b", "write_concern": "4"}), 400),
        (json!({"value": "b", "write_concern": true}), 400),
        (json!({"value": "b", "write_concern": [1]}), 400),
        (
            json!({"value": "b", "write_concern": 18446744073709551615u64}),
            400,
        ),
        (json!({"value": "b", "id": ""}), 400),
        (json!({"value": "b", "id": long_id}), 400),
        (json!({"value": "b", "id": 7}), 400),
        (json!({"value": "b", "timeout_ms": -1}), 400),
        (json!({"value": "b", "timeout_ms": "abc"}), 400),
        (json!({"value": "b", "timeout_ms": 1.5}), 400),
        (json!({"value": over, "write_concern": 1}), 413),
    ];
    for (body, status) in cases {
        let r = c.call(Method::POST, 0, "/message", body.clone()).await;
        refused(&c, &before, r, status, &format!("POST /message {body}")).await;
    }
    // A body far over any limit is refused before it is parsed.
    let huge = format!("{{\"value\": \"{}\"}}", "x".repeat(2 << 20));
    let r = c.call_raw(Method::POST, 0, "/message", huge).await;
    refused(&c, &before, r, 413, "a 2 MiB body").await;

    // The master is unharmed: the next append gets the next key, and 100 bytes are fine.
    let (status, body) = c
        .post(json!({"value": "y".repeat(100), "write_concern": "all"}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["key"], 2);
    assert_eq!(body["write_concern"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_w_outside_1_to_all_never_harms_the_master() {
    // Arrange
    let c = cluster().await;

    // Act: bad write concerns interleaved with good appends, concurrently.
    let mut bad = Vec::new();
    for w in [
        json!(0),
        json!(4),
        json!(5),
        json!(-3),
        json!(1000),
        json!("most"),
    ] {
        for _ in 0..5 {
            let rb = c
                .req(Method::POST, 0, "/message")
                .json(&json!({"value": "bad", "write_concern": w}));
            bad.push(tokio::spawn(async move {
                rb.send().await.expect("POST").status().as_u16()
            }));
        }
    }
    let mut keys = Vec::new();
    for i in 0..10 {
        keys.push(c.append(&format!("good{i}"), (i % 3 + 1) as u64).await);
    }

    // Assert: every bad one is 400; the good ones got keys 2..=11 with no gap; all converge.
    for b in bad {
        assert_eq!(b.await.unwrap(), 400);
    }
    keys.sort();
    assert_eq!(keys, (2..=11).collect::<Vec<u64>>());
    let mut expected = vec!["a".to_string()];
    expected.extend((0..10).map(|i| format!("good{i}")));
    c.wait_converged(&expected, Duration::from_secs(10)).await;
    let h = c.health(0).await;
    assert_eq!(h["mode"], "read-write", "{h}");
    assert_eq!(h["last_key"], 11, "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_append_on_a_secondary_is_421_naming_the_master() {
    // Arrange
    let c = cluster().await;
    let before = state(&c).await;
    let master = c.master_url();

    // Act
    for i in 1..=2 {
        let r = c
            .call(
                Method::POST,
                i,
                "/message",
                json!({"value": "nope", "write_concern": 1}),
            )
            .await;

        // Assert: 421, naming the master's URL; nothing stored anywhere.
        assert_eq!(r.json["master"], master, "{}", r.text);
        let sentence = r.json["error"].as_str().unwrap_or_default();
        assert!(sentence.contains(&master), "{sentence}");
        refused(&c, &before, r, 421, "POST /message on a secondary").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_put_message_is_idempotent_and_never_overwrites() {
    // Arrange: secondary1 holds key 1 = "a" (replicated).
    let c = cluster().await;
    let before = state(&c).await;

    // Act + assert: the same key with the same value is a 2xx no-op…
    let r = c
        .call(Method::PUT, 1, "/message", json!({"key": 1, "value": "a"}))
        .await;
    assert!(
        (200..300).contains(&r.status),
        "same key, same value: {} {}",
        r.status,
        r.text
    );
    assert_eq!(r.json["stored"], false, "{}", r.text);
    assert_eq!(state(&c).await, before);

    // …another value is 409 and the stored value stays.
    let r = c
        .call(
            Method::PUT,
            1,
            "/message",
            json!({"key": 1, "value": "overwritten"}),
        )
        .await;
    assert_eq!(r.json["key"], 1, "{}", r.text);
    refused(&c, &before, r, 409, "PUT key 1 with another value").await;
    assert_eq!(c.messages(1).await, vec![(1, "a".to_string())]);

    // A new key is stored (and the same again is a no-op).
    let r = c
        .call(Method::PUT, 2, "/message", json!({"key": 5, "value": "e"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = c
        .call(Method::PUT, 2, "/message", json!({"key": 5, "value": "e"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let h = c.health(2).await;
    assert_eq!(h["held_aside"], 1, "key 5 waits behind the gap: {h}");
    assert_eq!(c.messages(2).await, vec![(1, "a".to_string())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_bad_put_delay_and_fault_bodies_get_400() {
    // Arrange
    let c = cluster().await;
    let before = state(&c).await;

    // Act + assert: PUT /message.
    for raw in ["not json", "", "[]"] {
        let r = c.call_raw(Method::PUT, 1, "/message", raw).await;
        refused(&c, &before, r, 400, &format!("PUT body {raw:?}")).await;
    }
    for body in [
        json!({"value": "x"}),
        json!({"key": 0, "value": "x"}),
        json!({"key": -1, "value": "x"}),
        json!({"key": 1.5, "value": "x"}),
        json!({"key": "2", "value": "x"}),
        json!({"key": null, "value": "x"}),
        json!({"key": 2}),
        json!({"key": 2, "value": 5}),
        json!({"key": 2, "value": null}),
        json!({"key": 2, "value": "x", "id": ""}),
    ] {
        let r = c.call(Method::PUT, 1, "/message", body.clone()).await;
        refused(&c, &before, r, 400, &format!("PUT /message {body}")).await;
    }

    // POST /delay: negative, non-numeric, missing.
    for raw in [
        "{\"value\": -1}",
        "{\"value\": \"abc\"}",
        "{\"value\": null}",
        "{\"value\": [3]}",
        "{}",
        "not json",
        "3",
    ] {
        let r = c.call_raw(Method::POST, 1, "/delay", raw).await;
        refused(&c, &before, r, 400, &format!("POST /delay {raw}")).await;
    }
    // No delay was armed by any of them.
    assert!(
        !c.nodes[1].output().contains("delay armed"),
        "a refused /delay armed a delay"
    );

    // POST /fault.
    for raw in ["{\"error_rate\": 2}", "{\"error_rate\": \"x\"}", "nope"] {
        let r = c.call_raw(Method::POST, 1, "/fault", raw).await;
        refused(&c, &before, r, 400, &format!("POST /fault {raw}")).await;
    }
    assert_eq!(c.get(1, "/fault").await.json["error_rate"], 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_bad_read_parameters_get_400() {
    // Arrange
    let c = cluster().await;
    let before = state(&c).await;

    // Act + assert: on the master and on a secondary.
    for i in [0, 1] {
        for q in [
            "from=0",
            "from=abc",
            "from=-1",
            "from=",
            "limit=-1",
            "limit=abc",
            "wait_ms=abc",
            "wait_ms=-5",
            "from=1.5",
        ] {
            let r = c.get(i, &format!("/messages?{q}")).await;
            refused(&c, &before, r, 400, &format!("node {i}: GET /messages?{q}")).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_unknown_paths_are_404_and_wrong_methods_405_as_json() {
    // Arrange
    let c = cluster().await;
    let before = state(&c).await;

    // Act + assert
    for (method, i, path) in [
        (Method::GET, 0, "/nope"),
        (Method::POST, 0, "/messages/1"),
        (Method::GET, 1, "/nope"),
        (Method::GET, 0, "/index.html"),
        (Method::POST, 0, "/delay"),
        (Method::GET, 0, "/fault"),
    ] {
        let r = c.send(c.req(method.clone(), i, path).body("{}")).await;
        refused(&c, &before, r, 404, &format!("node {i}: {method} {path}")).await;
    }
    for (method, i, path) in [
        (Method::DELETE, 0, "/message"),
        (Method::GET, 0, "/message"),
        (Method::PUT, 0, "/message"),
        (Method::POST, 0, "/messages"),
        (Method::DELETE, 0, "/messages"),
        (Method::POST, 0, "/health"),
        (Method::POST, 0, "/replicate"),
        (Method::DELETE, 1, "/message"),
        (Method::PUT, 1, "/replicate"),
        (Method::GET, 1, "/delay"),
        (Method::PUT, 1, "/heartbeat"),
        // `GET /` is the cluster page (SPEC §12), `GET /events` its stream: nothing else.
        (Method::POST, 0, "/"),
        (Method::POST, 1, "/events"),
    ] {
        let r = c
            .send(
                c.req(method.clone(), i, path)
                    .header("content-type", "application/json")
                    .body("{\"key\": 1, \"value\": \"zzz\"}"),
            )
            .await;
        refused(&c, &before, r, 405, &format!("node {i}: {method} {path}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_bad_replication_requests_are_refused() {
    // Arrange
    let c = cluster().await;
    let before = state(&c).await;
    let log_id = c.health(0).await["log_id"]
        .as_str()
        .expect("log_id")
        .to_string();
    // The same identity with its first hex digit changed.
    let first = if log_id.starts_with('0') { "1" } else { "0" };
    let other_id = format!("{first}{}", &log_id[1..]);
    let epochs = c.own_epoch_headers(1).await;
    let post = |body: Vec<u8>, id: Option<&str>| {
        let mut rb = c
            .req(Method::POST, 1, "/replicate")
            .header("content-type", "application/octet-stream")
            .body(body);
        for (name, value) in &epochs {
            rb = rb.header(*name, value);
        }
        if let Some(id) = id {
            rb = rb.header("x-replog-log-id", id);
        }
        c.send(rb)
    };

    // Act + assert: garbage bodies.
    for body in [
        b"garbage".to_vec(),
        Vec::new(),
        vec![1, 5, 0, 0, 0],
        {
            let mut b = batch(&[(2, "x")]);
            b.push(0);
            b
        },
        batch(&[(0, "x")]),
        batch(&[(3, "x"), (2, "y")]),
        batch(&[(2, "x"), (2, "x")]),
    ] {
        let r = post(body.clone(), Some(&log_id)).await;
        refused(&c, &before, r, 400, &format!("batch {body:?}")).await;
    }
    // A well-formed batch without the log identity, or with a malformed one.
    let r = post(batch(&[(2, "x")]), None).await;
    refused(&c, &before, r, 400, "batch without a log id").await;
    let r = post(batch(&[(2, "x")]), Some("not-a-log-id")).await;
    refused(&c, &before, r, 400, "batch with a malformed log id").await;
    // A well-formed batch of another log.
    let r = post(batch(&[(2, "x")]), Some(&other_id)).await;
    assert_eq!(r.json["log_id"], log_id.as_str(), "{}", r.text);
    refused(&c, &before, r, 409, "batch of another log").await;
    // A batch that would overwrite key 1.
    let r = post(batch(&[(1, "other")]), Some(&log_id)).await;
    refused(&c, &before, r, 409, "batch overwriting key 1").await;
    // Epoch headers missing, malformed, naming an epoch above the sender's own, or older than
    // the epoch secondary1 accepted (the master's is 1).
    let with_epochs = |epoch: Option<&str>, epochs: Option<&str>| {
        let mut rb = c
            .req(Method::POST, 1, "/replicate")
            .header("content-type", "application/octet-stream")
            .header("x-replog-log-id", &log_id)
            .body(batch(&[(2, "x")]));
        if let Some(e) = epoch {
            rb = rb.header("x-replog-epoch", e);
        }
        if let Some(h) = epochs {
            rb = rb.header("x-replog-epochs", h);
        }
        c.send(rb)
    };
    for (epoch, epochs, status, what) in [
        (None, None, 400, "no epoch headers"),
        (Some("1"), None, 400, "no epoch history"),
        (None, Some("1:1"), 400, "no epoch"),
        (Some("x"), Some("1:1"), 400, "a malformed epoch"),
        (Some("2"), Some("2:5,1:9"), 400, "a history going backwards"),
        (Some("2"), Some("1:1,3:5"), 400, "a history above the epoch"),
        (Some("1"), Some("1;1"), 400, "a malformed history"),
        (
            Some("0"),
            Some(""),
            409,
            "an epoch older than the one it accepted",
        ),
    ] {
        let r = with_epochs(epoch, epochs).await;
        refused(&c, &before, r, status, &format!("batch with {what}")).await;
    }

    // The master's replication is unharmed.
    assert_eq!(c.append("b", 3).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_fault_endpoints_are_404_when_fault_injection_is_off() {
    // Arrange
    let c = TestCluster::builder(1)
        .with(toml::toml! {
            [fault]
            enabled = false
            error_rate = 0.5
        })
        .start()
        .await;
    assert_eq!(c.append("a", 2).await, 1);
    let before = state(&c).await;

    // Act + assert
    let r = c.call(Method::POST, 1, "/delay", json!({"value": 1})).await;
    refused(&c, &before, r, 404, "POST /delay with faults off").await;
    let r = c.get(1, "/fault").await;
    refused(&c, &before, r, 404, "GET /fault with faults off").await;
    let r = c
        .call(Method::POST, 1, "/fault", json!({"error_rate": 1.0}))
        .await;
    refused(&c, &before, r, 404, "POST /fault with faults off").await;

    // And the configured error_rate is not applied: no replication answer is a 500.
    for i in 0..20 {
        c.append(&format!("m{i}"), 2).await;
    }
    assert!(
        !c.app_log().contains("injected fault"),
        "fault.error_rate applied although fault.enabled = false"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_internal_endpoints_need_the_cluster_token() {
    // Arrange: every node shares a token, except secondary2, which has another one.
    let c = TestCluster::builder(2)
        .with(toml::toml! {
            [node]
            cluster_token = "s3cret"
        })
        .start_only(&[1])
        .start()
        .await;
    assert_eq!(c.append("a", 2).await, 1);
    let before = state(&c).await;

    // Act + assert: without the token (or with a wrong one) internal and test endpoints are
    // 401 and change nothing; public ones stay open.
    for auth in [None, Some("Bearer wrong"), Some("s3cret")] {
        let with = |rb: reqwest::RequestBuilder| match auth {
            Some(a) => rb.header("authorization", a),
            None => rb,
        };
        let r = c
            .send(with(c.req(Method::PUT, 1, "/message")).json(&json!({"key": 1, "value": "x"})))
            .await;
        refused(&c, &before, r, 401, &format!("PUT /message, auth {auth:?}")).await;
        let r = c
            .send(with(c.req(Method::POST, 1, "/delay")).json(&json!({"value": 5})))
            .await;
        refused(&c, &before, r, 401, &format!("POST /delay, auth {auth:?}")).await;
        let r = c.send(with(c.req(Method::GET, 1, "/fault"))).await;
        refused(&c, &before, r, 401, &format!("GET /fault, auth {auth:?}")).await;
        let r = c
            .send(
                with(c.req(Method::POST, 1, "/replicate"))
                    .header("x-replog-log-id", before_log_id(&c).await)
                    .body(batch(&[(2, "x")])),
            )
            .await;
        refused(
            &c,
            &before,
            r,
            401,
            &format!("POST /replicate, auth {auth:?}"),
        )
        .await;
    }
    assert_eq!(c.get(1, "/messages").await.status, 200);
    assert_eq!(c.get(1, "/health").await.status, 200);
    let r = c
        .send(
            c.req(Method::PUT, 1, "/message")
                .bearer_auth("s3cret")
                .json(&json!({"key": 1, "value": "a"})),
        )
        .await;
    assert_eq!(r.status, 200, "with the token: {}", r.text);

    // A secondary with another token refuses the master's replication, which /health shows.
    let path = &c.nodes[2].config;
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("s3cret", "other");
    std::fs::write(path, text).unwrap();
    let mut c = c;
    c.nodes[2].start();
    c.wait_up(2).await;
    let w3 = c.spawn_append("b", 3);
    crate::helpers::wait_until(
        "the master shows secondary2's 401",
        Duration::from_secs(10),
        || async {
            let n = c.node_health("secondary2").await;
            n["error"].as_str().is_some_and(|e| e.contains("401"))
        },
    )
    .await;
    assert!(!w3.is_finished(), "w=3 waits: secondary2 stores nothing");
    assert!(c.messages(2).await.is_empty());
}

async fn before_log_id(c: &TestCluster) -> String {
    c.health(0).await["log_id"]
        .as_str()
        .expect("log_id")
        .to_string()
}
