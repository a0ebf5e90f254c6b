//! The thin clients of SPEC §8 (`replog append`, `read`, `status`, `bench`) against a running
//! cluster, and their one-line error when the node is unreachable.

use std::time::Duration;

use crate::helpers::{TestCluster, reserve_ports, run_cli};
use crate::t12_reads::WAKE;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t80_append_read_and_status_against_a_cluster() {
    // Arrange
    let mut c = TestCluster::start(2).await;
    let master = c.master_url();

    // Act + assert: append prints the key.
    let o = run_cli(&["append", "hello", "--master", &master]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "1\n");
    let o = run_cli(&["append", "wide world", "-w", "2", "--master", &master]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "2\n");
    let o = run_cli(&["append", "x", "-w", "majority", "--master", &master]).await;
    assert_eq!(stdout(&o), "3\n", "{}", stderr(&o));

    // A refused append exits non-zero with the server's sentence.
    let o = run_cli(&["append", "x", "-w", "4", "--master", &master]).await;
    assert!(!o.status.success());
    assert_eq!(stdout(&o), "");
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("400"), "{}", stderr(&o));

    // read prints key<TAB>value lines, from any node.
    let all = ["hello", "wide world", "x"].map(String::from).to_vec();
    c.wait_converged(&all, Duration::from_secs(10)).await;
    for i in 0..=2 {
        let o = run_cli(&["read", "--node", &c.url(i)]).await;
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(stdout(&o), "1\thello\n2\twide world\n3\tx\n", "node {i}");
    }
    let o = run_cli(&["read", "--node", &c.url(1), "--from", "2"]).await;
    assert_eq!(stdout(&o), "2\twide world\n3\tx\n");

    // status prints mode, quorum and a row per secondary with its status.
    let o = run_cli(&["status", "--master", &master]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("read-write"), "{out}");
    assert!(out.contains("quorum 2"), "{out}");
    let header = out
        .lines()
        .find(|l| l.starts_with("NODE"))
        .expect("a header");
    assert!(header.contains("STATUS") && header.contains("LAG"), "{out}");
    for name in ["secondary1", "secondary2"] {
        let row = out
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("a row for {name}: {out}"));
        assert!(row.contains("healthy"), "{row}");
        assert!(row.contains(&c.url(if name == "secondary1" { 1 } else { 2 })));
    }

    // A dead secondary shows as unhealthy.
    c.nodes[2].kill();
    c.wait_status("secondary2", "unhealthy", Duration::from_secs(10))
        .await;
    let o = run_cli(&["status", "--master", &master]).await;
    let out = stdout(&o);
    let row = out
        .lines()
        .find(|l| l.starts_with("secondary2"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("unhealthy"), "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t80_unreachable_node_is_one_error_line_and_a_non_zero_exit() {
    // Arrange: a port nothing listens on.
    let url = format!("http://127.0.0.1:{}", reserve_ports(1)[0]);

    // Act + assert
    for args in [
        vec!["append", "x", "--master", &url],
        vec!["status", "--master", &url],
        vec!["read", "--node", &url],
    ] {
        let o = run_cli(&args).await;
        assert!(!o.status.success(), "{args:?} exits non-zero");
        assert_eq!(stdout(&o), "", "{args:?}");
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(err.starts_with("error:"), "{err}");
        assert!(err.contains(&url), "{args:?} names the address: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t80_json_output_ids_and_timeouts_with_their_exit_codes() {
    // Arrange
    let mut c = TestCluster::start(2).await;
    let master = c.master_url();

    // Act + assert: --json prints the answer; --id makes a retry a duplicate.
    let o = run_cli(&["append", "a", "--id", "i1", "--json", "--master", &master]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("JSON");
    assert_eq!((v["key"].as_u64(), v["acks"].as_u64()), (Some(1), Some(3)));
    let o = run_cli(&["append", "a", "--id", "i1", "--master", &master]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("1 (duplicate"), "{}", stdout(&o));

    // A write concern not reached in time: exit code 3, one line naming the key; with
    // --json the 504 answer on stdout. The retry with the same id gets the same key.
    c.nodes[2].pause_stopped().await;
    let o = run_cli(&[
        "append",
        "b",
        "--id",
        "i2",
        "-w",
        "3",
        "--timeout-ms",
        "300",
        "--master",
        &master,
    ])
    .await;
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error:") && err.contains("key 2") && err.contains("504"),
        "{err}"
    );
    let o = run_cli(&[
        "append",
        "b",
        "--id",
        "i2",
        "-w",
        "3",
        "--timeout-ms",
        "300",
        "--json",
        "--master",
        &master,
    ])
    .await;
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("JSON");
    assert_eq!(v["key"], 2);
    c.nodes[2].resume();
    let o = run_cli(&["append", "b", "--id", "i2", "-w", "3", "--master", &master]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("2 (duplicate"), "{}", stdout(&o));

    // read --json: one JSON object per line; status --json: the master's /health.
    c.wait_converged(&["a".into(), "b".into()], Duration::from_secs(15))
        .await;
    let o = run_cli(&["read", "--json", "--node", &c.url(1)]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(
        lines,
        vec![
            serde_json::json!({"key": 1, "value": "a"}),
            serde_json::json!({"key": 2, "value": "b"})
        ]
    );
    let o = run_cli(&["status", "--json", "--master", &master]).await;
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("JSON");
    assert_eq!(v["role"], "master");
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t80_errors_from_the_cluster_are_one_line_and_exit_1_usage_errors_exit_2() {
    // Arrange
    let c = TestCluster::start(1).await;

    // Act + assert: refusals by the server.
    for (args, status) in [
        (vec!["append", "x", "--master", &c.url(1)], "421"),
        (
            vec!["read", "--from", "0", "--node", &c.master_url()],
            "400",
        ),
        (vec!["status", "--master", &c.url(1)], "not a master"),
    ] {
        let o = run_cli(&args).await;
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert_eq!(stdout(&o), "", "{args:?}");
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("error:") && err.contains(status),
            "{args:?}: {err}"
        );
    }
    // The compose healthchecks: `status --json` against one secondary prints its own
    // /health and exits 0 (a secondary is healthy without being the master).
    let o = run_cli(&["status", "--json", "--master", &c.url(1)]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("JSON");
    assert_eq!(v["role"], "secondary");
    // A bad command line: clap's usage error, exit 2.
    let o = run_cli(&["append"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = run_cli(&["read", "--from", "x"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t80_read_follow_prints_messages_as_they_arrive() {
    use tokio::io::AsyncBufReadExt;

    // Arrange: a follower on a secondary, started before anything is appended.
    let c = TestCluster::start(1).await;
    let mut cmd = tokio::process::Command::new(crate::helpers::BIN);
    cmd.args(["read", "--follow", "--node", &c.url(1)])
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("replog read --follow");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();

    // Act + assert: each append shows up as a line, in order; once the follower runs (its
    // first line), within WAKE of the append, not at its long poll's deadline.
    for i in 1..=3u64 {
        c.append(&format!("m{i}"), 1).await;
        let within = if i == 1 {
            Duration::from_secs(15)
        } else {
            WAKE
        };
        let line = tokio::time::timeout(within, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("line {i} within {within:?} of its append"))
            .expect("read")
            .expect("the follower is still running");
        assert_eq!(line, format!("{i}\tm{i}"));
    }
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "still following"
    );
    let _ = child.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t80_bench_counts_created_appends_and_reports_refusals_as_errors() {
    // Arrange
    let c = TestCluster::start(2).await;
    let master = c.master_url();
    let bench = |url: String, w: &'static str, max_ops: &'static str| async move {
        let o = run_cli(&[
            "bench",
            "--master",
            &url,
            "-c",
            "4",
            "--threads",
            "2",
            "-d",
            "2",
            "--warmup",
            "0",
            "-w",
            w,
            "--max-ops",
            max_ops,
            "--json",
        ])
        .await;
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        let v: serde_json::Value =
            serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        v
    };

    // Act + assert: every append the op budget allowed is created, held by all three nodes,
    // and counted once.
    let v = bench(master.clone(), "3", "300").await;
    assert_eq!(v["errors"], 0, "{v}");
    let ops = v["ops"].as_u64().expect("ops");
    assert!(ops > 0 && ops <= 300, "{v}");
    let last_key = c.health(0).await["last_key"].as_u64().expect("last_key");
    // An append answered after the measured window ends is in the log but not counted.
    assert!(
        ops <= last_key && last_key <= 300,
        "ops {ops}, last key {last_key}"
    );
    assert!(v["p50_ms"].as_f64().expect("p50") > 0.0, "{v}");

    // Refusals are errors with the server's status, never successes: a write concern the
    // cluster cannot meet (400), and appends sent to a secondary (421).
    for (url, w, status) in [
        (master.clone(), "4", "http 400"),
        (c.url(1), "1", "http 421"),
    ] {
        let v = bench(url, w, "20").await;
        assert_eq!(v["ops"], 0, "{v}");
        assert!(v["errors"].as_u64().expect("errors") > 0, "{v}");
        let first = v["first_error"].as_str().expect("first_error");
        assert!(first.starts_with(status), "{v}");
    }
    assert_eq!(
        c.health(0).await["last_key"].as_u64(),
        Some(last_key),
        "refused appends changed nothing"
    );
}

/// Issue 13, as a new user tries it: `replog cluster --failover` is up with a master in office
/// (the first append is taken, not answered 503); kill -9 the master's PID (printed by the
/// command): another node is master in a later epoch and an append through every URL works;
/// the command prints how to start the killed node again, and that line brings it back as a
/// secondary that catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t80_cluster_failover_survives_the_masters_kill_and_prints_how_to_restart_it() {
    use std::process::Stdio;
    // Arrange
    let Cluster {
        child: mut cluster,
        base,
        work,
        out_path,
    } = cluster(&["--failover"]).await;
    let read = || std::fs::read_to_string(&out_path).unwrap_or_default();
    let urls = (0..3)
        .map(|i| format!("http://127.0.0.1:{}", base + i))
        .collect::<Vec<_>>()
        .join(",");

    // Act + assert: the first append is taken at once.
    let o = run_cli(&["append", "one", "-w", "majority", "--master", &urls]).await;
    assert_eq!(stdout(&o), "1\n", "{}", stderr(&o));
    let o = run_cli(&["status", "--json", "--master", &urls]).await;
    let h: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("JSON");
    let (first, epoch) = (h["name"].clone(), h["epoch"].as_u64().expect("epoch"));
    let pid: i32 = read()
        .lines()
        .find(|l| l.trim_start().starts_with(first.as_str().expect("name")) && l.contains("pid "))
        .and_then(|l| l.rsplit("pid ").next())
        .and_then(|p| p.trim().parse().ok())
        .expect("the master's pid in the output");
    // SAFETY: kill(2) on the pid of a node of the cluster this test started.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }

    // Another node becomes master in a later epoch; appends through every URL work.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let h = loop {
        let o = run_cli(&["status", "--json", "--master", &urls]).await;
        if let Ok(h) = serde_json::from_str::<serde_json::Value>(stdout(&o).trim())
            && h["mode"] == "read-write"
            && h["name"] != first
        {
            break h;
        }
        assert!(std::time::Instant::now() < deadline, "no new master");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(h["epoch"].as_u64().expect("epoch") > epoch, "{h}");
    let o = run_cli(&["append", "two", "-w", "majority", "--master", &urls]).await;
    assert_eq!(stdout(&o), "2\n", "{}", stderr(&o));

    // The command says how to start the killed node again; that line brings it back as a
    // secondary holding both messages.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let line = loop {
        if let Some(l) = read()
            .lines()
            .find_map(|l| l.split_once("to start it again (in another terminal): "))
            .map(|(_, c)| c.to_string())
        {
            break l;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no restart line:\n{}",
            read()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut restarted = tokio::process::Command::new("sh")
        .current_dir(work.path())
        .args(["-c", &format!("exec env {line}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("sh");
    let old = h["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["name"] == first))
        .and_then(|n| n["url"].as_str())
        .expect("the old master's url")
        .to_string();
    crate::helpers::wait_until(
        "the old master back as a secondary holding keys 1-2",
        Duration::from_secs(30),
        || async {
            let o = run_cli(&["status", "--json", "--master", &old]).await;
            serde_json::from_str::<serde_json::Value>(stdout(&o).trim())
                .is_ok_and(|h| h["role"] == "secondary" && h["contiguous_key"] == 2)
        },
    )
    .await;
    let _ = restarted.kill().await;
    // SIGTERM, not SIGKILL: the command stops the nodes it started.
    if let Some(pid) = cluster.id() {
        // SAFETY: kill(2) on the pid of the command this test started.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), cluster.wait()).await;
}

/// `replog cluster` killed outright (SIGKILL: no chance to stop anything) takes its nodes with
/// it: the kernel signals each node when its parent dies, so no node is left holding a port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t80_cluster_killed_with_sigkill_leaves_no_node_running() {
    // Arrange
    let Cluster {
        child: mut cluster,
        base,
        work: _work,
        out_path,
    } = cluster(&[]).await;
    let read = || std::fs::read_to_string(&out_path).unwrap_or_default();
    let answers = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    assert!((0..3).all(|i| answers(base + i)), "{}", read());

    // Act
    cluster.start_kill().expect("SIGKILL");
    let _ = cluster.wait().await;

    // Assert
    crate::helpers::wait_until(
        "every node of the killed command gone",
        Duration::from_secs(15),
        || async { (0..3).all(|i| !answers(base + i)) },
    )
    .await;
}

/// A `replog cluster` this test started, up (it printed "Ctrl-C stops all").
struct Cluster {
    child: tokio::process::Child,
    /// The first of its three consecutive ports.
    base: u16,
    /// Its working directory (data and output), removed when dropped.
    work: tempfile::TempDir,
    /// Its stdout and stderr.
    out_path: std::path::PathBuf,
}

/// Starts `replog cluster` with `extra` arguments on three consecutive free ports (the
/// command's `--base-port` layout) and waits until it says it is up.
async fn cluster(extra: &[&str]) -> Cluster {
    use std::process::Stdio;
    let base = loop {
        let p: u16 = 20_000 + (rand::random::<u16>() % 12_000);
        if (0..3).all(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok()) {
            break p;
        }
    };
    let work = tempfile::tempdir().expect("temp dir");
    let out_path = work.path().join("cluster.out");
    let out = std::fs::File::create(&out_path).expect("output file");
    let mut cmd = std::process::Command::new(crate::helpers::BIN);
    crate::helpers::clean_env(&mut cmd);
    let child = tokio::process::Command::from(cmd)
        .current_dir(work.path())
        .arg("cluster")
        .args(extra)
        .args(["--base-port", &base.to_string()])
        .args(["--data-dir", "data", "--log-file", ""])
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone"))
        .stderr(out)
        .kill_on_drop(true)
        .spawn()
        .expect("replog cluster");
    let read = || std::fs::read_to_string(&out_path).unwrap_or_default();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !read().contains("Ctrl-C stops all") {
        assert!(std::time::Instant::now() < deadline, "not up:\n{}", read());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Cluster {
        child,
        base,
        work,
        out_path,
    }
}
