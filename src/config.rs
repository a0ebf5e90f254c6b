//! Settings: one typed struct per TOML section, loaded in layers and validated once.
//!
//! Layers, later wins: built-in defaults (the `Default` impls below, the only place defaults
//! live), then the TOML file given to `replog serve --config FILE`, then environment variables
//! `REPLOG_<SECTION>_<KEY>` (for containers: `REPLOG_NODE_ROLE=secondary`,
//! `REPLOG_HEARTBEAT_INTERVAL_MS=500`). An environment value is read as a TOML value when it
//! parses as one (`500`, `true`, `[1, 2]`, `[{name = "s1", url = "http://s1:8001"}]`) and as a
//! plain string otherwise; `REPLOG_MASTER_SECONDARIES` and `REPLOG_FAILOVER_MEMBERS` also take
//! `name=url,name=url`.
//!
//! Invariant: a [`Settings`] that left [`Settings::load`] has passed [`Settings::validate`], so
//! the rest of the program never re-checks ranges. Every error names the setting, the value
//! and what is allowed (SPEC §7), and stops the node with a non-zero exit.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// What went wrong while loading settings. Each variant carries what the user needs to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("invalid setting `{setting}`: {message}")]
    Type { setting: String, message: String },
    #[error("invalid setting `{setting}` = {value}: {allowed}")]
    Invalid {
        setting: String,
        value: String,
        allowed: String,
    },
}

fn invalid(setting: &str, value: impl std::fmt::Debug, allowed: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.to_string(),
        value: format!("{value:?}"),
        allowed: allowed.into(),
    }
}

/// A secret setting (the cluster token): its `Debug` form never shows the value, so printing
/// settings cannot leak it into logs.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself: only for sending and comparing it, never for logging.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A node's role in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Master,
    Secondary,
}

/// When the log is fsynced; see the README's durability section for the trade-off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Group commit: a message counts toward w only after an fsync covering it.
    Always,
    /// fsync every `storage.fsync_interval_ms`; a message counts once written to the OS.
    Interval,
    /// Never fsync; the OS writes back when it likes.
    Never,
}

/// Where a node keeps its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Nothing survives a restart.
    Memory,
    /// Segment files under `node.data_dir`.
    Disk,
}

/// The configured default write concern: a number of nodes, or a rule resolved against ALL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteConcern {
    /// Every node: 1 + number of secondaries.
    All,
    /// A majority of all nodes.
    Majority,
    /// Exactly this many nodes, master included.
    Nodes(u64),
}

impl WriteConcern {
    /// The number of nodes this concern asks for in a cluster of `all` nodes.
    pub fn resolve(self, all: usize) -> u64 {
        match self {
            WriteConcern::All => all as u64,
            WriteConcern::Majority => (all / 2 + 1) as u64,
            WriteConcern::Nodes(n) => n,
        }
    }
}

impl<'de> Deserialize<'de> for WriteConcern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(i64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) if n >= 1 => Ok(WriteConcern::Nodes(n as u64)),
            Raw::N(n) => Err(serde::de::Error::custom(format!(
                "{n} is not allowed: use \"all\", \"majority\" or a number of nodes ≥ 1"
            ))),
            Raw::S(s) => match s.to_ascii_lowercase().as_str() {
                "all" => Ok(WriteConcern::All),
                "majority" => Ok(WriteConcern::Majority),
                other => other
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .map(WriteConcern::Nodes)
                    .ok_or_else(|| {
                        serde::de::Error::custom(format!(
                            "{s:?} is not allowed: use \"all\", \"majority\" or a number of nodes ≥ 1"
                        ))
                    }),
            },
        }
    }
}

/// The whole configuration of one node.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub node: NodeSettings,
    pub master: MasterSettings,
    pub secondary: SecondarySettings,
    pub replication: ReplicationSettings,
    pub heartbeat: HeartbeatSettings,
    pub storage: StorageSettings,
    pub log: LogSettings,
    pub fault: FaultSettings,
    pub limits: LimitSettings,
    pub failover: FailoverSettings,
}

