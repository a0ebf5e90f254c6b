//! The client commands: `replog append`, `read`, `status` and `bench`.
//!
//! Thin clients of the public HTTP API. Errors are one clear line on stderr and a non-zero
//! exit (via `main`), never a stack of causes. Exit codes: 0 done; 1 failed (nothing was
//! done, or the node could not be reached); 2 bad command line (clap); 3 `append` timed out
//! waiting for its write concern ([`AppendPending`]): the message *is* appended under the
//! printed key and keeps replicating, so a retry with the same `--id` returns that key.
//!
//! `append`, `read` and `status` use reqwest. `bench` does not: it speaks just enough
//! HTTP/1.1 through `crate::master::http1`, on one single-threaded runtime per core, so that the load
//! generator costs no more CPU per request than wrk (`bench/bench-vs-wrk.sh` checks that); see
//! [`fn@bench`].

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

use crate::cmd::cli::Command;
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
            threads,
            duration,
            warmup,
            write_concern,
            size,
            max_ops,
            timeout_ms,
            json,
        } => {
            crate::cmd::client::bench(BenchOptions {
                master,
                clients,
                threads,
                duration: Duration::from_secs_f64(duration.max(0.1)),
                warmup: Duration::from_secs_f64(warmup.max(0.0)),
                write_concern,
                size,
                max_ops,
                timeout_ms,
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

/// The master among `urls` (comma-separated node URLs): the first that says it is the
/// master, following what the others say of it (`/health`: a secondary names its master). Used
/// by `status` and `bench`; `append` follows 421 answers instead.
pub async fn find_master(urls: &str) -> anyhow::Result<String> {
    let mut queue: std::collections::VecDeque<String> = urls
        .split(',')
        .map(|u| base(u.trim()))
        .filter(|u| !u.is_empty())
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut problems = Vec::new();
    while let Some(url) = queue.pop_front() {
        if !seen.insert(url.clone()) {
            continue;
        }
        let h: Value = match http().get(format!("{url}/health")).send().await {
            Ok(r) if r.status().is_success() => match r.json().await {
                Ok(v) => v,
                Err(e) => {
                    problems.push(format!("{url}: unreadable /health ({e})"));
                    continue;
                }
            },
            Ok(r) => {
                problems.push(format!("{url}: {}", r.status()));
                continue;
            }
            Err(e) => {
                problems.push(format!("{url}: {e}"));
                continue;
            }
        };
        if h["role"] == "master" {
            return Ok(url);
        }
        // With failover a secondary names its master as {name, url}: follow it. Without
        // failover (the master is a plain URL) the master never moves, and naming a
        // secondary stays an error ("not a master"), as it was before failover existed.
        let named = h["master"]["url"].as_str().map(base);
        if named.is_none() && h["master"].is_string() {
            problems.push(format!(
                "{url}: not a master (its master is {})",
                h["master"].as_str().unwrap_or_default()
            ));
            continue;
        }
        match named {
            Some(m) => queue.push_front(m),
            None => problems.push(format!("{url}: a secondary that knows no master now")),
        }
    }
    bail!("no master found among {urls} ({})", problems.join("; "))
}

/// How long `append` keeps looking for a master of a failover cluster that has none in office
/// (the old one is gone and the election has not ended yet): longer than an election takes
/// with the default timeout (5 s, plus the wait for a majority to hold the new epoch).
const FAILOVER_WAIT: Duration = Duration::from_secs(20);

/// What one pass over the URLs found when no node took the append.
struct Missed {
    problems: Vec<String>,
    /// A node said the cluster has failover (421 with `"failover": true`, or 503 taking
    /// office), so a master may be elected in a moment.
    failover: bool,
    /// Every problem left the request unsent or refused with nothing appended (connection
    /// not made, 421, 503 taking office): a new pass cannot append twice.
    unsent: bool,
}

/// `POST /message` to the first of `urls` (comma-separated) that takes it, following 421
/// answers to the master they name and trying the next URL when one does not answer. With
/// failover, while no master is in office (an election after the master died), it passes
/// over the URLs again for up to [`FAILOVER_WAIT`] — only while every try was refused with
/// nothing appended, so that a retry never appends twice.
async fn post_to_master(urls: &str, body: &Value) -> anyhow::Result<reqwest::Response> {
    let deadline = Instant::now() + FAILOVER_WAIT;
    let mut told = false;
    loop {
        let missed = match post_once(urls, body).await {
            Ok(r) => return Ok(r),
            Err(m) => m,
        };
        if !(missed.failover && missed.unsent && Instant::now() < deadline) {
            bail!(
                "cannot reach the master through {urls} ({})",
                missed.problems.join("; ")
            );
        }
        if !told {
            eprintln!(
                "no master in office yet (an election may be running): trying again for up to {} s ({})",
                FAILOVER_WAIT.as_secs(),
                missed.problems.join("; ")
            );
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One pass of [`post_to_master`].
async fn post_once(urls: &str, body: &Value) -> Result<reqwest::Response, Missed> {
    let mut queue: std::collections::VecDeque<String> = urls
        .split(',')
        .map(|u| base(u.trim()))
        .filter(|u| !u.is_empty())
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut missed = Missed {
        problems: Vec::new(),
        failover: false,
        unsent: true,
    };
    while let Some(url) = queue.pop_front() {
        if !seen.insert(url.clone()) {
            continue;
        }
        match http()
            .post(format!("{url}/message"))
            .json(body)
            .send()
            .await
        {
            Ok(r) if r.status() == reqwest::StatusCode::MISDIRECTED_REQUEST => {
                let text = r.text().await.unwrap_or_default();
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if v["failover"] != Value::Bool(true) {
                    // Without failover the master never moves: an append sent to a secondary
                    // is the caller's mistake, reported as the node answered it.
                    let e = v["error"].as_str().unwrap_or("not the master");
                    missed.problems.push(format!("{url}: {e} (421)"));
                    continue;
                }
                missed.failover = true;
                match v["master"].as_str() {
                    Some(m) => queue.push_front(base(m)),
                    None => missed
                        .problems
                        .push(format!("{url}: not the master, and knows none now")),
                }
            }
            Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                // A master of a new epoch answers 503 "taking office" until a majority holds
                // its epoch: nothing was appended, and it is master in a moment.
                let text = r.text().await.unwrap_or_default();
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if v["mode"] == "taking office" {
                    missed.failover = true;
                    let e = v["error"].as_str().unwrap_or("taking office");
                    missed.problems.push(format!("{url}: {e} (503)"));
                    continue;
                }
                // Any other 503 (read-only, recovering) is the answer, shown as it is.
                let mut resp = axum::http::Response::new(text);
                *resp.status_mut() = axum::http::StatusCode::SERVICE_UNAVAILABLE;
                return Ok(reqwest::Response::from(resp));
            }
            Ok(r) => return Ok(r),
            Err(e) => {
                missed.unsent &= e.is_connect();
                missed.problems.push(format!("{url}: {e}"));
            }
        }
    }
    Err(missed)
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
    let resp = post_to_master(master, &body).await?;
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

async fn status(masters: &str, as_json: bool) -> anyhow::Result<()> {
    // One URL with --json: that node's own /health, whatever its role, as before failover
    // existed (the compose healthchecks run exactly this against their own node).
    let master = &if as_json && !masters.contains(',') {
        base(masters.trim())
    } else {
        find_master(masters).await?
    };
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
    // With failover the master moves, and its epoch tells an elected one from the one before
    // (without failover the line stays as scripts have read it since the seed).
    let epoch = if h.master.is_some() {
        format!("  epoch {}", h.epoch)
    } else {
        String::new()
    };
    println!(
        "master {}{epoch}  mode {}  quorum {}  available {}/{}  last key {}",
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
    /// Threads to spread the clients over; 0: one per core.
    pub threads: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub write_concern: String,
    pub size: usize,
    pub max_ops: u64,
    /// `timeout_ms` of every append, if any.
    pub timeout_ms: Option<u64>,
    pub json: bool,
}

/// How long one append may take before the bench counts a timeout and reconnects.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause after a failed request, so a refusing master is not hammered in a hot loop.
const ERROR_PAUSE: Duration = Duration::from_millis(5);

/// Closed-loop load: each client keeps one append outstanding on its own keep-alive HTTP/1.1
/// connection; latencies of the measured window go into an HDR histogram. Bounded by time
/// and by `max_ops`.
///
/// The load generator must not be what limits the measurement, nor eat the cores the nodes
/// need, so it is built like wrk rather than on an HTTP client library: the clients are split
/// over a few threads, each with its own single-threaded runtime (a connection never changes
/// thread, no wake-up crosses threads); the request is one pre-built byte string written with
/// one write; an answer is read into a reused buffer and only its head is parsed (status and
/// framing): 201 counts as a success, anything else as an error (with its body kept for the
/// first error's message).
pub async fn bench(o: BenchOptions) -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    // Several URLs: the master among them now (the bench does not follow a failover).
    let master = if o.master.contains(',') {
        find_master(&o.master).await?
    } else {
        o.master.clone()
    };
    let url: reqwest::Url = master.parse().context("--master is not a URL")?;
    if url.scheme() != "http" {
        bail!("--master must be an http:// URL");
    }
    let host = url.host_str().context("--master has no host")?.to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Arc<[std::net::SocketAddr]> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .collect();
    if addrs.is_empty() {
        bail!("{host} resolves to no address");
    }
    let w = match o.write_concern.parse::<u64>() {
        Ok(n) => json!(n),
        Err(_) => json!(o.write_concern),
    };
    let mut body = json!({"value": "x".repeat(o.size), "write_concern": w});
    if let Some(t) = o.timeout_ms {
        body["timeout_ms"] = json!(t);
    }
    let body = serde_json::to_vec(&body)?;
    let request = append_request(&url, &body);
    let clients = o.clients.max(1);
    let threads = match o.threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    }
    .min(clients);

    let started = Instant::now();
    let plan = Plan {
        measure_from: started + o.warmup,
        end: started + o.warmup + o.duration,
        budget: Arc::new(AtomicU64::new(o.max_ops)),
        addrs,
        request,
    };
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let n = clients / threads + usize::from(t < clients % threads);
        let plan = plan.clone();
        let handle = std::thread::Builder::new()
            .name(format!("bench-{t}"))
            .spawn(move || bench_thread(n, plan))
            .context("cannot start a bench thread")?;
        handles.push(handle);
    }
    let results = tokio::task::spawn_blocking(move || {
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow!("a bench thread panicked"))?)
            .collect::<anyhow::Result<Vec<ClientResult>>>()
    })
    .await??;
    let mut total = ClientResult::new();
    for r in results {
        total.merge(r)?;
    }
    let ClientResult {
        hist,
        ok,
        errors,
        first_error,
    } = total;

    // The measured window: warm-up to the end, or to when the op budget ran out.
    let finished = Instant::now().min(plan.end);
    let secs = finished
        .saturating_duration_since(plan.measure_from)
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

/// What every client of a bench shares.
#[derive(Clone)]
struct Plan {
    measure_from: Instant,
    end: Instant,
    /// Appends left to send, over all clients.
    budget: std::sync::Arc<std::sync::atomic::AtomicU64>,
    addrs: std::sync::Arc<[std::net::SocketAddr]>,
    /// The whole request, head and body.
    request: bytes::Bytes,
}

/// The bytes of `POST /message` with `body`: the same for every append, so built once.
fn append_request(url: &reqwest::Url, body: &[u8]) -> bytes::Bytes {
    let authority = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    };
    let path = format!("{}/message", url.path().trim_end_matches('/'));
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req.into()
}

/// Runs `clients` clients on this thread's own single-threaded runtime.
fn bench_thread(clients: usize, plan: Plan) -> anyhow::Result<ClientResult> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a bench runtime")?;
    rt.block_on(async move {
        let tasks: Vec<_> = (0..clients)
            .map(|_| tokio::spawn(bench_client(plan.clone())))
            .collect();
        let mut total = ClientResult::new();
        for t in tasks {
            total.merge(t.await?)?;
        }
        Ok(total)
    })
}

struct ClientResult {
    hist: hdrhistogram::Histogram<u64>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
}

impl ClientResult {
    fn new() -> Self {
        ClientResult {
            // 1 µs to 60 s at 3 significant figures: valid bounds, so this cannot fail.
            hist: hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)
                .unwrap_or_else(|_| hdrhistogram::Histogram::new(3).expect("3 sig figs is valid")),
            ok: 0,
            errors: 0,
            first_error: None,
        }
    }

    fn merge(&mut self, other: ClientResult) -> anyhow::Result<()> {
        self.hist.add(&other.hist)?;
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        Ok(())
    }

    fn error(&mut self, measure_from: Instant, e: impl FnOnce() -> String) {
        if Instant::now() >= measure_from {
            self.errors += 1;
            if self.first_error.is_none() {
                self.first_error = Some(e());
            }
        }
    }
}

