//! Durability (SPEC §6, issue 4): real `replog serve` processes keeping their logs on disk,
//! killed with SIGKILL, restarted, their segment files damaged, their data dirs wiped or
//! shared. Built on the integration suite's fixture (`tests/it/helpers.rs`) with disk-backed
//! clusters (`support::disk_cluster`).
//!
//! | file | what it shows |
//! |---|---|
//! | `d10_kill` | kill -9 of each node in turn under concurrent load: nothing acknowledged lost, moved or doubled |
//! | `d20_fsync` | per fsync policy: kill -9 of the master right after w=1 acks loses none of them |
//! | `d30_torn_tail` | a torn, flipped or garbage tail is cut at startup, the rest served, the node refilled; damage in a sealed segment stops the node |
//! | `d40_refill` | a wiped secondary is refilled; held-aside entries survive a restart; log identity |
//! | `d50_process` | `replog cluster` across Ctrl-C; two processes on one data dir |

#[path = "it/helpers.rs"]
mod helpers;

#[path = "durability/support.rs"]
mod support;

#[path = "durability/d10_kill.rs"]
mod d10_kill;
#[path = "durability/d20_fsync.rs"]
mod d20_fsync;
#[path = "durability/d30_torn_tail.rs"]
mod d30_torn_tail;
#[path = "durability/d40_refill.rs"]
mod d40_refill;
#[path = "durability/d50_process.rs"]
mod d50_process;
