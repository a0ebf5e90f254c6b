//! `GET /metrics`: valid Prometheus text (checked by a small strict parser below) on both
//! roles; append counters by w and outcome; and the replication lag figures (messages and
//! seconds), retries and health of a secondary move while it is paused and come back.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::json;

use crate::helpers::{TestCluster, wait_until};

/// One sample: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parsed exposition: samples, and each family's TYPE.
#[derive(Debug, Default)]
struct Exposition {
    samples: Vec<Sample>,
    types: HashMap<String, String>,
}

impl Exposition {
    /// The value of `name` with exactly these labels.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    fn has_family(&self, name: &str) -> bool {
        self.types.contains_key(name)
    }
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A strict parser of the Prometheus text format 0.0.4: HELP/TYPE lines, samples with
/// escaped label values, float values; each sample belongs to the family TYPE'd before it
/// (histograms: `_bucket`, `_sum`, `_count`); a TYPE appears once per family.
fn parse_prometheus(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    let mut current: Option<(String, String)> = None;
    for (n, line) in text.lines().enumerate() {
        let err = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("TYPE"), Some(name), Some(t)) => {
                    if !valid_name(name) {
                        return Err(err("bad metric name"));
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                        return Err(err("unknown type"));
                    }
                    if out.types.insert(name.to_string(), t.to_string()).is_some() {
                        return Err(err("second TYPE for a family"));
                    }
                    current = Some((name.to_string(), t.to_string()));
                }
                (Some("HELP"), Some(name), _) if valid_name(name) => {}
                (Some("HELP"), _, _) => return Err(err("bad HELP")),
                _ => {} // a comment
            }
            continue;
        }
        // name{labels} value
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => return Err(err("no value")),
        };
        if !valid_name(name) {
            return Err(err("bad metric name"));
        }
        let mut labels = BTreeMap::new();
        let rest = if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let end;
            loop {
                // label name
                let start = chars
                    .peek()
                    .map(|(i, _)| *i)
                    .ok_or_else(|| err("open labels"))?;
                if body[start..].starts_with('}') {
                    end = start + 1;
                    break;
                }
                let eq = body[start..]
                    .find('=')
                    .ok_or_else(|| err("label without ="))?;
                let lname = &body[start..start + eq];
                if !valid_name(lname) {
                    return Err(err("bad label name"));
                }
                for _ in 0..=eq {
                    chars.next();
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(err("label value not quoted"));
                }
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            _ => return Err(err("bad escape")),
                        },
                        Some((_, '"')) => break,
                        Some((_, c)) => value.push(c),
                        None => return Err(err("unterminated label value")),
                    }
                }
                if labels.insert(lname.to_string(), value).is_some() {
                    return Err(err("repeated label"));
                }
                match chars.next() {
                    Some((_, ',')) => continue,
                    Some((i, '}')) => {
                        end = i + 1;
                        break;
                    }
                    _ => return Err(err("expected , or }")),
                }
            }
            &body[end..]
        } else {
            rest
        };
        let mut fields = rest.split_whitespace();
        let value = fields.next().ok_or_else(|| err("no value"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| err("value is not a number"))?,
        };
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|_| err("bad timestamp"))?;
        }
        if fields.next().is_some() {
            return Err(err("trailing fields"));
        }
        let (family, t) = current
            .as_ref()
            .ok_or_else(|| err("sample before any TYPE"))?;
        let belongs = match t.as_str() {
            "histogram" => [
                family.clone(),
                format!("{family}_bucket"),
                format!("{family}_sum"),
                format!("{family}_count"),
            ]
            .contains(&name.to_string()),
            _ => name == family,
        };
        if !belongs {
            return Err(err(&format!("sample outside its family {family}")));
        }
        if t == "histogram" && name.ends_with("_bucket") && !labels.contains_key("le") {
            return Err(err("bucket without le"));
        }
        out.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(out)
}

