//! Test fixtures: real `replog serve` processes on loopback, driven over HTTP.
//!
//! [`TestCluster`] starts a master and N secondaries as child processes of the test, each on
//! its own reserved port, with test-friendly timing (heartbeats every 200 ms, retries after
//! 0.2 s, 0.5 s, 1 s). Faults are real: [`Node::pause`] is SIGSTOP, [`Node::kill`] is SIGKILL.
//! Nothing of the server is mocked.
//!
//! Waits are conditions with deadlines ([`wait_until`]), never bare sleeps. Every node writes
//! its stdout to `<tempdir>/<name>.out`; when a test fails, the tail of each is printed.

#![allow(dead_code)]

use std::collections::HashSet;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_replog");

/// Ports handed out in this process, so two clusters of one test binary never share one.
static USED_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Lock files of the ports this process holds, kept open (and locked) until it exits, so
/// test processes running side by side (nextest runs one process per test) never pick the
/// same port, even while a killed node's port is free before its restart.
static PORT_LOCKS: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());

/// Takes the cross-process lock of `port`; false if another live process holds it.
fn lock_port(port: u16) -> bool {
    use std::os::fd::AsRawFd;
    let dir = std::env::temp_dir().join("replog-it-ports");
    if std::fs::create_dir_all(&dir).is_err() {
        return true; // no shared directory: fall back to the bind check alone
    }
    let Ok(f) = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(port.to_string()))
    else {
        return true;
    };
    // SAFETY: flock(2) on a descriptor we own; the lock lives as long as the File.
    let locked = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if locked {
        PORT_LOCKS.lock().unwrap_or_else(|e| e.into_inner()).push(f);
    }
    locked
}

/// Reserves `n` free loopback ports outside the ephemeral range (so outgoing connections
/// cannot take them between a node's kill and its restart), unique across this process and
/// every other test process on the machine.
pub fn reserve_ports(n: usize) -> Vec<u16> {
    let mut used = USED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let used = used.get_or_insert_with(HashSet::new);
    let mut out = Vec::new();
    let mut tries = 0;
    while out.len() < n {
        tries += 1;
        assert!(tries < 10_000, "no free ports");
        let p: u16 = 20_000 + (rand::random::<u16>() % 12_000);
        if used.contains(&p) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", p)).is_ok() && lock_port(p) {
            used.insert(p);
            out.push(p);
        }
    }
    out
}

/// Polls `check` every 50 ms until it returns true or `timeout` passes (then panics with
/// `what`).
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many connections to local `port` hold received bytes not yet read by the process
/// listening there (`/proc/net/tcp`, `tcp6`: the server side, established, `rx_queue` > 0).
/// A stopped (SIGSTOP) node's kernel still accepts connections and buffers requests for it:
/// this tells a test when requests sent to a stopped node have arrived, before resuming it.
pub fn buffered_requests(port: u16) -> usize {
    let local = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl, local_address, rem_address, st, tx_queue:rx_queue, ...
            cols.len() > 4
                && cols[1].ends_with(&local)
                && cols[3] == "01"
                && cols[4]
                    .split(':')
                    .nth(1)
                    .and_then(|rx| u64::from_str_radix(rx, 16).ok())
                    .is_some_and(|rx| rx > 0)
        })
        .count()
}

/// Waits until `n` requests sent to node at `url` (stopped, say) are in its socket buffers.
pub async fn wait_buffered_requests(url: &str, n: usize, timeout: Duration) {
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("a port in the node's URL");
    wait_until(
        &format!("{n} requests buffered for the node on port {port}"),
        timeout,
        || async { buffered_requests(port) >= n },
    )
    .await;
}

/// Removes `REPLOG_*` and `RUST_LOG` from a child's environment, so settings in the test
/// runner's environment never leak into the nodes (tests set what they need explicitly).
pub fn clean_env(cmd: &mut Command) {
    cmd.env_remove("RUST_LOG");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("REPLOG_") {
            cmd.env_remove(k);
        }
    }
}

