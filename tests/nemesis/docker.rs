//! The docker backend of the nemesis: every node a compose service of the shipped
//! `docker-compose.yml` (its image built by `e2e/run.sh`), the faults Docker's own:
//!
//! - pause: `docker pause` (the cgroup freezer: every thread stopped, like SIGSTOP);
//! - kill: `docker kill -s KILL`, later `docker start` (same container, same data volume);
//! - power loss: a kill, then the tail of the newest segment on the volume cut (below);
//! - wipe: `docker kill -s KILL`, the container and its data volume removed, the service
//!   created again by `compose up --no-deps` (a new, empty volume);
//! - partition: `docker network disconnect` from the project network, later `docker network
//!   connect` with the service name as alias again (the master finds a secondary by that
//!   name). A partitioned node reaches nobody and nobody reaches it, the test's clients
//!   included (a published port goes through the network it left).
//!
//! The test's clients talk to the published ports on 127.0.0.1. Each schedule gets a fresh
//! cluster in the compose project `e2e/run.sh` made (its name, ports, image and log dir come
//! from the environment it exports), removed with `compose down -v` when the schedule ends —
//! on a panic too ([`Drop`]), after every paused container is unpaused.
//!
//! `e2e/docker-compose.nemesis.yml` gives the nodes the integration tests' timing (taken from
//! `helpers::base_settings`, so the checker's timing rules hold for both backends), the
//! schedule's fsync policy, the master's recovery wait (`run::RECOVERY_WAIT_MS`), and no
//! restart policy (a killed node stays down until the nemesis starts it).
//!
//! A power loss (fsync `never` schedules) is `docker kill -s KILL`, then the newest segment
//! of the data volume cut: the image has no shell, so the data dir is copied out of the
//! stopped container (`docker cp`), the segment cut on the host and copied back over it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::rng::Rng;
use crate::run::{Report, Setup, run_on};

/// How long one docker or compose command may take (a loaded machine, a container stopping).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

/// What `e2e/run.sh` exports for its compose project.
#[derive(Clone, Debug)]
pub struct Env {
    /// `docker-compose`, or `docker compose`.
    compose: Vec<String>,
    project: String,
    image: String,
    /// Published ports: master, secondary1, …, secondary4.
    ports: Vec<u16>,
    log_dir: Option<PathBuf>,
    root: PathBuf,
}

impl Env {
    /// From `COMPOSE`, `COMPOSE_PROJECT_NAME`, `E2E_IMAGE`, `HOST_PORT_MASTER`,
    /// `HOST_PORT_SECONDARY1`..`4`, `HOST_LOG_DIR`; an error names what is missing.
    pub fn from_env() -> Result<Env, String> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| {
                    format!(
                        "{name} is not set: the docker nemesis runs inside e2e/run.sh (e.g. E2E_PHASES=8 bash e2e/run.sh), which builds the image and exports the compose project's settings"
                    )
                })
        };
        let compose = std::env::var("COMPOSE")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| "docker-compose".into())
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let mut ports = Vec::new();
        for name in [
            "HOST_PORT_MASTER",
            "HOST_PORT_SECONDARY1",
            "HOST_PORT_SECONDARY2",
            "HOST_PORT_SECONDARY3",
            "HOST_PORT_SECONDARY4",
        ] {
            let v = var(name)?;
            ports.push(
                v.trim()
                    .parse::<u16>()
                    .map_err(|e| format!("{name}={v}: {e}"))?,
            );
        }
        Ok(Env {
            compose,
            project: var("COMPOSE_PROJECT_NAME")?,
            image: var("E2E_IMAGE")?,
            ports,
            log_dir: std::env::var_os("HOST_LOG_DIR").map(PathBuf::from),
            root: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        })
    }
}

