//! The client commands: `replog append`, `read`, `status` and `bench`.
//!
//! Thin clients of the public HTTP API. Errors are one clear line on stderr and a non-zero
//! exit (via `main`), never a stack of causes. Exit codes: 0 done; 1 failed (nothing was
//! done, or the node could not be reached); 2 bad command line (clap); 3 `append` timed out
//! waiting for its write concern ([`AppendPending`]): the message *is* appended under the
//! printed key and keeps replicating, so a retry with the same `--id` returns that key.

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

use crate::cli::Command;
use crate::protocol::{MasterHealth, Message};

/// Exit code of an `append` answered 504: appended, replication pending.
pub const EXIT_PENDING: u8 = 3;

/// `append` got a 504: the message is appended under `key` but fewer than `w` nodes held it
/// when `--timeout-ms` ran out. `main` exits with [`EXIT_PENDING`].
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AppendPending {
    pub key: u64,
    pub message: String,
}

/// Runs a client command.
pub async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Append {
            value,
            write_concern,
            id,
            timeout_ms,
            master,
            json,
        } => append(&master, value, write_concern, id, timeout_ms, json).await,
        Command::Read {
            node,
            from,
            limit,
            follow,
            json,
        } => read(&node, from, limit, follow, json).await,
        Command::Status { master, json } => status(&master, json).await,
        Command::Bench {
            master,
            clients,
            duration,
            warmup,
            write_concern,
            size,
            max_ops,
            json,
        } => {
            crate::client::bench(BenchOptions {
                master,
                clients,
                duration: Duration::from_secs_f64(duration.max(0.1)),
                warmup: Duration::from_secs_f64(warmup.max(0.0)),
                write_concern,
                size,
                max_ops,
                json,
            })
            .await
        }
        Command::Serve { .. } | Command::Cluster { .. } | Command::Check { .. } => {
            bail!("not a client command")
        }
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

fn base(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}

/// The `error` sentence of an error answer, or the status line.
async fn error_of(resp: reqwest::Response) -> String {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    match serde_json::from_str::<Value>(&text) {
        Ok(v) => match v.get("error").and_then(Value::as_str) {
            Some(e) => format!("{} ({})", e, status.as_u16()),
            None => format!("{status}: {text}"),
        },
        Err(_) => format!("{status}: {}", text.chars().take(200).collect::<String>()),
    }
}

async fn append(
    master: &str,
    value: String,
    write_concern: Option<String>,
    id: Option<String>,
    timeout_ms: Option<u64>,
    as_json: bool,
) -> anyhow::Result<()> {
    let mut body = json!({ "value": value });
    if let Some(w) = write_concern {
        body["write_concern"] = match w.parse::<u64>() {
            Ok(n) => json!(n),
            Err(_) => json!(w),
        };
    }
    if let Some(id) = id {
        body["id"] = json!(id);
    }
    if let Some(t) = timeout_ms {
        body["timeout_ms"] = json!(t);
    }
    let url = format!("{}/message", base(master));
    let resp = http()
        .post(&url)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach the master at {master}"))?;
    if resp.status() == reqwest::StatusCode::GATEWAY_TIMEOUT {
        let text = resp.text().await.unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if let Some(key) = v.get("key").and_then(Value::as_u64) {
            if as_json {
                println!("{v}");
            }
            let error = v
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("timed out");
            return Err(AppendPending {
                key,
                message: format!("{error} (504)"),
            }
            .into());
        }
        bail!(
            "504 Gateway Timeout: {}",
            text.chars().take(200).collect::<String>()
        );
    }
    if !resp.status().is_success() {
        bail!("{}", error_of(resp).await);
    }
    let v: Value = resp.json().await.context("unreadable answer")?;
    if as_json {
        println!("{v}");
    } else {
        let key = v.get("key").and_then(Value::as_u64).unwrap_or(0);
        if v.get("duplicate").and_then(Value::as_bool) == Some(true) {
            println!("{key} (duplicate: already appended under this id)");
        } else {
            println!("{key}");
        }
    }
    Ok(())
}