/// One node process.
pub struct Node {
    pub name: String,
    pub port: u16,
    pub config: PathBuf,
    pub out: PathBuf,
    child: Option<Child>,
    paused: bool,
}

impl Node {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts (or restarts) the process.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.out)
            .expect("open node output file");
        let err = out.try_clone().expect("clone output file");
        let mut cmd = Command::new(BIN);
        cmd.arg("serve").arg("--config").arg(&self.config);
        clean_env(&mut cmd);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn replog serve");
        self.child = Some(child);
        self.paused = false;
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("node is running").id() as i32
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on a child we spawned and have not reaped.
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }

    /// SIGSTOP, and waits until every thread of the process is stopped: the signal is
    /// delivered asynchronously, and on a loaded machine a request in progress may still be
    /// answered just after `kill(2)` returns. A test that pauses a node and then expects it to
    /// answer nothing must not see that answer. (A short blocking wait: stopping takes
    /// microseconds to milliseconds.)
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
        self.paused = true;
        let pid = self.pid();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !all_threads_stopped(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "{} (pid {pid}) not stopped 10 s after SIGSTOP",
                self.name
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// [`Node::pause`], for callers that prefer to await it.
    pub async fn pause_stopped(&mut self) {
        self.pause();
    }

    /// SIGCONT.
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
        self.paused = false;
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.paused = false;
    }

    /// Waits for the process to exit by itself and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let c = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                self.child = None;
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.paused {
            self.resume();
        }
        self.kill();
    }
}

/// Settings that keep a test node's log on disk (`storage.engine = "disk"`): a killed node
/// restarts with its data.
pub fn on_disk() -> toml::Table {
    toml::toml! {
        [storage]
        engine = "disk"
    }
}

