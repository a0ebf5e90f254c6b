//! Configuration (SPEC §7): an invalid file or `REPLOG_<SECTION>_<KEY>` override stops the
//! node at startup with a non-zero exit and a message naming the setting (and the value);
//! a valid override wins over the file.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{BIN, clean_env, reserve_ports, wait_until};

/// A valid master config listening on `port`, logging into `dir`, plus `extra` TOML lines.
fn config(dir: &Path, port: u16, extra: &str) -> String {
    format!(
        r#"
[node]
name = "cfgtest"
role = "master"
listen = "127.0.0.1:{port}"
data_dir = "{data}"

[master]
secondaries = [
  {{ name = "secondary1", url = "http://127.0.0.1:9" }},
  {{ name = "secondary2", url = "http://127.0.0.1:9" }},
]

[storage]
engine = "memory"

[log]
file = "{log}"
{extra}
"#,
        data = dir.join("data").display(),
        log = dir.join("app.log").display(),
    )
}

/// Merges `extra` into the valid config by section: `extra` is TOML whose sections replace
/// keys of the base (so a test can write `[node]\nrole = "leader"`).
fn config_with(dir: &Path, port: u16, extra: &str) -> String {
    let mut base: toml::Table = toml::from_str(&config(dir, port, "")).expect("base config");
    let over: toml::Table = match toml::from_str(extra) {
        Ok(t) => t,
        // Not TOML: append it raw (the bad-syntax case).
        Err(_) => return config(dir, port, extra),
    };
    for (section, v) in over {
        match (base.get_mut(&section), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => b.extend(o),
            (_, v) => {
                base.insert(section, v);
            }
        }
    }
    toml::to_string(&base).expect("toml")
}

/// Kills the process when dropped (a config that wrongly starts a node must not leak it).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(config: &Path, env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve").arg("--config").arg(config);
    clean_env(&mut cmd);
    cmd.envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Proc(cmd.spawn().expect("spawn replog serve"))
}

/// Runs `replog serve` on `text` and expects it to stop by itself with a non-zero exit and
/// an error naming every one of `names`; returns stderr.
fn expect_refused(text: &str, env: &[(&str, &str)], names: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).expect("write config");
    let mut p = serve(&path, env);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = p.0.try_wait().expect("try_wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "replog serve kept running with an invalid config ({names:?}):\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    let mut stdout = String::new();
    use std::io::Read;
    if let Some(mut e) = p.0.stderr.take() {
        e.read_to_string(&mut stderr).expect("stderr");
    }
    if let Some(mut o) = p.0.stdout.take() {
        o.read_to_string(&mut stdout).expect("stdout");
    }
    assert!(
        !status.success() && status.code().is_some(),
        "exit status {status:?} for {names:?}"
    );
    for name in names {
        assert!(
            stderr.contains(name),
            "the error names {name:?}; stderr was:\n{stderr}\nstdout:\n{stdout}"
        );
    }
    assert!(
        stderr.trim_start().starts_with("error:"),
        "one clear error message: {stderr}"
    );
    stderr
}

#[test]
fn t65_invalid_config_files_stop_the_node_naming_the_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = reserve_ports(1)[0];
    let cases: &[(&str, &[&str])] = &[
        ("[node]\nrole = \"leader\"", &["node.role", "leader"]),
        ("[node]\nlisten = \"nowhere\"", &["node.listen", "nowhere"]),
        ("[node]\nlisten = \"127.0.0.1:99999\"", &["node.listen"]),
        (
            "[node]\nlisten = \"localhost:8000\"",
            &["node.listen", "localhost"],
        ),
        ("[node]\nlisten = \"256.1.1.1:8000\"", &["node.listen"]),
        ("[node]\nlisten = \"\"", &["node.listen"]),
        (
            "[node]\ncluster_token = \"has space\"",
            &["node.cluster_token"],
        ),
        (
            "[limits]\nmax_connections = 0",
            &["limits.max_connections", "0"],
        ),
        (
            "[limits]\nheader_read_timeout_ms = 0",
            &["limits.header_read_timeout_ms"],
        ),
        (
            "[limits]\nmax_header_bytes = 10",
            &["limits.max_header_bytes"],
        ),
        (
            "[limits]\nbody_read_timeout_ms = 0",
            &["limits.body_read_timeout_ms"],
        ),
        ("[node]\nname = \"\"", &["node.name"]),
        ("[master]\nquorum = 9", &["master.quorum", "9"]),
        ("[master]\nquorum = 0", &["master.quorum"]),
        (
            "[master]\ndefault_write_concern = 4",
            &["master.default_write_concern", "4"],
        ),
        (
            "[master]\ndefault_write_concern = \"most\"",
            &["master.default_write_concern", "most"],
        ),
        (
            "[master]\nsecondaries = [{ name = \"s\", url = \"ftp://x\" }]",
            &["master.secondaries[0].url", "ftp://x"],
        ),
        (
            "[heartbeat]\nsuspected_after = 3\nunhealthy_after = 2",
            &["heartbeat.unhealthy_after", "2"],
        ),
        (
            "[heartbeat]\ninterval_ms = \"fast\"",
            &["heartbeat.interval_ms", "fast"],
        ),
        ("[heartbeat]\ninterval_ms = 0", &["heartbeat.interval_ms"]),
        (
            "[replication]\nretry_delays_s = []",
            &["replication.retry_delays_s"],
        ),
        (
            "[replication]\nretry_delays_s = [1, -2]",
            &["replication.retry_delays_s", "-2"],
        ),
        (
            "[storage]\nfsync = \"sometimes\"",
            &["storage.fsync", "sometimes"],
        ),
        ("[fault]\nerror_rate = 1.5", &["fault.error_rate", "1.5"]),
        (
            "[limits]\nmax_message_bytes = 0",
            &["limits.max_message_bytes"],
        ),
        ("[node]\nbogus = 1", &["bogus"]),
        ("[heartbeats]\ninterval_ms = 100", &["heartbeats"]),
        ("[node\nname = \"x\"", &["TOML"]),
    ];
    for (extra, names) in cases {
        let text = config_with(dir.path(), port, extra);
        expect_refused(&text, &[], names);
    }
}

