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
    /// Failover: 503 `"mode": "taking office"` (a new master whose epoch a majority does not
    /// hold yet): nothing appended.
    TakingOffice,
    /// Failover: 503 `{"key", "outcome": "unknown"}`: the master's term ended while the
    /// append waited for its write concern; appended under `key` by that master, whether it
    /// stays is unknown (a retry with the same id is safe).
    Deposed { key: u64 },
    /// Failover: 421 from a node that is not the master (even after following the master
    /// it named): nothing appended.
    Misdirected,
    /// Failover: no node could be connected to (every one refused the connection): nothing
    /// was sent, so nothing appended.
    Unreachable,
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
        matches!(
            self,
            Answer::ReadOnly
                | Answer::Recovering
                | Answer::TakingOffice
                | Answer::Misdirected
                | Answer::Unreachable
        )
    }

    /// The key a 201, 200 or 504 names.
    pub fn promised_key(&self) -> Option<u64> {
        match *self {
            Answer::Acked { key, .. } | Answer::TimedOut { key } => Some(key),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Attempt {
    pub sent: f64,
    pub recv: f64,
    pub answer: Answer,
    /// Failover: the node that gave the answer (`None`: no node did, or failover is off,
    /// where it is always the master).
    pub node: Option<usize>,
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

/// A power loss of the master (kill -9, then a random tail of its newest segment cut).
#[derive(Clone, Debug)]
pub struct MasterPowerLoss {
    /// Just before the kill: an attempt sent before this may have been answered by the
    /// master that lost power.
    pub at: f64,
    /// What each secondary's own `GET /messages` showed right after the kill — its gap-free
    /// prefix, keys 1..=n, as values in key order (`None`: no answer, or not that shape) —
    /// by secondary (`logs[0]` is secondary1). Every secondary is up then, and kept up until
    /// the restarted master takes appends again. The checker derives P from them.
    pub logs: Vec<Option<Vec<String>>>,
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
    /// Power losses of a secondary: from its kill to the cut of its newest segment's tail
    /// (what it acknowledged may be gone from it until the master resends it).
    pub secondary_power_losses: Vec<Span>,
    /// Power losses of the master, in order.
    pub master_power_losses: Vec<MasterPowerLoss>,
    /// Every action, for the report: (time, text).
    pub log: Vec<(f64, String)>,
    /// Faults injected (pause, kill, wipe, power loss, delay, error-rate burst, partition).
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
    /// How long a master refuses appends as recovering after an unclean restart (kill -9,
    /// power loss) at most, in seconds of its running time; 0 where it does not wait for its
    /// secondaries (fsync `always`).
    pub recovery_wait_s: f64,
    /// When the bounded phase of appends after healing began (every fault healed and the
    /// cluster settled): every attempt sent from then on must be answered (rule 10). `None`:
    /// no such phase.
    pub settled_at: Option<f64>,
    pub messages: Vec<Message>,
    pub reads: Vec<Read>,
    pub probes: Vec<Probe>,
    pub faults: Faults,
    /// Each node's `GET /messages` after healing (`None`: it did not answer).
    pub final_logs: Vec<Option<Vec<(u64, String)>>>,
    /// Problems of the run itself (a node that did not come back, no convergence).
    pub run_errors: Vec<String>,
    /// What a schedule with failover on records besides (`None`: failover off).
    pub failover: Option<FailoverFacts>,
}

/// A failover schedule's own facts (`nemesis/failover.rs`). Node `i` is member `i`; the
/// master moves, so "master" here means whichever node was it at the time.
#[derive(Clone, Debug, Default)]
pub struct FailoverFacts {
    pub election_timeout_s: f64,
    /// Every loss of the current master: (node, when: just before its kill or SIGSTOP).
    pub master_losses: Vec<(usize, f64)>,
    /// Every pause of any node (SIGSTOP to SIGCONT): its clock for leases stands still.
    pub pauses: Vec<Span>,
    /// Every `POST /delay`: (node, when posted, seconds).
    pub delays: Vec<(usize, f64, f64)>,
    /// Every error-rate burst, from its start to its end.
    pub error_bursts: Vec<Span>,
    /// When the load ended (the heal began): the writers stopped starting messages.
    pub load_until: f64,
    /// How long a node restarted after a kill stands for no election (`master.recovery_wait_ms`
    /// under fsync other than `always`, 0 under `always`; `docs/failover.md`, rule 9).
    pub hold_after_restart_s: f64,
    /// Every partition of a node off the network (docker backend): from before the disconnect
    /// to after the reconnect. Its clock runs; it reaches nobody and nobody reaches it.
    pub partitions: Vec<Span>,
    /// Every power loss (fsync `never` schedules), in order.
    pub power_losses: Vec<PowerLoss>,
}

/// A power loss of a node of a failover schedule: kill -9, then a random tail of its newest
/// segment cut, then a restart. Every other node is up at the kill, and the nemesis does
/// nothing else until the node is back, its hold after the unclean stop is over and it has
/// caught up again with a master in office.
#[derive(Clone, Debug)]
pub struct PowerLoss {
    pub node: usize,
    /// Just before the kill.
    pub at: f64,
    /// What every node's own `GET /messages` showed right after the kill — its gap-free
    /// prefix, keys 1..=n, as values in key order — by node (`None`: the node that lost power,
    /// or no answer, or not that shape).
    pub logs: Vec<Option<Vec<String>>>,
}

impl PowerLoss {
    /// Whether some node other than the one that lost power showed `value` under `key`.
    pub fn held_elsewhere(&self, key: u64, value: &str) -> bool {
        let Some(i) = key.checked_sub(1) else {
            return false;
        };
        self.logs.iter().enumerate().any(|(n, l)| {
            n != self.node
                && l.as_ref()
                    .and_then(|l| l.get(i as usize))
                    .is_some_and(|v| v == value)
        })
    }
}
