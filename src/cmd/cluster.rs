//! `replog cluster`: a master and N secondaries on one machine, the zero-setup way to run
//! replog (SPEC §8).
//!
//! Each node is a child process (`replog serve`) configured through `REPLOG_*` variables, so
//! each can be paused (`kill -STOP <pid>`), killed and watched on its own, exactly like a node
//! on another host. Fault injection is on (`/delay` works as in the seed). Ctrl-C (or SIGTERM)
//! stops every node; a node that dies is reported and the others keep running. Once every
//! node answers, the first line printed is the cluster page's URL (SPEC §12).

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
    /// Failover on: every node a member (`[failover]`).
    pub failover: bool,
}

struct NodeProc {
    name: String,
    url: String,
    child: Child,
    /// A shell line that starts this node again by hand, as it was started here (printed
    /// when it exits: a killed master coming back is how failover is watched).
    restart: String,
}

/// `s` as one shell word.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
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
    let members = format!("master={master_url},{secondaries}");

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
        let mut env: Vec<(&str, String)> = vec![
            ("REPLOG_NODE_NAME", name.clone()),
            ("REPLOG_NODE_ROLE", role.to_string()),
            ("REPLOG_NODE_LISTEN", format!("{}:{port}", o.host)),
            (
                "REPLOG_NODE_DATA_DIR",
                o.data_dir.join(&name).display().to_string(),
            ),
            ("REPLOG_LOG_FILE", o.log_file.display().to_string()),
            ("REPLOG_FAULT_ENABLED", "true".into()),
            ("REPLOG_NODE_WORKER_THREADS", o.worker_threads.to_string()),
        ];
        if o.failover {
            // Every node a member; who is master is decided at run time, so no node is told
            // where the master is.
            env.push(("REPLOG_FAILOVER_ENABLED", "true".into()));
            env.push(("REPLOG_FAILOVER_MEMBERS", members.clone()));
        } else if role == "master" {
            env.push(("REPLOG_MASTER_SECONDARIES", secondaries.clone()));
            env.push(("REPLOG_MASTER_ADVERTISE_URL", master_url.clone()));
        } else {
            env.push(("REPLOG_SECONDARY_MASTER_URL", master_url.clone()));
        }
        for (k, v) in &env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        // The nodes end with this command even when it is killed outright (SIGKILL gives it
        // no chance to stop them): the kernel sends each SIGTERM when its parent dies. The
        // parent is this thread, the runtime's main one (`block_on`), alive as long as the
        // process.
        #[cfg(target_os = "linux")]
        // SAFETY: the closure runs in the child between fork and exec and calls only
        // prctl(2) and getppid(2), both async-signal-safe; it allocates nothing.
        unsafe {
            let parent = std::process::id() as libc::pid_t;
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died before the prctl: nothing would ever signal this node.
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("replog cluster exited"));
                }
                Ok(())
            });
        }
        let mut restart: Vec<String> = env
            .iter()
            .map(|(k, v)| format!("{k}={}", shell_word(v)))
            .collect();
        restart.push(shell_word(&exe.display().to_string()));
        restart.push("serve".into());
        if let Some(c) = &o.extra_config {
            restart.push("--config".into());
            restart.push(shell_word(&c.display().to_string()));
        }
        let restart = restart.join(" ");
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        nodes.push(NodeProc {
            name,
            url: url_of(port),
            child,
            restart,
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
    if o.failover {
        // The first master takes office once a majority holds its epoch's record: wait for
        // that, so the first append a new user sends is taken rather than answered 503.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        'office: loop {
            for n in &nodes {
                let h = client
                    .get(format!("{}/health", n.url))
                    .timeout(Duration::from_millis(500))
                    .send()
                    .await;
                if let Ok(r) = h
                    && let Ok(v) = r.json::<serde_json::Value>().await
                    && v["role"] == "master"
                    && v["mode"] == "read-write"
                {
                    break 'office;
                }
            }
            if tokio::time::Instant::now() > deadline {
                eprintln!(
                    "replog cluster: no master in office after 15 s; the nodes keep electing (see their log)"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    println!();
    // The page first: it is where a new user looks (any node serves it).
    println!("cluster page: {master_url}/   (open it in a browser)");
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
        "  data in {}/<node>, {}; Ctrl-C stops all.",
        o.data_dir.display(),
        if o.log_file.as_os_str().is_empty() {
            "no log file".to_string()
        } else {
            format!("log in {}", o.log_file.display())
        }
    );
    if o.failover {
        let all = nodes
            .iter()
            .map(|n| n.url.as_str())
            .collect::<Vec<_>>()
            .join(",");
        println!(
            "  failover on: clients take every node, e.g. replog append --master {all} \"hello\""
        );
    }
    println!(
        "  try: curl -X POST {master_url}/message -H 'Content-Type: application/json' -d '{{\"value\": \"hello\", \"write_concern\": 2}}'"
    );
    println!();

    // Serve until a signal; report nodes that exit on their own.
    let mut gone = vec![false; nodes.len()];
    let signal = crate::node::startup::shutdown_signal();
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
                        eprintln!("  to start it again (in another terminal): {}", n.restart);
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