#[test]
fn t65_invalid_env_overrides_stop_the_node_naming_the_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = reserve_ports(1)[0];
    let text = config(dir.path(), port, "");
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "REPLOG_HEARTBEAT_INTERVAL_MS",
            "fast",
            &["heartbeat.interval_ms", "fast"],
        ),
        ("REPLOG_NODE_ROLE", "leader", &["node.role", "leader"]),
        ("REPLOG_MASTER_QUORUM", "9", &["master.quorum", "9"]),
        ("REPLOG_NODE_LISTEN", "nowhere", &["node.listen", "nowhere"]),
        ("REPLOG_FAULT_ERROR_RATE", "2", &["fault.error_rate"]),
        (
            "REPLOG_HEARTBEATS_INTERVAL_MS",
            "100",
            &["REPLOG_HEARTBEATS_INTERVAL_MS"],
        ),
    ];
    for (var, value, names) in cases {
        expect_refused(&text, &[(var, value)], names);
    }
}

#[test]
fn t65_a_token_file_others_can_read_an_empty_one_or_two_tokens_stop_the_node() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = reserve_ports(1)[0];
    let file = |name: &str, text: &str, mode: u32| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path.display().to_string()
    };
    let secret = "t65-secret-token-value";
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            file("world", secret, 0o644),
            vec!["node.cluster_token_file", "644", "chmod 600"],
        ),
        (
            file("group", secret, 0o640),
            vec!["node.cluster_token_file", "640"],
        ),
        (
            file("empty", " \n", 0o600),
            vec!["node.cluster_token_file", "empty"],
        ),
        (
            file("spaces", "two words", 0o600),
            vec!["node.cluster_token_file"],
        ),
        (
            dir.path().join("missing").display().to_string(),
            vec!["node.cluster_token_file", "missing"],
        ),
    ];
    for (path, names) in &cases {
        let text = config_with(
            dir.path(),
            port,
            &format!("[node]\ncluster_token_file = {path:?}"),
        );
        let stderr = expect_refused(&text, &[], names);
        assert!(
            !stderr.contains(secret),
            "the token is never echoed: {stderr}"
        );
        // The same through the environment.
        let base = config(dir.path(), port, "");
        expect_refused(&base, &[("REPLOG_NODE_CLUSTER_TOKEN_FILE", path)], names);
    }
    // A token both inline and by file.
    let ok = file("ok", secret, 0o600);
    let text = config_with(
        dir.path(),
        port,
        &format!("[node]\ncluster_token = \"inline\"\ncluster_token_file = {ok:?}"),
    );
    expect_refused(
        &text,
        &[],
        &["node.cluster_token_file", "node.cluster_token"],
    );
}

#[test]
fn t65_an_address_the_machine_does_not_have_stops_the_node() {
    // A valid address that is not this machine's (TEST-NET-1, RFC 5737): bind fails.
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config_with(dir.path(), 8000, "[node]\nlisten = \"192.0.2.1:8000\"");
    expect_refused(&text, &[], &["node.listen", "192.0.2.1:8000"]);
}

#[test]
fn t65_missing_config_file_and_busy_port_stop_the_node() {
    // A file that does not exist.
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.toml");
    let mut p = serve(&missing, &[]);
    let status = p.0.wait().expect("wait");
    assert!(!status.success());
    let mut stderr = String::new();
    use std::io::Read;
    p.0.stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read");
    assert!(stderr.contains("missing.toml"), "{stderr}");

    // A port another process already listens on.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().unwrap().port();
    expect_refused(&config(dir.path(), port, ""), &[], &["node.listen"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t65_env_overrides_win_over_the_file() {
    // Arrange: a master config, turned into a secondary named "renamed" by the environment.
    let dir = tempfile::tempdir().expect("tempdir");
    let port = reserve_ports(1)[0];
    let path = dir.path().join("node.toml");
    std::fs::write(&path, config(dir.path(), port, "")).expect("write");

    // Act
    let _p = serve(
        &path,
        &[
            ("REPLOG_NODE_ROLE", "secondary"),
            ("REPLOG_NODE_NAME", "renamed"),
            ("REPLOG_FAULT_ENABLED", "true"),
        ],
    );

    // Assert
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://127.0.0.1:{port}/health");
    wait_until("the node is up", Duration::from_secs(15), || {
        let (client, url) = (client.clone(), url.clone());
        async move { client.get(&url).send().await.is_ok() }
    })
    .await;
    let h: serde_json::Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(h["role"], "secondary", "{h}");
    assert_eq!(h["name"], "renamed", "{h}");
    let fault = client
        .get(format!("http://127.0.0.1:{port}/fault"))
        .send()
        .await
        .unwrap();
    assert_eq!(fault.status(), 200, "REPLOG_FAULT_ENABLED=true applies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t65_default_write_concern_and_quorum_come_from_the_config() {
    // Arrange
    let c = crate::helpers::TestCluster::builder(2)
        .master_with(toml::toml! {
            [master]
            default_write_concern = "majority"
            quorum = 3
        })
        .start()
        .await;

    // Act
    let (status, body) = c.post(serde_json::json!({"value": "a"})).await;

    // Assert
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["write_concern"], 2, "majority of 3: {body}");
    assert_eq!(c.health(0).await["quorum"], 3);
}