/// `[failover]` (SPEC §11, `docs/failover.md`): off by default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailoverSettings {
    pub enabled: bool,
    /// Every node, this one included; the same list on every node. With failover on, a
    /// node's secondaries (as a master) are the other members: `master.secondaries` is set
    /// from this list.
    pub members: Vec<SecondaryRef>,
    /// No word from a master this long (plus a random jitter of up to half of it) and a node
    /// stands for election; default `heartbeat.interval_ms × heartbeat.unhealthy_after`.
    pub election_timeout_ms: Option<u64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSettings {
    /// Shown in logs and /health.
    pub name: String,
    pub role: Role,
    /// `ip:port` to listen on.
    pub listen: String,
    pub data_dir: PathBuf,
    /// When set, internal and test endpoints require `Authorization: Bearer <token>` and the
    /// master sends it.
    pub cluster_token: Option<Secret>,
    /// A file holding the cluster token (surrounding whitespace trimmed), readable by its owner
    /// only; the alternative to `cluster_token`, so the token stays out of config files and
    /// environment listings. Read once, at startup, into `cluster_token`.
    pub cluster_token_file: Option<PathBuf>,
    /// Runtime threads: 0 = one per core; 1 = a single-threaded runtime, the fastest choice
    /// when several nodes share a few cores (what `replog cluster` uses).
    pub worker_threads: usize,
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            name: "master".into(),
            role: Role::Master,
            listen: "0.0.0.0:8000".into(),
            data_dir: "data/master".into(),
            cluster_token: None,
            cluster_token_file: None,
            worker_threads: 0,
        }
    }
}

/// One secondary as the master knows it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondaryRef {
    pub name: String,
    pub url: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MasterSettings {
    pub secondaries: Vec<SecondaryRef>,
    /// Nodes (master included) that must be available for appends; default: a majority.
    pub quorum: Option<usize>,
    pub default_write_concern: WriteConcern,
    /// How long an append waits for its write concern before answering 504; default: forever.
    pub default_timeout_ms: Option<u64>,
    /// The URL clients use to reach this master; secondaries name it when they refuse appends.
    pub advertise_url: Option<String>,
    /// How many of the most recent messages have their idempotency `id` remembered (a retry
    /// with an older id appends again); default: the whole log. See `crate::storage::dedup` for the
    /// memory cost per remembered id.
    pub dedup_window: Option<u64>,
    /// Appends in progress at once (waiting for the writer or for their write concern); past
    /// it the master answers 503 with Retry-After instead of holding more in memory.
    pub max_pending_appends: usize,
    /// After an unclean stop (kill -9, crash, power loss) under `fsync = "interval"` or
    /// `"never"`, appends wait until this many secondaries have answered a heartbeat, so that a
    /// tail the master lost is taken back from them before a new key is assigned (see
    /// `docs/log-matching.md`); default: all of them.
    pub recovery_wait_for: Option<usize>,
    /// How long appends wait for that at most; then the master goes on without the secondaries
    /// not heard from, and says so (keys only they held are cut when they return).
    pub recovery_wait_ms: u64,
}