async fn scrape(c: &TestCluster, i: usize) -> Exposition {
    let r = c.get(i, "/metrics").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ct = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        ct.starts_with("text/plain; version=0.0.4"),
        "content-type {ct:?}"
    );
    parse_prometheus(&r.text).unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{}", r.text))
}

#[test]
fn t83_the_test_parser_refuses_what_is_not_prometheus_text() {
    assert!(
        parse_prometheus("# TYPE a counter\na_total 1\n").is_err(),
        "outside its family"
    );
    assert!(parse_prometheus("a 1\n").is_err(), "no TYPE");
    assert!(parse_prometheus("# TYPE a gauge\na{x=\"1} 1\n").is_err());
    assert!(parse_prometheus("# TYPE a gauge\na one\n").is_err());
    assert!(parse_prometheus("# TYPE a gauge\n# TYPE a gauge\n").is_err());
    let ok = parse_prometheus("# HELP a x\n# TYPE a gauge\na{x=\"q\\\"\",y=\"2\"} 1.5\n")
        .expect("valid");
    assert_eq!(ok.get("a", &[("x", "q\""), ("y", "2")]), Some(1.5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t83_metrics_parse_on_both_roles_and_count_appends_by_w_and_outcome() {
    // Arrange
    let c = TestCluster::start(2).await;
    for i in 1..=3 {
        c.append(&format!("m{i}"), 2).await;
    }
    let with_id = json!({"value": "x", "id": "k", "write_concern": 3});
    assert_eq!(c.post(with_id.clone()).await.0, 201);
    assert_eq!(c.post(with_id).await.0, 200);
    assert_eq!(
        c.post(json!({"value": "x", "write_concern": 9})).await.0,
        400
    );
    c.wait_lag_zero("secondary1", Duration::from_secs(10)).await;
    c.wait_lag_zero("secondary2", Duration::from_secs(10)).await;

    // Act
    let m = scrape(&c, 0).await;
    let s = scrape(&c, 1).await;

    // Assert: the master's event counters.
    let appends =
        |w: &str, outcome: &str| m.get("replog_appends_total", &[("w", w), ("outcome", outcome)]);
    assert_eq!(m.types["replog_appends_total"], "counter");
    assert_eq!(appends("2", "created"), Some(3.0));
    assert_eq!(appends("3", "created"), Some(1.0));
    assert_eq!(appends("3", "duplicate"), Some(1.0));
    assert_eq!(appends("1", "created"), Some(0.0));
    assert_eq!(
        m.get("replog_appends_refused_total", &[("status", "400")]),
        Some(1.0)
    );
    assert_eq!(m.types["replog_append_duration_seconds"], "histogram");
    assert_eq!(
        m.get("replog_append_duration_seconds_count", &[("w", "2")]),
        Some(3.0)
    );
    assert_eq!(
        m.get(
            "replog_append_duration_seconds_bucket",
            &[("w", "3"), ("le", "+Inf")]
        ),
        Some(2.0)
    );
    // The master's state.
    assert_eq!(m.get("replog_contiguous_key", &[]), Some(4.0));
    assert_eq!(m.get("replog_read_only", &[]), Some(0.0));
    assert_eq!(m.get("replog_quorum", &[]), Some(2.0));
    assert_eq!(m.get("replog_available_nodes", &[]), Some(3.0));
    assert_eq!(m.get("replog_dedup_ids", &[]), Some(1.0));
    for sec in ["secondary1", "secondary2"] {
        let l = [("secondary", sec)];
        assert_eq!(
            m.get("replog_replication_lag_messages", &l),
            Some(0.0),
            "{sec}"
        );
        assert_eq!(
            m.get("replog_replication_lag_seconds", &l),
            Some(0.0),
            "{sec}"
        );
        assert_eq!(
            m.get("replog_replication_acked_key", &l),
            Some(4.0),
            "{sec}"
        );
        assert!(m.get("replog_replication_inflight_batches", &l).is_some());
        assert_eq!(m.types["replog_replication_retries_total"], "counter");
        assert!(m.get("replog_replication_retries_total", &l).is_some());
        assert_eq!(
            m.get(
                "replog_secondary_health",
                &[("secondary", sec), ("status", "healthy")]
            ),
            Some(1.0)
        );
    }
    // A secondary: its own figures, none of the master's.
    assert_eq!(s.get("replog_contiguous_key", &[]), Some(4.0));
    assert_eq!(s.get("replog_held_aside", &[]), Some(0.0));
    let received: f64 = s
        .samples
        .iter()
        .filter(|x| x.name == "replog_replication_requests_received_total")
        .filter(|x| x.labels["endpoint"] == "replicate" && x.labels["status"] == "200")
        .map(|x| x.value)
        .sum();
    assert!(received >= 1.0, "replication requests counted: {received}");
    assert!(!s.has_family("replog_appends_total"));
    assert!(!s.has_family("replog_replication_lag_messages"));
    assert!(
        s.get(
            "replog_node_info",
            &[
                ("role", "secondary"),
                ("name", "secondary1"),
                ("version", env!("CARGO_PKG_VERSION"))
            ]
        ) == Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t83_lag_figures_move_while_a_secondary_is_paused_and_return_to_zero() {
    // Arrange
    let mut c = TestCluster::start(2).await;
    c.append("m1", 3).await;
    let lag = |m: &Exposition, name: &str, sec: &str| {
        m.get(name, &[("secondary", sec)])
            .unwrap_or_else(|| panic!("{name}{{secondary={sec}}} missing"))
    };

    // Act: pause secondary2, append 5 messages it cannot get.
    c.nodes[2].pause_stopped().await;
    for i in 2..=6 {
        c.append(&format!("m{i}"), 2).await;
    }

    // Assert: secondary2 lags by 5 messages and a growing number of seconds; secondary1
    // does not lag.
    wait_until(
        "secondary2 lags 5 messages",
        Duration::from_secs(10),
        || async {
            lag(
                &scrape(&c, 0).await,
                "replog_replication_lag_messages",
                "secondary2",
            ) == 5.0
        },
    )
    .await;
    let first = lag(
        &scrape(&c, 0).await,
        "replog_replication_lag_seconds",
        "secondary2",
    );
    wait_until(
        "secondary2's lag in seconds grows",
        Duration::from_secs(10),
        || async {
            lag(
                &scrape(&c, 0).await,
                "replog_replication_lag_seconds",
                "secondary2",
            ) >= first + 0.5
        },
    )
    .await;
    let m = scrape(&c, 0).await;
    assert_eq!(
        lag(&m, "replog_replication_lag_messages", "secondary1"),
        0.0
    );
    assert_eq!(lag(&m, "replog_replication_lag_seconds", "secondary1"), 0.0);
    assert_eq!(m.get("replog_appends_waiting", &[]), Some(0.0));
    // The heartbeats call it unhealthy, and its failed request is retried.
    wait_until(
        "secondary2 unhealthy and retried",
        Duration::from_secs(20),
        || async {
            let m = scrape(&c, 0).await;
            m.get(
                "replog_secondary_health",
                &[("secondary", "secondary2"), ("status", "unhealthy")],
            ) == Some(1.0)
                && lag(&m, "replog_replication_retries_total", "secondary2") >= 1.0
                && lag(&m, "replog_heartbeat_failures_in_a_row", "secondary2") >= 5.0
        },
    )
    .await;

    // Resumed: it catches up and the lag figures go back to zero.
    c.nodes[2].resume();
    wait_until("secondary2 caught up", Duration::from_secs(15), || async {
        let m = scrape(&c, 0).await;
        lag(&m, "replog_replication_lag_messages", "secondary2") == 0.0
            && lag(&m, "replog_replication_lag_seconds", "secondary2") == 0.0
            && m.get(
                "replog_secondary_health",
                &[("secondary", "secondary2"), ("status", "healthy")],
            ) == Some(1.0)
    })
    .await;
}
