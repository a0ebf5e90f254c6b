//! What a schedule records: every append attempt and its answer, every read, every health
//! probe and every fault, each with its times (seconds since the schedule started, taken on
//! the test's side: `sent` just before a request goes out, `recv` once its answer is in).

/// How one append attempt ended, as the client saw it.
#[derive(Clone, Debug)]
pub enum Answer {
    /// 201, or 200 with `"duplicate": true`.
    Acked {
        status: u16,
        key: u64,
        w: u64,
        acks: u64,
    },
    /// 504: appended under `key`, replication pending.
    TimedOut { key: u64 },
    /// 503 `"mode": "read-only"`: nothing appended.
    ReadOnly,
    /// 503 `"mode": "recovering"`: nothing appended.
    Recovering,
    /// Any other answer (this load sends only valid requests): the outcome is unknown, and
    /// the answer itself is a violation.
    Unexpected { status: u16, body: String },
    /// No answer: connection refused or reset, or the client gave up waiting. The message may
    /// or may not be in the log.
    Unanswered {
        // Read only by the history dump of a failing schedule.
        #[allow(dead_code)]
        error: String,
    },
}

impl Answer {
    /// A refusal that promises nothing was appended.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Answer::ReadOnly | Answer::Recovering)
    }
}

#[derive(Clone, Debug)]
pub struct Attempt {
    pub sent: f64,
    pub recv: f64,
    pub answer: Answer,
}

/// One logical message: a unique value, sent until it gets a definite answer (or the client
/// gives up).
#[derive(Clone, Debug)]
pub struct Message {
    pub client: usize,
    pub value: String,
    pub id: Option<String>,
    /// The write concern as sent (`2`, `"majority"`, …) and as it resolves in this cluster.
    pub w_sent: serde_json::Value,
    pub w: u64,
    pub timeout_ms: Option<u64>,
    pub attempts: Vec<Attempt>,
}

/// One `GET /messages` that answered 200.
#[derive(Clone, Debug)]
pub struct Read {
    pub node: usize,
    pub from: u64,
    // Read only by the history dump of a failing schedule.
    #[allow(dead_code)]
    pub sent: f64,
    pub recv: f64,
    pub entries: Vec<(u64, String)>,
}

/// One secondary's `GET /health`.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    pub node: usize,
    pub sent: f64,
    pub recv: f64,
    pub contiguous_key: u64,
    pub held_aside: u64,
}

/// A span of time during which something held for a node, `end` inclusive.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub node: usize,
    pub start: f64,
    pub end: f64,
}

impl Span {
    pub fn overlaps(&self, a: f64, b: f64) -> bool {
        self.start <= b && a <= self.end
    }
}

/// The faults as they happened.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// A node paused, not running or (a secondary) partitioned off the network: from just
    /// before the signal (or `docker pause`, `docker kill`, `docker network disconnect`) to
    /// just after SIGCONT (`docker unpause`, `docker network connect`), or after the
    /// restarted process answered its first `/heartbeat`.
    pub down: Vec<Span>,
    /// Only the pauses of the master (its clock for heartbeats and timeouts stands still).
    pub master_paused: Vec<Span>,
    /// From a master's kill to its restarted process answering `/heartbeat`.
    pub master_restarts: Vec<Span>,
    /// The master partitioned off the network (from before the disconnect to after the
    /// reconnect): it reaches no secondary, as if every one were down; its clock runs.
    pub master_partitioned: Vec<Span>,
    /// From a secondary's kill to its restart on an empty data dir.
    pub wipes: Vec<Span>,
    /// Every action, for the report: (time, text).
    pub log: Vec<(f64, String)>,
    /// Faults injected (pause, kill, wipe, delay, error-rate burst, partition).
    pub injected: u64,
    /// The same, by kind.
    pub kinds: std::collections::BTreeMap<String, u64>,
}

/// Everything a schedule recorded, and the logs every node showed at the end.
#[derive(Debug, Default)]
pub struct History {
    pub secondaries: usize,
    pub quorum: usize,
    pub heartbeat_interval_s: f64,
    pub heartbeat_timeout_s: f64,
    pub messages: Vec<Message>,
    pub reads: Vec<Read>,
    pub probes: Vec<Probe>,
    pub faults: Faults,
    /// Each node's `GET /messages` after healing (`None`: it did not answer).
    pub final_logs: Vec<Option<Vec<(u64, String)>>>,
    /// Problems of the run itself (a node that did not come back, no convergence).
    pub run_errors: Vec<String>,
}