async fn bench_client(plan: Plan) -> ClientResult {
    use std::sync::atomic::Ordering;

    let mut r = ClientResult::new();
    let mut conn: Option<crate::master::http1::Connection> = None;
    // One timer for all of this client's requests, pushed back at most once a second rather
    // than per request (so a request may take 10 to 11 s before it counts as timed out).
    let mut now = Instant::now();
    let mut deadline = now + REQUEST_TIMEOUT;
    let timer = tokio::time::sleep_until(deadline.into());
    tokio::pin!(timer);
    while now < plan.end {
        if plan
            .budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
            .is_err()
        {
            break;
        }
        let c = match &mut conn {
            Some(c) => c,
            None => match crate::master::http1::Connection::open(&plan.addrs).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    r.error(plan.measure_from, || e.to_string());
                    tokio::time::sleep(ERROR_PAUSE).await;
                    now = Instant::now();
                    continue;
                }
            },
        };
        let t0 = now;
        if deadline < t0 + REQUEST_TIMEOUT {
            deadline = t0 + REQUEST_TIMEOUT + Duration::from_secs(1);
            timer.as_mut().reset(deadline.into());
        }
        let request = [&plan.request[..]];
        let res = tokio::select! {
            biased;
            res = c.exchange(&request) => Some(res),
            () = &mut timer => None,
        };
        now = Instant::now();
        match res {
            Some(Ok(a)) if a.status == 201 => {
                if a.close {
                    conn = None;
                }
                if t0 >= plan.measure_from && now <= plan.end {
                    r.ok += 1;
                    let _ = r.hist.record((now - t0).as_micros().max(1) as u64);
                }
            }
            Some(Ok(a)) => {
                let text = c.body_text(200);
                r.error(plan.measure_from, || format!("http {}: {text}", a.status));
                if a.close {
                    conn = None;
                }
                tokio::time::sleep(ERROR_PAUSE).await;
                now = Instant::now();
            }
            Some(Err(e)) => {
                r.error(plan.measure_from, || e);
                conn = None;
            }
            None => {
                r.error(plan.measure_from, || {
                    format!("timeout: no answer in {} s", REQUEST_TIMEOUT.as_secs())
                });
                conn = None;
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_one_well_formed_post() {
        let url: reqwest::Url = "http://127.0.0.1:8000/".parse().unwrap();
        let req = append_request(&url, b"{\"value\":\"x\"}");
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut parsed = httparse::Request::new(&mut headers);
        let head = match parsed.parse(&req).unwrap() {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!("incomplete head"),
        };
        assert_eq!(parsed.method, Some("POST"));
        assert_eq!(parsed.path, Some("/message"));
        let h = |name: &str| {
            parsed
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).into_owned())
        };
        assert_eq!(h("host").as_deref(), Some("127.0.0.1:8000"));
        assert_eq!(h("content-type").as_deref(), Some("application/json"));
        assert_eq!(h("content-length").as_deref(), Some("13"));
        assert_eq!(&req[head..], b"{\"value\":\"x\"}");
    }
}