impl Default for MasterSettings {
    fn default() -> Self {
        MasterSettings {
            secondaries: vec![
                SecondaryRef {
                    name: "secondary1".into(),
                    url: "http://secondary1:8001".into(),
                },
                SecondaryRef {
                    name: "secondary2".into(),
                    url: "http://secondary2:8002".into(),
                },
            ],
            quorum: None,
            default_write_concern: WriteConcern::All,
            default_timeout_ms: None,
            advertise_url: None,
            dedup_window: None,
            max_pending_appends: 65_536,
            recovery_wait_for: None,
            recovery_wait_ms: 10_000,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecondarySettings {
    /// Where the master is, for the error a secondary gives to appends sent to it. When unset,
    /// the secondary learns it from the master's replication and heartbeat requests.
    pub master_url: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationSettings {
    /// Delay before each retry of a failed replication request, in seconds (fractions allowed);
    /// the last one repeats.
    pub retry_delays_s: Vec<f64>,
    /// How long one replication request may take before it counts as failed.
    pub request_timeout_ms: u64,
    /// Replication requests in flight to one secondary at once.
    pub max_inflight: usize,
    /// Most messages in one replication request.
    pub max_batch_entries: usize,
    /// Most value bytes in one replication request (one larger message still goes alone).
    pub max_batch_bytes: usize,
    /// Catch-up pace: most messages per second sent to one secondary from the log on disk
    /// (a secondary further behind than the master's in-memory tail). 0: no limit.
    pub max_catchup_messages_per_s: u64,
}

impl Default for ReplicationSettings {
    fn default() -> Self {
        ReplicationSettings {
            retry_delays_s: vec![1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 90.0, 180.0, 300.0],
            request_timeout_ms: 30_000,
            max_inflight: 8,
            max_batch_entries: 4096,
            max_batch_bytes: 4 << 20,
            max_catchup_messages_per_s: 500_000,
        }
    }
}

impl ReplicationSettings {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn retry_delays(&self) -> Vec<Duration> {
        self.retry_delays_s
            .iter()
            .map(|s| Duration::from_secs_f64(*s))
            .collect()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatSettings {
    pub interval_ms: u64,
    /// How long one heartbeat may take; default: the interval.
    pub timeout_ms: Option<u64>,
    /// Failures in a row before a secondary is suspected.
    pub suspected_after: u32,
    /// Failures in a row before a secondary is unhealthy (replication to it pauses).
    pub unhealthy_after: u32,
}

impl Default for HeartbeatSettings {
    fn default() -> Self {
        HeartbeatSettings {
            interval_ms: 1000,
            timeout_ms: None,
            suspected_after: 2,
            unhealthy_after: 5,
        }
    }
}

impl HeartbeatSettings {
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.unwrap_or(self.interval_ms))
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    pub engine: Engine,
    pub fsync: FsyncPolicy,
    /// With `fsync = "interval"`: how often.
    pub fsync_interval_ms: u64,
    /// Segment files roll at this size.
    pub segment_bytes: u64,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            engine: Engine::Disk,
            fsync: FsyncPolicy::Interval,
            fsync_interval_ms: 100,
            segment_bytes: 64 << 20,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// Appended to by every node; empty string: no file.
    pub file: PathBuf,
    /// `error`, `warn`, `info`, `debug`, `trace`, or a full tracing filter directive.
    pub level: String,
    /// Per-message events (appends, replication batches) logged one line each up to this many
    /// lines per second per kind; above it they are counted and summarised once a second.
    /// 0: no limit.
    pub max_event_lines_per_s: u32,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            file: "log/app.log".into(),
            level: "info".into(),
            max_event_lines_per_s: 200,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultSettings {
    /// Enables POST /delay and /fault, and `error_rate`.
    pub enabled: bool,
    /// Probability that a secondary stores a replication request and then answers 500.
    pub error_rate: f64,
}

/// Bounds on what one client can make a node hold: message and header sizes, how long a
/// request may take to arrive, and how many connections are served at once (see
/// `crate::http::server`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Largest message value, in bytes (413 above).
    pub max_message_bytes: usize,
    /// Connections served at once; a connection beyond it is answered 503 and closed.
    pub max_connections: usize,
    /// How long a client may take to send a request's line and headers; also how long an idle
    /// keep-alive connection stays open. The connection is closed after it.
    pub header_read_timeout_ms: u64,
    /// Most bytes of a request's line and headers together (431 above).
    pub max_header_bytes: usize,
    /// How long a client may take to send a request body, once its headers are in (408 after).
    pub body_read_timeout_ms: u64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            max_message_bytes: 1 << 20,
            max_connections: 1024,
            header_read_timeout_ms: 30_000,
            max_header_bytes: 64 << 10,
            body_read_timeout_ms: 60_000,
        }
    }
}

impl LimitSettings {
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }
}

/// Largest `master.dedup_window` (2^40 messages: far beyond what memory could hold).
pub const MAX_DEDUP_WINDOW: u64 = 1 << 40;

/// Settings whose values are strings: an environment value for them is never read as TOML,
/// so `REPLOG_NODE_NAME=123` is the name "123", not a type error.
const STRING_KEYS: &[(&str, &str)] = &[
    ("node", "name"),
    ("node", "role"),
    ("node", "listen"),
    ("node", "data_dir"),
    ("node", "cluster_token"),
    ("node", "cluster_token_file"),
    ("master", "advertise_url"),
    ("master", "default_write_concern"),
    ("secondary", "master_url"),
    ("storage", "engine"),
    ("storage", "fsync"),
    ("log", "file"),
    ("log", "level"),
];

const SECTIONS: &[&str] = &[
    "node",
    "master",
    "secondary",
    "replication",
    "heartbeat",
    "storage",
    "log",
    "fault",
    "limits",
    "failover",
];

impl Settings {
    /// Defaults, then `file` (if any), then `REPLOG_*` variables from `env`; validated.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                toml::from_str::<toml::Table>(&text).map_err(|e| ConfigError::Syntax {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?
            }
            None => toml::Table::new(),
        };
        let from_env = apply_env(&mut table, env)?;
        typed(table).map_err(|e| name_env_source(e, &from_env))
    }

    /// Parses a TOML document (no environment); validated. Handy for tests and `replog cluster`.
    pub fn from_toml(text: &str) -> Result<Settings, ConfigError> {
        let table = toml::from_str::<toml::Table>(text).map_err(|e| ConfigError::Syntax {
            path: PathBuf::from("<inline>"),
            message: e.to_string(),
        })?;
        typed(table)
    }

    /// With failover on, a node's secondaries are the other members (validated right after).
    fn derive_failover(&mut self) {
        if self.failover.enabled {
            let me = self.node.name.clone();
            self.master.secondaries = self
                .failover
                .members
                .iter()
                .filter(|m| m.name != me)
                .cloned()
                .collect();
        }
    }

    /// The election timeout: `failover.election_timeout_ms`, or the time a master takes to
    /// call a silent secondary unhealthy.
    pub fn election_timeout(&self) -> Duration {
        Duration::from_millis(
            self.failover
                .election_timeout_ms
                .unwrap_or(self.heartbeat.interval_ms * u64::from(self.heartbeat.unhealthy_after)),
        )
    }

    /// This node's URL as the members list gives it (failover).
    pub fn own_url(&self) -> Option<&str> {
        self.failover
            .members
            .iter()
            .find(|m| m.name == self.node.name)
            .map(|m| m.url.as_str())
    }

    /// ALL: the master plus every secondary.
    pub fn all_nodes(&self) -> usize {
        1 + self.master.secondaries.len()
    }

    /// The quorum, resolved: configured, or a majority of ALL.
    pub fn quorum(&self) -> usize {
        self.master
            .quorum
            .unwrap_or_else(|| self.all_nodes() / 2 + 1)
    }

    /// The listen address, parsed (validated at load).
    pub fn listen_addr(&self) -> SocketAddr {
        self.node
            .listen
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 8000)))
    }

    /// Checks every rule; the first broken one is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let n = &self.node;
        if n.name.trim().is_empty() || n.name.len() > 64 {
            return Err(invalid("node.name", &n.name, "1 to 64 characters"));
        }
        if n.listen.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "node.listen",
                &n.listen,
                "an IP address and port, like \"0.0.0.0:8000\" or \"127.0.0.1:8001\"",
            ));
        }
        if n.data_dir.as_os_str().is_empty() {
            return Err(invalid("node.data_dir", &n.data_dir, "a directory path"));
        }
        if let Some(t) = &n.cluster_token {
            check_token("node.cluster_token", t.expose())?;
        }

        range_check("node.worker_threads", n.worker_threads as u64, 0, 1024)?;

        if n.role == Role::Master {
            let m = &self.master;
            let mut names = std::collections::HashSet::new();
            for (i, s) in m.secondaries.iter().enumerate() {
                if s.name.trim().is_empty() || s.name.len() > 64 {
                    return Err(invalid(
                        &format!("master.secondaries[{i}].name"),
                        &s.name,
                        "1 to 64 characters",
                    ));
                }
                if !names.insert(s.name.as_str()) {
                    return Err(invalid(
                        &format!("master.secondaries[{i}].name"),
                        &s.name,
                        "a name not used by another secondary",
                    ));
                }
                check_url(&format!("master.secondaries[{i}].url"), &s.url)?;
            }
            let all = self.all_nodes();
            if let Some(q) = m.quorum
                && (q < 1 || q > all)
            {
                return Err(invalid(
                    "master.quorum",
                    q,
                    format!("1 to {all} (ALL: the master plus {} secondaries)", all - 1),
                ));
            }
            if let WriteConcern::Nodes(w) = m.default_write_concern
                && (w < 1 || w as usize > all)
            {
                return Err(invalid(
                    "master.default_write_concern",
                    w,
                    format!("\"all\", \"majority\" or 1 to {all}"),
                ));
            }
            if let Some(t) = m.default_timeout_ms
                && t == 0
            {
                return Err(invalid(
                    "master.default_timeout_ms",
                    t,
                    "at least 1 (leave it out to wait forever)",
                ));
            }
            if let Some(u) = &m.advertise_url {
                check_url("master.advertise_url", u)?;
            }
            range_check(
                "master.max_pending_appends",
                m.max_pending_appends as u64,
                1,
                10_000_000,
            )?;
            if let Some(w) = m.dedup_window {
                range_check("master.dedup_window", w, 1, MAX_DEDUP_WINDOW).map_err(|_| {
                    invalid(
                        "master.dedup_window",
                        w,
                        format!(
                            "1 to {MAX_DEDUP_WINDOW} messages (leave it out to remember the ids of the whole log)"
                        ),
                    )
                })?;
            }
            if let Some(n) = m.recovery_wait_for
                && n > m.secondaries.len()
            {
                return Err(invalid(
                    "master.recovery_wait_for",
                    n,
                    format!(
                        "0 to {} (the number of secondaries; leave it out to wait for all)",
                        m.secondaries.len()
                    ),
                ));
            }
            range_check("master.recovery_wait_ms", m.recovery_wait_ms, 0, 3_600_000)?;
        }
        if let Some(u) = &self.secondary.master_url {
            check_url("secondary.master_url", u)?;
        }
        let f = &self.failover;
        if f.enabled {
            let mut names = std::collections::HashSet::new();
            for (i, m) in f.members.iter().enumerate() {
                if m.name.trim().is_empty() || m.name.len() > 64 || !names.insert(&m.name) {
                    return Err(invalid(
                        &format!("failover.members[{i}].name"),
                        &m.name,
                        "a name of 1 to 64 characters not used by another member",
                    ));
                }
                check_url(&format!("failover.members[{i}].url"), &m.url)?;
            }
            if !names.contains(&self.node.name) {
                return Err(invalid(
                    "failover.members",
                    format!("{} members", f.members.len()),
                    format!(
                        "a list of every node that names this one ({:?}, node.name)",
                        self.node.name
                    ),
                ));
            }
            if let Some(q) = self.master.quorum
                && (q < 1 || q > f.members.len())
            {
                return Err(invalid(
                    "master.quorum",
                    q,
                    format!("1 to {} (the members)", f.members.len()),
                ));
            }
        }
        if let Some(t) = f.election_timeout_ms {
            range_check("failover.election_timeout_ms", t, 100, 3_600_000)?;
        }

        let r = &self.replication;
        if r.retry_delays_s.is_empty() {
            return Err(invalid(
                "replication.retry_delays_s",
                &r.retry_delays_s,
                "a non-empty list of delays in seconds",
            ));
        }
        if let Some(d) = r
            .retry_delays_s
            .iter()
            .find(|d| !d.is_finite() || **d < 0.0 || **d > 86_400.0)
        {
            return Err(invalid(
                "replication.retry_delays_s",
                d,
                "delays from 0 to 86400 seconds",
            ));
        }
        range_check(
            "replication.request_timeout_ms",
            r.request_timeout_ms,
            1,
            86_400_000,
        )?;
        range_check("replication.max_inflight", r.max_inflight as u64, 1, 1024)?;
        range_check(
            "replication.max_catchup_messages_per_s",
            r.max_catchup_messages_per_s,
            0,
            1_000_000_000,
        )?;
        range_check(
            "replication.max_batch_entries",
            r.max_batch_entries as u64,
            1,
            1_000_000,
        )?;
        range_check(
            "replication.max_batch_bytes",
            r.max_batch_bytes as u64,
            1,
            1 << 30,
        )?;

        let h = &self.heartbeat;
        range_check("heartbeat.interval_ms", h.interval_ms, 10, 3_600_000)?;
        if let Some(t) = h.timeout_ms {
            range_check("heartbeat.timeout_ms", t, 1, 3_600_000)?;
        }
        range_check(
            "heartbeat.suspected_after",
            h.suspected_after as u64,
            1,
            1000,
        )?;
        if h.unhealthy_after < h.suspected_after || h.unhealthy_after > 1000 {
            return Err(invalid(
                "heartbeat.unhealthy_after",
                h.unhealthy_after,
                format!(
                    "from heartbeat.suspected_after ({}) to 1000",
                    h.suspected_after
                ),
            ));
        }
        // Failover: a master's lease is 2/3 of its election timeout, renewed by a heartbeat
        // answered within it; shorter than two heartbeat intervals, it lapses between
        // heartbeats and the master keeps turning read-only (and its members keep standing).
        if self.failover.enabled
            && self.election_timeout().as_millis() < 2 * u128::from(h.interval_ms)
        {
            return Err(invalid(
                "failover.election_timeout_ms",
                self.election_timeout().as_millis(),
                format!(
                    "at least twice heartbeat.interval_ms ({} ms): a master's lease, 2/3 of it, must outlast the wait for the next heartbeat's answer (unset, it is heartbeat.interval_ms × heartbeat.unhealthy_after)",
                    h.interval_ms
                ),
            ));
        }

        let s = &self.storage;
        range_check(
            "storage.fsync_interval_ms",
            s.fsync_interval_ms,
            1,
            3_600_000,
        )?;
        range_check("storage.segment_bytes", s.segment_bytes, 4096, 1 << 32)?;

        if tracing_subscriber::EnvFilter::try_new(level_directive(&self.log.level)).is_err() {
            return Err(invalid(
                "log.level",
                &self.log.level,
                "error, warn, info, debug, trace, or a tracing filter directive",
            ));
        }

        let f = &self.fault;
        if !(0.0..=1.0).contains(&f.error_rate) {
            return Err(invalid(
                "fault.error_rate",
                f.error_rate,
                "a probability from 0.0 to 1.0",
            ));
        }
        let l = &self.limits;
        range_check(
            "limits.max_message_bytes",
            l.max_message_bytes as u64,
            1,
            64 << 20,
        )?;
        range_check(
            "limits.max_connections",
            l.max_connections as u64,
            1,
            1_000_000,
        )?;
        range_check(
            "limits.header_read_timeout_ms",
            l.header_read_timeout_ms,
            100,
            3_600_000,
        )?;
        range_check(
            "limits.max_header_bytes",
            l.max_header_bytes as u64,
            1024,
            1 << 20,
        )?;
        range_check(
            "limits.body_read_timeout_ms",
            l.body_read_timeout_ms,
            100,
            3_600_000,
        )?;
        Ok(())
    }
}

