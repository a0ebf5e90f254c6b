//! `replog cluster`: a master and N secondaries on one machine, the zero-setup way to run
//! replog (SPEC §8).
//!
//! Each node is a child process (`replog serve`) configured through `REPLOG_*` variables, so
//! each can be paused (`kill -STOP <pid>`), killed and watched on its own, exactly like a node
//! on another host. Fault injection is on (`/delay` works as in the seed). Ctrl-C (or SIGTERM)
//! stops every node; a node that dies is reported and the others keep running.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// Options of `replog cluster`.
pub struct ClusterOptions {
    pub secondaries: usize,
    pub base_port: u16,
    pub data_dir: PathBuf,
    pub host: String,
    pub log_file: PathBuf,
    pub extra_config: Option<PathBuf>,
    /// `node.worker_threads` of every node.
    pub worker_threads: usize,
}

struct NodeProc {
    name: String,
    url: String,
    child: Child,
}

/// Runs the cluster until Ctrl-C.
pub async fn run(o: ClusterOptions) -> anyhow::Result<()> {
    if o.secondaries > 64 {
        bail!(
            "--secondaries {} is more than this command runs (64)",
            o.secondaries
        );
    }
    let last_port = o.base_port as usize + o.secondaries;
    if last_port > u16::MAX as usize {
        bail!(
            "--base-port {} leaves no room for {} secondaries",
            o.base_port,
            o.secondaries
        );
    }
    let exe = std::env::current_exe().context("cannot find the replog executable")?;
    let url_of = |port: usize| format!("http://{}:{port}", o.host);
    let names: Vec<String> = (1..=o.secondaries)
        .map(|i| format!("secondary{i}"))
        .collect();
    let secondaries = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{n}={}", url_of(o.base_port as usize + i + 1)))
        .collect::<Vec<_>>()
        .join(",");
    let master_url = url_of(o.base_port as usize);

    let mut nodes = Vec::new();
    let specs = std::iter::once(("master".to_string(), o.base_port as usize)).chain(
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), o.base_port as usize + i + 1)),
    );
    for (name, port) in specs {
        let mut cmd = Command::new(&exe);
        cmd.arg("serve");
        if let Some(c) = &o.extra_config {
            cmd.arg("--config").arg(c);
        }
        let role = if name == "master" {
            "master"
        } else {
            "secondary"
        };
        cmd.env("REPLOG_NODE_NAME", &name)
            .env("REPLOG_NODE_ROLE", role)
            .env("REPLOG_NODE_LISTEN", format!("{}:{port}", o.host))
            .env("REPLOG_NODE_DATA_DIR", o.data_dir.join(&name))
            .env("REPLOG_LOG_FILE", &o.log_file)
            .env("REPLOG_FAULT_ENABLED", "true")
            .env("REPLOG_NODE_WORKER_THREADS", o.worker_threads.to_string())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if role == "master" {
            cmd.env("REPLOG_MASTER_SECONDARIES", &secondaries)
                .env("REPLOG_MASTER_ADVERTISE_URL", &master_url);
        } else {
            cmd.env("REPLOG_SECONDARY_MASTER_URL", &master_url);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        nodes.push(NodeProc {
            name,
            url: url_of(port),
            child,
        });
    }

    // Wait until every node answers its heartbeat (or one of them dies trying).
    let client = reqwest::Client::builder().no_proxy().build()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    for i in 0..nodes.len() {
        loop {
            if let Ok(Some(status)) = nodes[i].child.try_wait() {
                let name = nodes[i].name.clone();
                stop_all(&mut nodes).await;
                bail!("{name} exited during startup ({status}); see its log above");
            }
            let ok = client
                .get(format!("{}/heartbeat", nodes[i].url))
                .timeout(Duration::from_millis(500))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                let name = nodes[i].name.clone();
                stop_all(&mut nodes).await;
                bail!("{name} did not answer on its address within 15 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    println!();
    println!("replog cluster is up ({} nodes):", nodes.len());
    for n in &nodes {
        println!(
            "  {:<12} {:<24} pid {}",
            n.name,
            n.url,
            n.child.id().map_or("?".into(), |p| p.to_string())
        );
    }
    println!(
        "  data in {}/<node>, log in {}; Ctrl-C stops all.",
        o.data_dir.display(),
        o.log_file.display()
    );
    println!(
        "  try: curl -X POST {master_url}/message -H 'Content-Type: application/json' -d '{{\"value\": \"hello\", \"write_concern\": 2}}'"
    );
    println!();

    // Serve until a signal; report nodes that exit on their own.
    let mut gone = vec![false; nodes.len()];
    let signal = crate::startup::shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                for (i, n) in nodes.iter_mut().enumerate() {
                    if !gone[i]
                        && let Ok(Some(status)) = n.child.try_wait()
                    {
                        gone[i] = true;
                        eprintln!("replog cluster: {} exited ({status}); the other nodes keep running", n.name);
                    }
                }
                if gone.iter().all(|g| *g) {
                    bail!("every node has exited");
                }
            }
        }
    }
    println!("replog cluster: stopping");
    stop_all(&mut nodes).await;
    Ok(())
}

/// SIGTERM to every running node, then SIGKILL to any still running after 5 s.
async fn stop_all(nodes: &mut [NodeProc]) {
    for n in nodes.iter_mut() {
        if let Some(pid) = n.child.id() {
            // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
    }
    for n in nodes.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(5), n.child.wait())
            .await
            .is_err()
        {
            let _ = n.child.kill().await;
        }
    }
}