/// The newest segment file of a node's data directory.
pub fn newest_segment(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .expect("data dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .max()
        .expect("a segment")
}

/// The length of the newest segment of `dir` now (the end of the last record written).
pub fn newest_segment_len(dir: &Path) -> u64 {
    std::fs::metadata(newest_segment(dir))
        .expect("metadata")
        .len()
}

/// What a power loss does to writes not yet fsynced: the newest segment of `dir` keeps only
/// its first `len` bytes (its node must be stopped).
pub fn power_loss_back_to(dir: &Path, len: u64) {
    let seg = newest_segment(dir);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .expect("open segment");
    let now = f.metadata().expect("metadata").len();
    assert!(now > len, "{} holds more than {len} bytes", seg.display());
    f.set_len(len).expect("cut");
}

/// Settings every test node gets unless a test overrides them (TOML, merged per section).
pub fn base_settings() -> toml::Table {
    toml::toml! {
        [heartbeat]
        interval_ms = 200
        timeout_ms = 500
        suspected_after = 2
        unhealthy_after = 5

        [replication]
        retry_delays_s = [0.2, 0.5, 1.0]
        request_timeout_ms = 5000

        [storage]
        engine = "memory"

        [fault]
        enabled = true

        [log]
        level = "info"
    }
}

fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Builds a [`TestCluster`].
pub struct ClusterBuilder {
    secondaries: usize,
    all: toml::Table,
    master: toml::Table,
    secondary: toml::Table,
    start: Option<Vec<usize>>,
    /// Failover on: every node a member (`[failover]`).
    failover: bool,
}

impl ClusterBuilder {
    /// Failover on (`[failover] enabled`, every node a member): node 0 is the master at the
    /// first start; after that the cluster elects one (`TestCluster::wait_master`).
    pub fn failover(mut self) -> Self {
        self.failover = true;
        self
    }

    /// Settings for every node (merged over [`base_settings`]).
    pub fn with(mut self, t: toml::Table) -> Self {
        merge(&mut self.all, &t);
        self
    }

    /// Settings for the master only.
    pub fn master_with(mut self, t: toml::Table) -> Self {
        merge(&mut self.master, &t);
        self
    }

    /// Settings for the secondaries only.
    pub fn secondaries_with(mut self, t: toml::Table) -> Self {
        merge(&mut self.secondary, &t);
        self
    }

    /// Start only these secondaries (1-based); the others are configured but not started.
    pub fn start_only(mut self, which: &[usize]) -> Self {
        self.start = Some(which.to_vec());
        self
    }

    pub async fn start(self) -> TestCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = reserve_ports(self.secondaries + 1);
        let log = dir.path().join("app.log");
        let mut nodes = Vec::new();
        for i in 0..=self.secondaries {
            let (name, role) = if i == 0 {
                ("master".to_string(), "master")
            } else {
                (format!("secondary{i}"), "secondary")
            };
            let mut t = base_settings();
            merge(&mut t, &self.all);
            let node = toml::toml! {
                [node]
                name = (name.clone())
                role = role
                listen = (format!("127.0.0.1:{}", ports[i]))
                data_dir = (dir.path().join("data").join(&name).display().to_string())
                [log]
                file = (log.display().to_string())
            };
            merge(&mut t, &node);
            if self.failover {
                let members: Vec<toml::Value> = (0..=self.secondaries)
                    .map(|j| {
                        let name = if j == 0 {
                            "master".to_string()
                        } else {
                            format!("secondary{j}")
                        };
                        toml::Value::Table(toml::toml! {
                            name = name
                            url = (format!("http://127.0.0.1:{}", ports[j]))
                        })
                    })
                    .collect();
                let mut f = toml::Table::new();
                f.insert("enabled".into(), toml::Value::Boolean(true));
                f.insert("members".into(), toml::Value::Array(members));
                let mut wrap = toml::Table::new();
                wrap.insert("failover".into(), toml::Value::Table(f));
                merge(&mut t, &wrap);
            }
            if i == 0 {
                let secondaries: Vec<toml::Value> = (1..=self.secondaries)
                    .map(|j| {
                        toml::Value::Table(toml::toml! {
                            name = (format!("secondary{j}"))
                            url = (format!("http://127.0.0.1:{}", ports[j]))
                        })
                    })
                    .collect();
                let mut m = toml::Table::new();
                m.insert("secondaries".into(), toml::Value::Array(secondaries));
                m.insert(
                    "advertise_url".into(),
                    toml::Value::String(format!("http://127.0.0.1:{}", ports[0])),
                );
                let mut wrap = toml::Table::new();
                wrap.insert("master".into(), toml::Value::Table(m));
                merge(&mut t, &wrap);
                merge(&mut t, &self.master);
            } else {
                merge(&mut t, &self.secondary);
            }
            let config = dir.path().join(format!("{name}.toml"));
            std::fs::write(&config, toml::to_string(&t).expect("toml")).expect("write config");
            nodes.push(Node {
                out: dir.path().join(format!("{name}.out")),
                name,
                port: ports[i],
                config,
                child: None,
                paused: false,
            });
        }
        let mut c = TestCluster {
            nodes,
            log,
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
            dir,
        };
        let which: Vec<usize> = self
            .start
            .clone()
            .unwrap_or_else(|| (1..=self.secondaries).collect());
        for &i in &which {
            c.nodes[i].start();
        }
        for &i in &which {
            c.wait_up(i).await;
        }
        c.nodes[0].start();
        c.wait_up(0).await;
        // The master has heard from every started secondary.
        for &i in &which {
            let name = c.nodes[i].name.clone();
            c.wait_status(&name, "healthy", Duration::from_secs(10))
                .await;
        }
        // With failover, it also took office (a majority holds the record of its epoch).
        if self.failover {
            c.wait_mode("read-write", Duration::from_secs(10)).await;
        }
        c
    }
}

/// A master (`nodes[0]`) and its secondaries (`nodes[1..]`).
pub struct TestCluster {
    pub nodes: Vec<Node>,
    pub log: PathBuf,
    pub client: reqwest::Client,
    dir: tempfile::TempDir,
}