/// The tracing filter for a `log.level`: a bare level applies to replog's own events only
/// (dependencies stay at `warn`); anything else is taken as a full directive.
pub fn level_directive(level: &str) -> String {
    let l = level.trim().to_ascii_lowercase();
    match l.as_str() {
        "error" | "warn" | "info" | "debug" | "trace" | "off" => format!("warn,replog={l}"),
        _ => level.to_string(),
    }
}

fn range_check(setting: &str, v: u64, lo: u64, hi: u64) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(invalid(setting, v, format!("{lo} to {hi}")));
    }
    Ok(())
}

/// A token travels in an HTTP header: visible ASCII only (no spaces), 1 to 4096 bytes. The
/// value is never echoed in the error.
fn check_token(setting: &str, token: &str) -> Result<(), ConfigError> {
    if token.is_empty() || token.len() > 4096 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            setting,
            "<hidden>",
            "1 to 4096 visible ASCII characters (no spaces or control characters)",
        ));
    }
    Ok(())
}

/// Reads `node.cluster_token_file` into `node.cluster_token`. Refuses a file that group or
/// others may read (the token would be only as secret as the least careful user of the
/// machine), an empty one, and a token set both inline and by file.
fn read_token_file(settings: &mut Settings) -> Result<(), ConfigError> {
    const SETTING: &str = "node.cluster_token_file";
    let Some(path) = settings.node.cluster_token_file.clone() else {
        return Ok(());
    };
    if settings.node.cluster_token.is_some() {
        return Err(invalid(
            SETTING,
            &path,
            "leave it out when node.cluster_token is set (set one of the two)",
        ));
    }
    let meta = std::fs::metadata(&path)
        .map_err(|e| invalid(SETTING, &path, format!("a readable file ({e})")))?;
    if !meta.is_file() {
        return Err(invalid(SETTING, &path, "a regular file"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(invalid(
                SETTING,
                &path,
                format!(
                    "a file only its owner can read, but its mode is {mode:03o} (chmod 600 it)"
                ),
            ));
        }
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| invalid(SETTING, &path, format!("a readable UTF-8 file ({e})")))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(invalid(
            SETTING,
            &path,
            "a file holding the token; it is empty",
        ));
    }
    check_token(SETTING, token)?;
    settings.node.cluster_token = Some(Secret::new(token));
    Ok(())
}

