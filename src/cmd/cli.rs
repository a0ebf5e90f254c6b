//! The command line (SPEC §8), parsed with clap. `main.rs` dispatches; the work lives in
//! `startup`, `cluster` and `client`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// replog: a replicated, append-only message log.
#[derive(Debug, Parser)]
#[command(
    name = "replog",
    version,
    about,
    long_about = None,
    after_help = "Exit codes: 0 done; 1 failed (one line on stderr); 2 bad command line; 3 `append` timed out waiting for its write concern: the message is appended under the key named and keeps replicating (retry with the same --id to get that key)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one node (master or secondary) from a TOML config and REPLOG_* variables.
    Serve {
        /// The TOML config file; without it, defaults and REPLOG_* variables only.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run a master and N secondaries locally (127.0.0.1, ports P, P+1, …); Ctrl-C stops all.
    Cluster {
        /// Number of secondaries.
        #[arg(long, default_value_t = 2)]
        secondaries: usize,
        /// The master's port; secondary i listens on base-port + i.
        #[arg(long, default_value_t = 8000)]
        base_port: u16,
        /// Each node keeps its data in `DIR/<node name>`.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// The address every node listens on.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Log file all nodes append to ("" for none).
        #[arg(long, default_value = "log/app.log")]
        log_file: String,
        /// Extra TOML settings applied to every node (e.g. a `[heartbeat]` section).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Runtime threads per node (node.worker_threads): 1, a single-threaded runtime, is the
        /// fastest when all nodes share one machine's cores; 0 = one per core.
        #[arg(long, default_value_t = 1)]
        worker_threads: usize,
        /// Failover on (`[failover]`): every node is a member, and when the master dies
        /// another one is elected.
        #[arg(long)]
        failover: bool,
    },
    /// Check a node's data directory offline (records, checksums, gaps); changes nothing.
    Check {
        /// The node's data_dir.
        dir: PathBuf,
    },
    /// Append a message and print its key.
    Append {
        /// The message.
        value: String,
        /// Write concern: a number of nodes, "all" or "majority" (default: the master's).
        #[arg(short = 'w', long = "write-concern")]
        write_concern: Option<String>,
        /// Idempotency id: retrying with the same id never appends twice.
        #[arg(long)]
        id: Option<String>,
        /// Stop waiting for the write concern after this many milliseconds: exit code 3, the
        /// message stays appended and keeps replicating.
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// The master's URL, or several node URLs separated by commas: the master among them
        /// is found (and 421 answers followed) — with failover, any node can be it.
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        master: String,
        /// Print the whole JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Print messages of a node, one per line: key, a tab, the value.
    Read {
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        node: String,
        /// First key.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// At most this many messages.
        #[arg(long)]
        limit: Option<u64>,
        /// Keep following the log (long poll) until interrupted.
        #[arg(long, short)]
        follow: bool,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Print the master's mode, quorum, and every secondary's status and lag.
    Status {
        /// The master's URL, or several node URLs separated by commas: the master among them
        /// is found (and 421 answers followed) — with failover, any node can be it.
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        master: String,
        /// Print the raw /health JSON.
        #[arg(long)]
        json: bool,
    },
    /// Load test: closed-loop appends; prints ops/s and latency percentiles.
    Bench {
        /// The master's URL, or several node URLs separated by commas: the master among them
        /// is found (and 421 answers followed) — with failover, any node can be it.
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        master: String,
        /// Concurrent clients, each with its own connection.
        #[arg(long, short, default_value_t = 64)]
        clients: usize,
        /// Threads the clients are spread over, each with its own event loop; 0: one per core.
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Measured seconds.
        #[arg(long, short, default_value_t = 10.0)]
        duration: f64,
        /// Warm-up seconds before measuring.
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        /// Write concern of every append.
        #[arg(short = 'w', long = "write-concern", default_value = "all")]
        write_concern: String,
        /// Value size in bytes.
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Stop after this many appends in all (a bound on the load).
        #[arg(long, default_value_t = 50_000_000)]
        max_ops: u64,
        /// Send every append with this `timeout_ms` (a 504 counts as an error).
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}
