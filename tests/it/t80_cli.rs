//! The thin clients of SPEC §8 (`replog append`, `read`, `status`) against a running cluster,
//! and their one-line error when the node is unreachable.

use std::time::Duration;

use crate::helpers::{TestCluster, reserve_ports, run_cli};

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