fn check_url(setting: &str, url: &str) -> Result<(), ConfigError> {
    match reqwest::Url::parse(url) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => Ok(()),
        _ => Err(invalid(
            setting,
            url,
            "an http:// URL with a host, like \"http://secondary1:8001\"",
        )),
    }
}

/// Deserialises and validates a merged table.
fn typed(table: toml::Table) -> Result<Settings, ConfigError> {
    let mut settings: Settings = serde_path_to_error::deserialize(toml::Value::Table(table))
        .map_err(|e| {
            ConfigError::Type {
                setting: e.path().to_string(),
                // The deserializer appends its own "in `path`" line; the setting is named already.
                message: e
                    .inner()
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string(),
            }
        })?;
    read_token_file(&mut settings)?;
    // Before validating: the master's checks then see the secondaries it will have.
    settings.derive_failover();
    settings.validate()?;
    Ok(settings)
}

/// Says which environment variable set the offending value, when one did.
fn name_env_source(e: ConfigError, from_env: &[(String, String)]) -> ConfigError {
    let var_for = |setting: &str| {
        from_env
            .iter()
            .find(|(key, _)| setting == key || setting.starts_with(&format!("{key}[")))
            .map(|(_, var)| var.clone())
    };
    match e {
        ConfigError::Type { setting, message } => match var_for(&setting) {
            Some(var) => ConfigError::Type {
                message: format!("{message} (set by environment variable {var})"),
                setting,
            },
            None => ConfigError::Type { setting, message },
        },
        ConfigError::Invalid {
            setting,
            value,
            allowed,
        } => match var_for(&setting) {
            Some(var) => ConfigError::Invalid {
                allowed: format!("{allowed} (set by environment variable {var})"),
                setting,
                value,
            },
            None => ConfigError::Invalid {
                setting,
                value,
                allowed,
            },
        },
        other => other,
    }
}

