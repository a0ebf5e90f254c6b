//! Durability as a user meets it: `replog cluster` in a fresh directory, append, Ctrl-C, run
//! it again, the messages are still there (issue 4, "Done when"); and a data dir is one
//! process's: a second process on it fails to start with a clear error.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::{BIN, TestCluster, clean_env, reserve_ports, run_cli, wait_until};
use crate::support::reserve_consecutive_ports;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// `replog cluster` running in its own process group (as a shell job would).
struct ClusterProcess {
    child: Option<Child>,
    pgid: i32,
}

impl ClusterProcess {
    fn start(cwd: &Path, base_port: u16, out: &Path) -> ClusterProcess {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .expect("output file");
        let mut cmd = Command::new(BIN);
        cmd.args(["cluster", "--base-port", &base_port.to_string()])
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone"))
            .stderr(out)
            .process_group(0);
        clean_env(&mut cmd);
        let child = cmd.spawn().expect("spawn replog cluster");
        let pgid = child.id() as i32;
        ClusterProcess {
            child: Some(child),
            pgid,
        }
    }

    /// Ctrl-C in a terminal: SIGINT to the whole foreground process group.
    fn ctrl_c(&self) {
        // SAFETY: kill(2) on the process group of a child we spawned and have not reaped.
        unsafe {
            libc::kill(-self.pgid, libc::SIGINT);
        }
    }

    /// Waits for `replog cluster` to exit; returns whether it exited successfully.
    async fn wait_exit(&mut self, timeout: Duration) -> bool {
        let child = self.child.as_mut().expect("running");
        let mut status = None;
        wait_until("replog cluster to exit", timeout, || {
            let done = child.try_wait().expect("try_wait");
            if done.is_some() {
                status = done;
            }
            std::future::ready(done.is_some())
        })
        .await;
        self.child = None;
        status.expect("exited").success()
    }
}

impl Drop for ClusterProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Still running (a failed test): take down the whole group, nodes included.
            // SAFETY: as in `ctrl_c`.
            unsafe {
                libc::kill(-self.pgid, libc::SIGKILL);
            }
            let _ = c.wait();
        }
    }
}

async fn wait_heartbeats(urls: &[String]) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    for url in urls {
        wait_until(&format!("{url} up"), SECS(30), || async {
            client
                .get(format!("{url}/heartbeat"))
                .timeout(Duration::from_millis(500))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
    }
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d50_replog_cluster_keeps_its_messages_across_ctrl_c() {
    // Arrange: a new user's empty directory and three consecutive free ports.
    let cwd = tempfile::tempdir().expect("tempdir");
    let out = cwd.path().join("cluster.out");
    let base = reserve_consecutive_ports(3);
    let urls: Vec<String> = (0..3)
        .map(|i| format!("http://127.0.0.1:{}", base + i))
        .collect();

    // Act 1: run it, append two messages (default w: all three nodes), Ctrl-C.
    let mut cluster = ClusterProcess::start(cwd.path(), base, &out);
    wait_heartbeats(&urls).await;
    for (value, key) in [("hello", "1\n"), ("durable world", "2\n")] {
        let o = run_cli(&["append", value, "--master", &urls[0]]).await;
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(stdout(&o), key);
    }
    cluster.ctrl_c();
    assert!(cluster.wait_exit(SECS(20)).await, "Ctrl-C is a clean exit");
    assert!(
        cwd.path().join("data").join("master").is_dir(),
        "data lives under ./data"
    );

    // Act 2: run it again.
    let mut cluster = ClusterProcess::start(cwd.path(), base, &out);
    wait_heartbeats(&urls).await;

    // Assert: every node still has both messages, and the master goes on at key 3.
    for url in &urls {
        let o = run_cli(&["read", "--node", url]).await;
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(stdout(&o), "1\thello\n2\tdurable world\n", "{url}");
    }
    let o = run_cli(&["append", "again", "--master", &urls[0]]).await;
    assert_eq!(stdout(&o), "3\n", "{}", String::from_utf8_lossy(&o.stderr));
    let log = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        log.lines()
            .any(|l| l.contains("master: startup recovery: recovered 2 records")),
        "{log}"
    );
    cluster.ctrl_c();
    assert!(cluster.wait_exit(SECS(20)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d50_second_process_on_the_same_data_dir_fails_to_start() {
    // Arrange: a running node on a disk log.
    let c = TestCluster::builder(0)
        .with(toml::toml! {
            [storage]
            engine = "disk"
        })
        .start()
        .await;
    assert_eq!(c.append("first", 1).await, 1);

    // Act: a second `replog serve` with the same config but another port.
    let config = std::fs::read_to_string(&c.nodes[0].config).expect("config");
    let port = reserve_ports(1)[0];
    let config = config.replace(
        &format!("127.0.0.1:{}", c.nodes[0].port),
        &format!("127.0.0.1:{port}"),
    );
    let path = c.dir().join("second.toml");
    std::fs::write(&path, config).expect("write config");
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null());
    clean_env(&mut cmd);
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let o = tokio::time::timeout(SECS(30), cmd.output())
        .await
        .expect("the second process stops by itself")
        .expect("run replog serve");

    // Assert: it exits non-zero naming the data dir in use; the first one is unaffected.
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.status.success(), "{text}");
    assert!(text.contains("node.data_dir"), "{text}");
    assert!(text.contains("in use by another process"), "{text}");
    assert_eq!(c.append("second", 1).await, 2);
    assert_eq!(c.values(0).await, ["first", "second"]);
}