impl TestCluster {
    pub fn builder(secondaries: usize) -> ClusterBuilder {
        ClusterBuilder {
            secondaries,
            all: toml::Table::new(),
            master: toml::Table::new(),
            secondary: toml::Table::new(),
            start: None,
            failover: false,
        }
    }

    /// A master and `n` secondaries with the test defaults, all started.
    pub async fn start(n: usize) -> TestCluster {
        Self::builder(n).start().await
    }

    /// Node `i`'s `data_dir` (at `<tempdir>/data/<name>`).
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir().join("data").join(&self.nodes[i].name)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn master_url(&self) -> String {
        self.nodes[0].url()
    }

    pub fn url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    /// Waits until node `i` answers `/heartbeat`.
    pub async fn wait_up(&self, i: usize) {
        let url = format!("{}/heartbeat", self.url(i));
        let client = self.client.clone();
        let name = self.nodes[i].name.clone();
        wait_until(&format!("{name} up"), Duration::from_secs(15), || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                client
                    .get(&url)
                    .timeout(Duration::from_millis(500))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
    }

    /// POST /message with an arbitrary JSON body: (status, body).
    pub async fn post(&self, body: Value) -> (u16, Value) {
        let resp = self
            .client
            .post(format!("{}/message", self.master_url()))
            .json(&body)
            .send()
            .await
            .expect("POST /message");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Appends `value` with write concern `w`; panics unless 201; returns the key.
    pub async fn append(&self, value: &str, w: u64) -> u64 {
        let (status, body) = self.post(json!({"value": value, "write_concern": w})).await;
        assert_eq!(status, 201, "append {value:?} w={w}: {body}");
        body["key"].as_u64().expect("key")
    }

    /// GET /messages on node `i` as (key, value) pairs.
    pub async fn messages(&self, i: usize) -> Vec<(u64, String)> {
        let v: Value = self
            .client
            .get(format!("{}/messages", self.url(i)))
            .send()
            .await
            .expect("GET /messages")
            .json()
            .await
            .expect("JSON");
        v.as_array()
            .expect("array")
            .iter()
            .map(|m| {
                (
                    m["key"].as_u64().expect("key"),
                    m["value"].as_str().expect("value").to_string(),
                )
            })
            .collect()
    }

    /// The values node `i` shows, in order.
    pub async fn values(&self, i: usize) -> Vec<String> {
        self.messages(i).await.into_iter().map(|(_, v)| v).collect()
    }

    pub async fn health(&self, i: usize) -> Value {
        self.client
            .get(format!("{}/health", self.url(i)))
            .send()
            .await
            .expect("GET /health")
            .json()
            .await
            .expect("JSON")
    }

    /// The epoch headers of a replication request that node `i` takes without reconciling
    /// anything: its own epoch and history (see `docs/log-matching.md`).
    pub async fn own_epoch_headers(&self, i: usize) -> [(&'static str, String); 2] {
        let h = self.health(i).await;
        let pairs: Vec<String> = h["epochs"]
            .as_array()
            .expect("epochs in /health")
            .iter()
            .map(|p| format!("{}:{}", p[0], p[1]))
            .collect();
        [
            ("x-replog-epoch", h["epoch"].to_string()),
            ("x-replog-epochs", pairs.join(",")),
        ]
    }

    /// The master's view of secondary `name`.
    pub async fn node_health(&self, name: &str) -> Value {
        let h = self.health(0).await;
        h["nodes"]
            .as_array()
            .and_then(|ns| ns.iter().find(|n| n["name"] == name).cloned())
            .unwrap_or(Value::Null)
    }

    /// Waits until the master reports `name` with `status`.
    pub async fn wait_status(&self, name: &str, status: &str, timeout: Duration) {
        wait_until(&format!("{name} {status}"), timeout, || async {
            self.node_health(name).await["status"] == status
        })
        .await;
    }

    /// Waits until the master's mode is `mode`.
    pub async fn wait_mode(&self, mode: &str, timeout: Duration) {
        wait_until(&format!("master {mode}"), timeout, || async {
            self.health(0).await["mode"] == mode
        })
        .await;
    }

    /// Waits until every running node shows exactly `expected` (key order).
    pub async fn wait_converged(&self, expected: &[String], timeout: Duration) {
        let want: Vec<(u64, String)> = expected
            .iter()
            .enumerate()
            .map(|(i, v)| (i as u64 + 1, v.clone()))
            .collect();
        for i in 0..self.nodes.len() {
            if !self.nodes[i].is_running() {
                continue;
            }
            let name = self.nodes[i].name.clone();
            let want = want.clone();
            wait_until(
                &format!("{name} to show {} messages", want.len()),
                timeout,
                || {
                    let want = want.clone();
                    async move { self.messages(i).await == want }
                },
            )
            .await;
        }
    }

    /// POST /delay on node `i`.
    pub async fn delay(&self, i: usize, secs: f64) {
        let r = self
            .client
            .post(format!("{}/delay", self.url(i)))
            .json(&json!({"value": secs}))
            .send()
            .await
            .expect("POST /delay");
        assert!(r.status().is_success(), "delay: {}", r.status());
    }

    /// The shared log file so far.
    pub fn app_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the shared log file has a line containing every one of `parts` (nodes
    /// write it from a background thread, so a line may land a moment after the event).
    pub async fn wait_log_line(&self, parts: &[&str], timeout: Duration) {
        wait_until(&format!("a log line with {parts:?}"), timeout, || async {
            self.app_log()
                .lines()
                .any(|l| parts.iter().all(|p| l.contains(p)))
        })
        .await;
    }

    /// A request to node `i` at `path` (no body yet).
    pub fn req(&self, method: reqwest::Method, i: usize, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.url(i)))
            .timeout(Duration::from_secs(30))
    }

    /// Sends `rb` and reads the whole answer.
    pub async fn send(&self, rb: reqwest::RequestBuilder) -> Reply {
        Reply::read(rb.send().await.expect("request")).await
    }

    /// `method path` on node `i` with a JSON body.
    pub async fn call(&self, method: reqwest::Method, i: usize, path: &str, body: Value) -> Reply {
        self.send(self.req(method, i, path).json(&body)).await
    }

    /// `method path` on node `i` with these raw body bytes and `Content-Type: application/json`.
    pub async fn call_raw(
        &self,
        method: reqwest::Method,
        i: usize,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        self.send(
            self.req(method, i, path)
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    /// `GET path` on node `i`.
    pub async fn get(&self, i: usize, path: &str) -> Reply {
        self.send(self.req(reqwest::Method::GET, i, path)).await
    }

    /// Starts `POST /message` with `body` in the background; see [`Pending`].
    pub fn spawn_post(&self, body: Value) -> Pending {
        let rb = self
            .client
            .post(format!("{}/message", self.master_url()))
            .json(&body);
        let started = Instant::now();
        Pending {
            started,
            handle: tokio::spawn(async move {
                // No panic here: when a test fails first, its cluster goes away under this
                // request, and a second panic would only add noise.
                let resp = rb.send().await.map_err(|e| e.to_string())?;
                Ok((Reply::read(resp).await, started.elapsed()))
            }),
        }
    }

    /// Starts appending `value` with write concern `w` in the background.
    pub fn spawn_append(&self, value: &str, w: u64) -> Pending {
        self.spawn_post(json!({"value": value, "write_concern": w}))
    }

    /// Failover: waits until a running node other than those in `not` is the master (its
    /// `/health` says so, and it took office: a w=1 append would be taken), and returns it.
    pub async fn wait_master(&self, not: &[usize], timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            for i in 0..self.nodes.len() {
                if not.contains(&i) || !self.nodes[i].is_running() || self.nodes[i].paused {
                    continue;
                }
                let r = self
                    .client
                    .get(format!("{}/health", self.url(i)))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await;
                if let Ok(r) = r
                    && let Ok(h) = r.json::<Value>().await
                    && h["role"] == "master"
                    && h["mode"] == "read-write"
                {
                    return i;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no master elected within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The master's `last_key`.
    pub async fn last_key(&self) -> u64 {
        self.health(0).await["last_key"].as_u64().expect("last_key")
    }

    /// Waits until the master reports `lag` 0 for `name`.
    pub async fn wait_lag_zero(&self, name: &str, timeout: Duration) {
        wait_until(&format!("{name} lag 0"), timeout, || async {
            let n = self.node_health(name).await;
            n["lag"] == 0 && n["acked_key"] == self.last_key().await
        })
        .await;
    }

    /// Pauses every node in `which` (SIGSTOP) and waits until the master calls each
    /// `unhealthy`.
    pub async fn pause_until_unhealthy(&mut self, which: &[usize]) {
        for &i in which {
            self.nodes[i].pause();
        }
        for &i in which {
            let name = self.nodes[i].name.clone();
            self.wait_status(&name, "unhealthy", Duration::from_secs(15))
                .await;
        }
    }

    /// Resumes every node in `which` (SIGCONT) and waits until the master calls each
    /// `healthy`.
    pub async fn resume_until_healthy(&mut self, which: &[usize]) {
        for &i in which {
            self.nodes[i].resume();
        }
        for &i in which {
            let name = self.nodes[i].name.clone();
            self.wait_status(&name, "healthy", Duration::from_secs(15))
                .await;
        }
    }

    /// Sets `fault.error_rate` of node `i` at run time (`POST /fault`).
    pub async fn set_error_rate(&self, i: usize, p: f64) {
        let r = self
            .call(reqwest::Method::POST, i, "/fault", json!({"error_rate": p}))
            .await;
        assert_eq!(r.status, 200, "POST /fault: {}", r.text);
    }
}

/// A whole HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    /// The body as JSON (`Null` when it is not JSON).
    pub json: Value,
}

impl Reply {
    pub async fn read(resp: reqwest::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            json,
        }
    }

    /// Asserts the answer is `status` with a JSON `{"error": "<sentence>", ...}` body.
    #[track_caller]
    pub fn assert_error(&self, status: u16, what: &str) {
        assert_eq!(
            self.status, status,
            "{what}: got {} {}",
            self.status, self.text
        );
        let e = self.json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: the body is not {{\"error\": ...}}: {}", self.text));
        assert!(!e.trim().is_empty(), "{what}: empty error sentence");
        let ct = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            ct.starts_with("application/json"),
            "{what}: content-type {ct:?}"
        );
    }
}

/// A request running in the background.
pub struct Pending {
    pub started: Instant,
    handle: tokio::task::JoinHandle<Result<(Reply, Duration), String>>,
}

impl Pending {
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Waits for the answer (panics after `timeout`); returns it and how long it took.
    pub async fn join(self, timeout: Duration) -> (Reply, Duration) {
        tokio::time::timeout(timeout, self.handle)
            .await
            .unwrap_or_else(|_| panic!("no answer within {timeout:?}"))
            .expect("request task")
            .unwrap_or_else(|e| panic!("POST /message failed: {e}"))
    }
}

/// Runs the `replog` binary with `args` (a client command) and returns its output.
pub async fn run_cli(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null());
    clean_env(&mut cmd);
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("the CLI finishes within 30 s")
        .expect("run replog")
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("TEST_LOG").is_some() {
            for n in &self.nodes {
                let out = n.output();
                let tail: Vec<&str> = out.lines().rev().take(60).collect();
                eprintln!("----- {} (last {} lines) -----", n.name, tail.len());
                for l in tail.into_iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

/// Whether every thread of process `pid` is stopped (state `T` or `t` in its `stat`).
fn all_threads_stopped(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
            // The state follows the parenthesised command name.
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['T', 't']))
        })
    })
}