async fn read(
    node: &str,
    mut from: u64,
    limit: Option<u64>,
    follow: bool,
    as_json: bool,
) -> anyhow::Result<()> {
    let client = http();
    let mut left = limit;
    loop {
        let mut url = format!("{}/messages?from={from}", base(node));
        if let Some(l) = left {
            url.push_str(&format!("&limit={l}"));
        }
        if follow {
            url.push_str("&wait_ms=30000");
        }
        let resp = client
            .get(&url)
            .send()
            .await
            .with_context(|| format!("cannot reach {node}"))?;
        if !resp.status().is_success() {
            bail!("{}", error_of(resp).await);
        }
        let msgs: Vec<Message> = resp.json().await.context("unreadable answer")?;
        for m in &msgs {
            if as_json {
                println!("{}", json!({"key": m.key, "value": m.value}));
            } else {
                println!("{}\t{}", m.key, m.value);
            }
        }
        if let Some(m) = msgs.last() {
            from = m.key + 1;
        }
        if let Some(l) = &mut left {
            *l = l.saturating_sub(msgs.len() as u64);
            if *l == 0 {
                return Ok(());
            }
        }
        if !follow {
            return Ok(());
        }
    }
}

async fn status(master: &str, as_json: bool) -> anyhow::Result<()> {
    let resp = http()
        .get(format!("{}/health", base(master)))
        .send()
        .await
        .with_context(|| format!("cannot reach the master at {master}"))?;
    if !resp.status().is_success() {
        bail!("{}", error_of(resp).await);
    }
    let text = resp.text().await?;
    if as_json {
        println!("{text}");
        return Ok(());
    }
    let h: MasterHealth = serde_json::from_str(&text)
        .map_err(|_| anyhow!("{master} is not a master (its /health says: {text})"))?;
    println!(
        "master {}  mode {}  quorum {}  available {}/{}  last key {}",
        h.name,
        h.mode,
        h.quorum,
        h.available,
        h.nodes.len() + 1,
        h.last_key
    );
    let rows: Vec<[String; 7]> = std::iter::once([
        "NODE".into(),
        "ROLE".into(),
        "STATUS".into(),
        "ACKED KEY".into(),
        "LAG".into(),
        "URL".into(),
        "LAST ERROR".into(),
    ])
    .chain(std::iter::once([
        h.name.clone(),
        "master".into(),
        "-".into(),
        h.last_key.to_string(),
        "0".into(),
        "-".into(),
        String::new(),
    ]))
    .chain(h.nodes.iter().map(|n| {
        [
            n.name.clone(),
            "secondary".into(),
            n.status.clone(),
            n.acked_key.to_string(),
            n.lag.to_string(),
            n.url.clone(),
            n.error.clone().unwrap_or_default(),
        ]
    }))
    .collect();
    let widths: Vec<usize> = (0..7)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(())
}

/// Options of `replog bench`.
pub struct BenchOptions {
    pub master: String,
    pub clients: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub write_concern: String,
    pub size: usize,
    pub max_ops: u64,
    pub json: bool,
}

