//! Regression tests for what the nemesis found, each replaying the essence of its schedule
//! deterministically (named after the seed where a seed found it).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::TestCluster;

fn disk() -> toml::Table {
    toml::toml! {
        [storage]
        engine = "disk"
    }
}

/// Found by seed 101 (3 secondaries, fsync interval). A restarted master took every key of its log as held by every node (its ack tracker
/// started at the end of its log), so a retry of an id'd message that only the master held
/// was answered 200 with `acks` = ALL at once, whatever its write concern — while a
/// secondary that never got the message was still paused. It must wait for its w like any
/// append (here: time out with 504).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nemesis_seed_101_duplicate_after_master_restart_waits_for_its_w() {
    let mut c = TestCluster::builder(2).with(disk()).start().await;
    // secondary2 stops before the message exists: it cannot hold it.
    c.nodes[2].pause_stopped().await;
    let (status, body) = c
        .post(json!({"value": "only-on-the-master", "id": "dup-1", "write_concern": 2}))
        .await;
    assert_eq!(status, 201, "{body}");
    let key = body["key"].as_u64().expect("key");

    c.nodes[0].kill();
    c.nodes[0].start();
    c.wait_up(0).await;
    c.wait_mode("read-write", Duration::from_secs(15)).await;

    // The retry of the same id with w=3 cannot be met while secondary2 is paused.
    let (status, body) = c
        .post(json!({"value": "only-on-the-master", "id": "dup-1", "write_concern": 3, "timeout_ms": 1500}))
        .await;
    assert_eq!(
        status, 504,
        "a duplicate of key {key} answered before secondary2 could hold it: {body}"
    );
    assert_eq!(body["key"], key, "{body}");
    assert!(body["acks"].as_u64().is_some_and(|a| a < 3), "{body}");

    // Once secondary2 is back, the same retry is answered with all three acks.
    c.resume_until_healthy(&[2]).await;
    let (status, body) = c
        .post(json!({"value": "only-on-the-master", "id": "dup-1", "write_concern": 3, "timeout_ms": 15000}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["key"], key, "{body}");
    assert_eq!(body["acks"], 3, "{body}");
    let on2 = c.messages(2).await;
    assert_eq!(
        on2.len() as u64,
        key,
        "secondary2 holds the message: {on2:?}"
    );
}

/// A TCP relay that can go silent, like a network partition: [`Blackhole::cut`] makes every
/// connection through it dead for good — its sockets stay open, nothing crosses, no FIN or RST
/// is ever sent (as when a container leaves its network and comes back on another address) —
/// and connections made while cut are silent too. After [`Blackhole::heal`], new connections
/// work again; the old ones stay dead.
struct Blackhole {
    port: u16,
    cut: Arc<AtomicBool>,
    epoch: tokio::sync::watch::Sender<u64>,
}

impl Blackhole {
    async fn start(target: SocketAddr) -> Blackhole {
        let port = crate::helpers::reserve_ports(1)[0];
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the relay");
        let cut = Arc::new(AtomicBool::new(false));
        let (epoch, _) = tokio::sync::watch::channel(0u64);
        let graveyard: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (cut2, epoch2) = (cut.clone(), epoch.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if cut2.load(Ordering::Acquire) {
                    graveyard.lock().unwrap().push(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let rx = epoch2.subscribe();
                tokio::spawn(relay(client, server, rx, graveyard.clone()));
            }
        });
        Blackhole { port, cut, epoch }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        self.epoch.send_modify(|e| *e += 1);
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::Release);
    }
}

/// Copies both ways until either side closes, or until a cut: then both sockets are kept
/// open and silent.
async fn relay(
    a: TcpStream,
    b: TcpStream,
    mut cut: tokio::sync::watch::Receiver<u64>,
    graveyard: Arc<Mutex<Vec<TcpStream>>>,
) {
    let (mut ar, mut aw) = a.into_split();
    let (mut br, mut bw) = b.into_split();
    let (mut x, mut y) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    loop {
        tokio::select! {
            r = ar.read(&mut x) => match r {
                Ok(n) if n > 0 && bw.write_all(&x[..n]).await.is_ok() => {}
                _ => return,
            },
            r = br.read(&mut y) => match r {
                Ok(n) if n > 0 && aw.write_all(&y[..n]).await.is_ok() => {}
                _ => return,
            },
            _ = cut.changed() => {
                if let (Ok(a), Ok(b)) = (ar.reunite(aw), br.reunite(bw)) {
                    graveyard.lock().unwrap().extend([a, b]);
                }
                return;
            }
        }
    }
}

/// Found by the docker backend, seed 18 (4 secondaries, fsync never): after the master was
/// partitioned off its network and reconnected (on a new address), replication to a
/// secondary hung for a whole request timeout per idle connection kept from before the
/// partition — up to 32 of them, 30 s each by default — though its heartbeats said it was
/// healthy again. Such connections are dead without a FIN or RST ever arriving. A heartbeat
/// that gets no answer now drops the idle replication connections to that secondary, so what
/// follows the heal goes over fresh ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nemesis_docker_seed_18_replication_after_a_partition_uses_fresh_connections() {
    let mut c = TestCluster::builder(2)
        .with(toml::toml! {
            [storage]
            engine = "disk"
            [replication]
            request_timeout_ms = 30000
        })
        .start()
        .await;
    // The master reaches secondary1 through the relay.
    let relay = Blackhole::start(SocketAddr::from(([127, 0, 0, 1], c.nodes[1].port))).await;
    c.nodes[0].kill();
    let text = std::fs::read_to_string(&c.nodes[0].config).expect("read the master's config");
    let mut config: toml::Table = toml::from_str(&text).expect("parse the master's config");
    config["master"]["secondaries"][0]["url"] = toml::Value::String(relay.url());
    std::fs::write(&c.nodes[0].config, toml::to_string(&config).expect("toml"))
        .expect("write the master's config");
    c.nodes[0].start();
    c.wait_up(0).await;
    c.wait_status("secondary1", "healthy", Duration::from_secs(15))
        .await;
    for i in 0..3 {
        c.append(&format!("before-{i}"), 3).await;
    }

    relay.cut();
    c.wait_status("secondary1", "unhealthy", Duration::from_secs(15))
        .await;
    relay.heal();
    c.wait_status("secondary1", "healthy", Duration::from_secs(15))
        .await;

    // A request on a connection from before the cut would hang for 30 s.
    let (status, body) = c
        .post(json!({"value": "after", "write_concern": 3, "timeout_ms": 10000}))
        .await;
    assert_eq!(
        status, 201,
        "replication to secondary1 did not resume after the partition healed: {body}"
    );
}