/// Folds `REPLOG_<SECTION>_<KEY>` variables into the table; returns `("section.key", var)`
/// for each, so errors can name the variable.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut applied = Vec::new();
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix("REPLOG_") else {
            continue;
        };
        let lower = rest.to_ascii_lowercase();
        let Some((section, key)) = lower.split_once('_') else {
            return Err(ConfigError::Env {
                var,
                message: "expected REPLOG_<SECTION>_<KEY>, like REPLOG_NODE_ROLE".into(),
            });
        };
        if !SECTIONS.contains(&section) {
            return Err(ConfigError::Env {
                var,
                message: format!(
                    "unknown section `{section}`; sections are {}",
                    SECTIONS.join(", ")
                ),
            });
        }
        let value = env_value(section, key, &raw).map_err(|message| ConfigError::Env {
            var: var.clone(),
            message,
        })?;
        let entry = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(sec) = entry else {
            return Err(ConfigError::Env {
                var,
                message: format!("`{section}` in the config file is not a table"),
            });
        };
        sec.insert(key.to_string(), value);
        applied.push((format!("{section}.{key}"), var));
    }
    Ok(applied)
}

fn env_value(section: &str, key: &str, raw: &str) -> Result<toml::Value, String> {
    if STRING_KEYS.contains(&(section, key)) {
        return Ok(toml::Value::String(raw.to_string()));
    }
    // Only a value that is one TOML value on its own: `500\nrole = "x"` would otherwise parse
    // as two keys, and everything after the first line would be dropped without a word.
    if let Ok(mut t) = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        && t.len() == 1
        && let Some(v) = t.remove("v")
    {
        return Ok(v);
    }
    if matches!(
        (section, key),
        ("master", "secondaries") | ("failover", "members")
    ) {
        // name=url,name=url
        let mut list = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, url) = part
                .split_once('=')
                .ok_or_else(|| format!("expected name=url[,name=url…], got {part:?}"))?;
            let mut t = toml::Table::new();
            t.insert("name".into(), toml::Value::String(name.trim().into()));
            t.insert("url".into(), toml::Value::String(url.trim().into()));
            list.push(toml::Value::Table(t));
        }
        return Ok(toml::Value::Array(list));
    }
    Ok(toml::Value::String(raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_spec() {
        let s = Settings::load(None, env(&[])).unwrap();
        assert_eq!(s.node.role, Role::Master);
        assert_eq!(s.node.listen, "0.0.0.0:8000");
        assert_eq!(s.master.secondaries.len(), 2);
        assert_eq!(s.quorum(), 2);
        assert_eq!(s.master.default_write_concern, WriteConcern::All);
        assert_eq!(s.replication.retry_delays_s.len(), 9);
        assert_eq!(s.heartbeat.timeout(), Duration::from_secs(1));
        assert_eq!(s.storage.fsync, FsyncPolicy::Interval);
    }

    #[test]
    fn env_overrides_file_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[node]\nname = \"a\"\n[heartbeat]\ninterval_ms = 200\n",
        )
        .unwrap();
        let s = Settings::load(
            Some(&path),
            env(&[
                ("REPLOG_NODE_NAME", "123"),
                ("REPLOG_HEARTBEAT_UNHEALTHY_AFTER", "7"),
                ("REPLOG_MASTER_SECONDARIES", "s1=http://127.0.0.1:9001"),
                ("REPLOG_REPLICATION_RETRY_DELAYS_S", "[0.1, 1]"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(s.node.name, "123");
        assert_eq!(s.heartbeat.interval_ms, 200);
        assert_eq!(s.heartbeat.unhealthy_after, 7);
        assert_eq!(s.master.secondaries[0].url, "http://127.0.0.1:9001");
        assert_eq!(s.replication.retry_delays_s, vec![0.1, 1.0]);
    }

    #[test]
    fn bad_values_name_the_setting_and_what_is_allowed() {
        let cases = [
            ("[node]\nrole = \"leader\"", "node.role"),
            ("[node]\nlisten = \"nowhere\"", "node.listen"),
            ("[master]\nquorum = 4", "master.quorum"),
            (
                "[master]\ndefault_write_concern = 5",
                "master.default_write_concern",
            ),
            (
                "[master]\ndefault_write_concern = \"most\"",
                "master.default_write_concern",
            ),
            (
                "[heartbeat]\ninterval_ms = \"fast\"",
                "heartbeat.interval_ms",
            ),
            (
                "[heartbeat]\nunhealthy_after = 1",
                "heartbeat.unhealthy_after",
            ),
            (
                "[replication]\nretry_delays_s = []",
                "replication.retry_delays_s",
            ),
            (
                "[replication]\nretry_delays_s = [-1]",
                "replication.retry_delays_s",
            ),
            (
                "[replication]\nmax_catchup_messages_per_s = 2000000000",
                "replication.max_catchup_messages_per_s",
            ),
            (
                "[replication]\nmax_catchup_messages_per_s = -1",
                "replication.max_catchup_messages_per_s",
            ),
            ("[storage]\nfsync = \"sometimes\"", "storage.fsync"),
            ("[fault]\nerror_rate = 1.5", "fault.error_rate"),
            ("[master]\ndedup_window = 0", "master.dedup_window"),
            ("[master]\ndedup_window = -5", "master.dedup_window"),
            (
                "[master]\nrecovery_wait_for = 3",
                "master.recovery_wait_for",
            ),
            (
                "[master]\nrecovery_wait_ms = 3600001",
                "master.recovery_wait_ms",
            ),
            ("[node]\nbogus = 1", "bogus"),
            (
                "[master]\nsecondaries = [{name = \"a\", url = \"ftp://x\"}]",
                "url",
            ),
        ];
        for (text, setting) in cases {
            let err = Settings::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(setting), "{text:?} gave {err}");
        }
    }

    #[test]
    fn errors_name_the_environment_variable_that_set_the_value() {
        let err = Settings::load(None, env(&[("REPLOG_HEARTBEAT_INTERVAL_MS", "fast")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("heartbeat.interval_ms"), "{err}");
        assert!(err.contains("REPLOG_HEARTBEAT_INTERVAL_MS"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
        let err = Settings::load(None, env(&[("REPLOG_FAULT_ERROR_RATE", "2")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("REPLOG_FAULT_ERROR_RATE"), "{err}");
    }

    #[test]
    fn env_value_with_a_second_toml_line_is_refused_not_half_read() {
        // Read as TOML, "500\nrole = 1" used to become 500 with the second line dropped.
        let err = Settings::load(
            None,
            env(&[("REPLOG_HEARTBEAT_INTERVAL_MS", "500\nsuspected_after = 9")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("heartbeat.interval_ms"), "{err}");
        assert!(err.contains("REPLOG_HEARTBEAT_INTERVAL_MS"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
        let s = Settings::load(None, env(&[("REPLOG_HEARTBEAT_INTERVAL_MS", "500 # ms")])).unwrap();
        assert_eq!(
            s.heartbeat.interval_ms, 500,
            "a trailing comment is still one value"
        );
    }

    #[test]
    fn unknown_env_section_is_an_error() {
        let err = Settings::load(None, env(&[("REPLOG_HEARTBEATS_INTERVAL_MS", "5")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("REPLOG_HEARTBEATS_INTERVAL_MS"), "{err}");
    }

    #[test]
    fn the_token_file_is_read_trimmed_and_the_token_never_printed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  s3cret-token\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = Settings::load(
            None,
            env(&[("REPLOG_NODE_CLUSTER_TOKEN_FILE", path.to_str().unwrap())]),
        )
        .unwrap();
        assert_eq!(
            s.node.cluster_token.as_ref().unwrap().expose(),
            "s3cret-token"
        );
        assert!(!format!("{s:?}").contains("s3cret"));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o604)).unwrap();
        let err = Settings::load(
            None,
            env(&[("REPLOG_NODE_CLUSTER_TOKEN_FILE", path.to_str().unwrap())]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("node.cluster_token_file") && err.contains("604"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn write_concern_resolves_against_all() {
        assert_eq!(WriteConcern::All.resolve(3), 3);
        assert_eq!(WriteConcern::Majority.resolve(3), 2);
        assert_eq!(WriteConcern::Majority.resolve(5), 3);
        assert_eq!(WriteConcern::Nodes(2).resolve(3), 2);
    }
}