/// Closed-loop load: each client keeps one request outstanding on its own keep-alive
/// HTTP/1.1 connection, with a pre-built body; latencies of the measured window go into an
/// HDR histogram. Bounded by time and by `max_ops`.
pub async fn bench(o: BenchOptions) -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    let url: reqwest::Url = o.master.parse().context("--master is not a URL")?;
    let host = url.host_str().context("--master has no host")?.to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let w = match o.write_concern.parse::<u64>() {
        Ok(n) => json!(n),
        Err(_) => json!(o.write_concern),
    };
    let body = bytes::Bytes::from(serde_json::to_vec(
        &json!({"value": "x".repeat(o.size), "write_concern": w}),
    )?);
    let started = Instant::now();
    let measure_from = started + o.warmup;
    let end = measure_from + o.duration;
    let budget = Arc::new(AtomicU64::new(o.max_ops));
    let mut tasks = Vec::new();
    for _ in 0..o.clients.max(1) {
        let (host, body, budget) = (host.clone(), body.clone(), budget.clone());
        tasks.push(tokio::spawn(async move {
            bench_client(&host, port, body, measure_from, end, budget).await
        }));
    }
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None);
    for t in tasks {
        let r = t.await?;
        hist.add(&r.hist)?;
        ok += r.ok;
        errors += r.errors;
        if first_error.is_none() {
            first_error = r.first_error;
        }
    }
    // The measured window: warm-up to the end, or to when the op budget ran out.
    let finished = Instant::now().min(end);
    let secs = finished
        .saturating_duration_since(measure_from)
        .as_secs_f64()
        .max(1e-3);
    let q = |p: f64| hist.value_at_quantile(p) as f64 / 1000.0;
    let result = json!({
        "clients": o.clients, "write_concern": o.write_concern, "value_bytes": o.size,
        "seconds": secs, "ops": ok, "errors": errors, "ops_per_s": ok as f64 / secs,
        "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99), "p999_ms": q(0.999),
        "max_ms": hist.max() as f64 / 1000.0, "first_error": first_error,
    });
    if o.json {
        println!("{result}");
    } else {
        println!(
            "{} clients, w={}, {} B values, {:.1} s measured",
            o.clients, o.write_concern, o.size, secs
        );
        println!(
            "{:>12} {:>8} {:>9} {:>9} {:>9} {:>9}",
            "ops/s", "errors", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        println!(
            "{:>12.0} {:>8} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            ok as f64 / secs,
            errors,
            q(0.5),
            q(0.99),
            q(0.999),
            hist.max() as f64 / 1000.0
        );
        if let Some(e) = first_error {
            println!("first error: {e}");
        }
    }
    Ok(())
}

struct ClientResult {
    hist: hdrhistogram::Histogram<u64>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
}

async fn bench_client(
    host: &str,
    port: u16,
    body: bytes::Bytes,
    measure_from: Instant,
    end: Instant,
    budget: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> ClientResult {
    use http_body_util::{BodyExt, Full};
    use std::sync::atomic::Ordering;

    let mut r = ClientResult {
        hist: hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)
            .unwrap_or_else(|_| hdrhistogram::Histogram::new(3).expect("3 sig figs is valid")),
        ok: 0,
        errors: 0,
        first_error: None,
    };
    let authority = format!("{host}:{port}");
    let mut sender = None;
    while Instant::now() < end {
        if budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
            .is_err()
        {
            break;
        }
        if sender.is_none() {
            match tokio::net::TcpStream::connect(&authority).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    match hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(
                        stream,
                    ))
                    .await
                    {
                        Ok((s, conn)) => {
                            tokio::spawn(conn);
                            sender = Some(s);
                        }
                        Err(e) => {
                            record_error(&mut r, measure_from, e.to_string());
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            continue;
                        }
                    }
                }
                Err(e) => {
                    record_error(&mut r, measure_from, e.to_string());
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        let req = hyper::Request::post("/message")
            .header(hyper::header::HOST, &authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body.clone()));
        let Ok(req) = req else { break };
        let t0 = Instant::now();
        let res = tokio::time::timeout(Duration::from_secs(10), async {
            let resp = s.send_request(req).await?;
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, bytes))
        })
        .await;
        let elapsed = t0.elapsed();
        match res {
            Ok(Ok((status, _))) if status.is_success() => {
                if t0 >= measure_from && Instant::now() <= end {
                    r.ok += 1;
                    let _ = r.hist.record(elapsed.as_micros().max(1) as u64);
                }
            }
            Ok(Ok((status, bytes))) => {
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).to_string();
                record_error(&mut r, measure_from, format!("http {status}: {text}"));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(Err(e)) => {
                record_error(&mut r, measure_from, e.to_string());
                sender = None;
            }
            Err(_) => {
                record_error(&mut r, measure_from, "timeout".into());
                sender = None;
            }
        }
    }
    r
}

fn record_error(r: &mut ClientResult, measure_from: Instant, e: String) {
    if Instant::now() >= measure_from {
        r.errors += 1;
        if r.first_error.is_none() {
            r.first_error = Some(e);
        }
    }
}