/// Runs one command; its stdout, or an error with its stderr.
async fn run_cmd(
    program: &str,
    args: &[&str],
    envs: &[(String, String)],
    cwd: &Path,
) -> Result<String, String> {
    let text = format!("{program} {}", args.join(" "));
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    match tokio::time::timeout(COMMAND_TIMEOUT, cmd.output()).await {
        Err(_) => Err(format!("{text}: no answer within {COMMAND_TIMEOUT:?}")),
        Ok(Err(e)) => Err(format!("{text}: {e}")),
        Ok(Ok(out)) if out.status.success() => {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        }
        Ok(Ok(out)) => Err(format!(
            "{text}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// The blocking twin of [`run_cmd`], for [`Drop`]; errors ignored.
fn run_cmd_blocking(program: &str, args: &[&str], envs: &[(String, String)], cwd: &Path) {
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let _ = cmd.status();
}

/// A master and its secondaries as compose services; see the module docs.
pub struct DockerCluster {
    env: Env,
    /// `COMPOSE_FILE` and the `NEMESIS_*` settings every compose command gets.
    compose_env: Vec<(String, String)>,
    /// Service names, master first.
    services: Vec<String>,
    /// Container ids, by node (a wipe makes a new container).
    ids: Vec<String>,
    /// The project network (`<project>_default`).
    network: String,
    /// Whether the project may still have containers (cleared by [`DockerCluster::down`]).
    up: bool,
    /// Failover on: any node may be the master.
    failover: bool,
}

/// The member URL of node `i` (`services[i]`): its service name and the port it listens on in
/// the compose files (8000 for the master, 8000 + i for secondary i).
fn member_url(services: &[String], i: usize) -> String {
    format!("http://{}:{}", services[i], 8000 + i)
}

impl DockerCluster {
    /// Starts a fresh cluster (`compose down -v` first, in case an earlier run left one) and
    /// waits until the master is read-write with every secondary healthy. `failover`: the
    /// election timeout (ms) of a failover cluster (every node a member), `None` for a fixed
    /// master.
    pub async fn start(
        env: &Env,
        secondaries: usize,
        fsync: &str,
        failover: Option<u64>,
    ) -> Result<DockerCluster, String> {
        let mut files = vec![
            "docker-compose.yml",
            "e2e/docker-compose.e2e.yml",
            "e2e/docker-compose.nemesis.yml",
        ];
        match secondaries {
            2 => {}
            4 => files.extend([
                "docker-compose.4-secondaries.yml",
                "e2e/docker-compose.e2e-4.yml",
                "e2e/docker-compose.nemesis-4.yml",
            ]),
            n => {
                return Err(format!(
                    "the compose files have 2 or 4 secondaries, not {n}"
                ));
            }
        }
        if failover.is_some() {
            // The shipped override, then the nemesis's own (its member list and timing).
            files.extend([
                "docker-compose.failover.yml",
                "e2e/docker-compose.nemesis-failover.yml",
            ]);
            if secondaries == 4 {
                files.push("e2e/docker-compose.nemesis-failover-4.yml");
            }
        }
        let services: Vec<String> = std::iter::once("master".to_string())
            .chain((1..=secondaries).map(|i| format!("secondary{i}")))
            .collect();
        let settings = crate::helpers::base_settings();
        let hb = &settings["heartbeat"];
        let rep = &settings["replication"];
        let mut compose_env = vec![
            (
                "NEMESIS_RECOVERY_WAIT_MS".to_string(),
                crate::run::RECOVERY_WAIT_MS.to_string(),
            ),
            ("COMPOSE_PROJECT_NAME".to_string(), env.project.clone()),
            ("COMPOSE_FILE".to_string(), files.join(":")),
            ("E2E_IMAGE".to_string(), env.image.clone()),
            ("NEMESIS_FSYNC".to_string(), fsync.to_string()),
            (
                "NEMESIS_HEARTBEAT_INTERVAL_MS".to_string(),
                hb["interval_ms"].to_string(),
            ),
            (
                "NEMESIS_HEARTBEAT_TIMEOUT_MS".to_string(),
                hb["timeout_ms"].to_string(),
            ),
            (
                "NEMESIS_SUSPECTED_AFTER".to_string(),
                hb["suspected_after"].to_string(),
            ),
            (
                "NEMESIS_UNHEALTHY_AFTER".to_string(),
                hb["unhealthy_after"].to_string(),
            ),
            (
                "NEMESIS_RETRY_DELAYS_S".to_string(),
                rep["retry_delays_s"].to_string(),
            ),
            (
                "NEMESIS_REQUEST_TIMEOUT_MS".to_string(),
                rep["request_timeout_ms"].to_string(),
            ),
        ];
        if let Some(et_ms) = failover {
            // Read by `e2e/docker-compose.nemesis-failover*.yml`.
            let members = (0..=secondaries)
                .map(|i| format!("{}={}", services[i], member_url(&services, i)))
                .collect::<Vec<_>>()
                .join(",");
            compose_env.extend([
                ("NEMESIS_FAILOVER_MEMBERS".to_string(), members),
                ("NEMESIS_ELECTION_TIMEOUT_MS".to_string(), et_ms.to_string()),
            ]);
        }
        let mut c = DockerCluster {
            env: env.clone(),
            compose_env,
            services,
            ids: Vec::new(),
            network: String::new(),
            up: true,
            failover: failover.is_some(),
        };
        c.compose(&["down", "-v", "--remove-orphans", "-t", "1"])
            .await?;
        c.compose(&["up", "-d", "--no-build"]).await?;
        for i in 0..=secondaries {
            let id = c.container_id(i).await?;
            c.ids.push(id);
        }
        c.network = c
            .docker(&[
                "inspect",
                "-f",
                "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
                &c.ids[0],
            ])
            .await?
            .split_whitespace()
            .next()
            .ok_or("the master container is on no network")?
            .to_string();
        c.wait_ready(secondaries).await?;
        Ok(c)
    }

    async fn compose(&self, args: &[&str]) -> Result<String, String> {
        let (program, pre) = self.env.compose.split_first().ok_or("COMPOSE is empty")?;
        let mut all: Vec<&str> = pre.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        run_cmd(program, &all, &self.compose_env, &self.env.root).await
    }

    async fn docker(&self, args: &[&str]) -> Result<String, String> {
        run_cmd("docker", args, &[], &self.env.root).await
    }

    async fn container_id(&self, i: usize) -> Result<String, String> {
        let out = self.compose(&["ps", "-q", &self.services[i]]).await?;
        out.split_whitespace()
            .next()
            .map(str::to_string)
            .ok_or_else(|| format!("compose shows no container for {}", self.services[i]))
    }

    /// The master read-write and every secondary healthy, within 90 s. With failover the
    /// master is whichever node says so (compose starts the secondaries first, and one of
    /// them may win the first election), in office, with every other node healthy.
    async fn wait_ready(&self, secondaries: usize) -> Result<(), String> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut last = String::new();
        let candidates = if self.failover { secondaries + 1 } else { 1 };
        while Instant::now() < deadline {
            for i in 0..candidates {
                let r = client
                    .get(format!("{}/health", self.url(i)))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await;
                if let Ok(r) = r
                    && let Ok(j) = r.json::<serde_json::Value>().await
                {
                    let healthy = j["nodes"]
                        .as_array()
                        .map_or(0, |n| n.iter().filter(|n| n["status"] == "healthy").count());
                    if j["role"] == "master" && j["mode"] == "read-write" && healthy == secondaries
                    {
                        return Ok(());
                    }
                    if i == 0 || j["role"] == "master" {
                        last = j.to_string();
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!(
            "the compose cluster was not read-write with {secondaries} healthy secondaries within 90 s (last /health: {last})"
        ))
    }

    /// Every container unpaused (the nemesis resumed them; this is for a run that stopped
    /// half-way: `compose down` cannot stop a frozen container), then `compose down -v`.
    pub async fn down(&mut self) -> Result<(), String> {
        for id in &self.ids {
            // Errors ignored: most containers are not paused.
            let _ = self.docker(&["unpause", id]).await;
        }
        let r = self
            .compose(&["down", "-v", "--remove-orphans", "-t", "1"])
            .await
            .map(|_| ());
        self.up = r.is_err();
        r
    }
}

impl Drop for DockerCluster {
    fn drop(&mut self) {
        if !self.up {
            return;
        }
        for id in &self.ids {
            run_cmd_blocking("docker", &["unpause", id], &[], &self.env.root);
        }
        if let Some((program, pre)) = self.env.compose.split_first() {
            let mut all: Vec<&str> = pre.iter().map(String::as_str).collect();
            all.extend_from_slice(&["down", "-v", "--remove-orphans", "-t", "1"]);
            run_cmd_blocking(program, &all, &self.compose_env, &self.env.root);
        }
    }
}

impl Cluster for DockerCluster {
    fn kind(&self) -> &'static str {
        "docker"
    }

    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.env.ports[i])
    }

    fn member_url(&self, i: usize) -> String {
        member_url(&self.services, i)
    }

    fn can_partition(&self) -> bool {
        true
    }

    async fn pause(&mut self, i: usize) -> Result<(), String> {
        self.docker(&["pause", &self.ids[i]]).await.map(|_| ())
    }

    async fn resume(&mut self, i: usize) -> Result<(), String> {
        self.docker(&["unpause", &self.ids[i]]).await.map(|_| ())
    }

    async fn kill(&mut self, i: usize) -> Result<(), String> {
        self.docker(&["kill", "-s", "KILL", &self.ids[i]])
            .await
            .map(|_| ())
    }

    async fn start(&mut self, i: usize) -> Result<(), String> {
        self.docker(&["start", &self.ids[i]]).await.map(|_| ())
    }

    async fn wipe(&mut self, i: usize) -> Result<(), String> {
        let volume = self
            .docker(&[
                "inspect",
                "-f",
                "{{range .Mounts}}{{if eq .Destination \"/data\"}}{{.Name}}{{end}}{{end}}",
                &self.ids[i],
            ])
            .await?
            .trim()
            .to_string();
        if volume.is_empty() {
            return Err(format!("{} has no data volume", self.services[i]));
        }
        self.docker(&["kill", "-s", "KILL", &self.ids[i]]).await?;
        self.docker(&["rm", "-f", &self.ids[i]]).await?;
        self.docker(&["volume", "rm", &volume]).await?;
        self.compose(&["up", "-d", "--no-deps", "--no-build", &self.services[i]])
            .await?;
        self.ids[i] = self.container_id(i).await?;
        Ok(())
    }

    async fn cut_tail(
        &mut self,
        i: usize,
        choose: impl FnOnce(u64) -> u64,
    ) -> Result<String, String> {
        // The image has no shell: the data dir is copied out of the stopped container, the
        // newest segment cut here, and copied back over the original.
        let tmp = tempfile::tempdir().map_err(|e| format!("a temporary dir: {e}"))?;
        let local = tmp.path().join("data");
        let local_text = local.display().to_string();
        self.docker(&["cp", &format!("{}:/data", self.ids[i]), &local_text])
            .await?;
        let (seg, text) = crate::cluster::cut_newest_segment(&local, choose)?;
        if let Some(seg) = seg {
            let name = seg
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            self.docker(&[
                "cp",
                &seg.display().to_string(),
                &format!("{}:/data/{name}", self.ids[i]),
            ])
            .await?;
        }
        Ok(text)
    }

    async fn partition(&mut self, i: usize) -> Result<(), String> {
        self.docker(&["network", "disconnect", &self.network, &self.ids[i]])
            .await
            .map(|_| ())
    }

    async fn heal_partition(&mut self, i: usize) -> Result<(), String> {
        // Compose gave the container its service name as an alias; a plain connect would
        // drop it, and the master finds a secondary by that name.
        self.docker(&[
            "network",
            "connect",
            "--alias",
            &self.services[i],
            &self.network,
            &self.ids[i],
        ])
        .await
        .map(|_| ())
    }

    async fn keep_output(&self, dir: &Path) {
        if let Ok(out) = self.compose(&["logs", "--no-color", "-t"]).await {
            let _ = std::fs::write(dir.join("compose.log"), out);
        }
        if let Some(log) = &self.env.log_dir {
            let _ = std::fs::copy(log.join("app.log"), dir.join("app.log"));
        }
    }
}

/// Runs schedule `seed` for `dur` on a fresh compose cluster, heals, checks, removes it.
pub async fn run_schedule(env: &Env, seed: u64, dur: Duration) -> Report {
    let started = Instant::now();
    let mut rng = Rng::fork(seed, 0);
    // The shipped compose files have 2 or 4 secondaries.
    let secondaries = *rng.pick(&[2usize, 2, 4]);
    let fsync = crate::run::fsync_for(rng.pick::<&str>(&["always", "interval", "never"]));
    let setup = Setup::new(
        seed,
        dur,
        started,
        secondaries,
        fsync,
        "docker, ",
        format!(
            "E2E_PHASES=8 E2E_IP_CHANGE=0 NEMESIS_SEED={seed} NEMESIS_SECS={} bash e2e/run.sh",
            dur.as_secs_f64()
        ),
    );
    let mut cluster = match DockerCluster::start(env, secondaries, fsync, None).await {
        Ok(c) => c,
        Err(e) => return Report::failed_to_start(setup, e),
    };
    let mut report = run_on(&mut cluster, rng, setup).await;
    if let Err(e) = cluster.down().await {
        report
            .violations
            .push(format!("the cluster could not be removed: {e}"));
    }
    report
}

/// Runs failover schedule `seed` for `dur` on a fresh compose cluster of members
/// (`failover::run_on`: the draws of the process schedule of that seed, and master partitions
/// besides), heals, checks, removes it.
pub async fn run_failover_schedule(env: &Env, seed: u64, dur: Duration) -> Report {
    let started = Instant::now();
    let mut rng = Rng::fork(seed, crate::failover::STREAM);
    // The shipped compose files have 2 or 4 secondaries, as the failover draws.
    let (secondaries, fsync, et_ms) = crate::failover::draw_shape(&mut rng);
    let setup = crate::failover::setup(
        seed,
        dur,
        started,
        (secondaries, fsync, et_ms),
        "docker, ",
        format!(
            "E2E_PHASES=8 E2E_IP_CHANGE=0 NEMESIS_FAILOVER=1 NEMESIS_SEED={seed} NEMESIS_SECS={} bash e2e/run.sh",
            dur.as_secs_f64()
        ),
    );
    let mut cluster = match DockerCluster::start(env, secondaries, fsync, Some(et_ms)).await {
        Ok(c) => c,
        Err(e) => return Report::failed_to_start(setup, e),
    };
    let mut report = crate::failover::run_on(&mut cluster, rng, setup, et_ms as f64 / 1000.0).await;
    if let Err(e) = cluster.down().await {
        report
            .violations
            .push(format!("the cluster could not be removed: {e}"));
    }
    report
}
