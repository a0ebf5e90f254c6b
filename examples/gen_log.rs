//! Fills a data directory with N messages directly through the store, as a master's log: keys
//! 1..=N, `--size`-byte ASCII values, a fresh log identity. A node started on the directory
//! (`replog serve` with `node.data_dir` = DIR) recovers it like any log it wrote itself; this is
//! how the recovery-time and memory figures in docs/durability.md are made.
//!
//! ```text
//! cargo run --release --example gen_log -- DIR N [--size 100] [--segment-bytes 67108864]
//! ```
//!
//! DIR must not hold a log yet (the program refuses to append to one).

use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use replog::domain::{Entry, LogId};
use replog::storage::LogStore;
use replog::storage::file::{FileStore, FileStoreOptions};

const BATCH: usize = 4096;

fn usage(why: &str) -> ! {
    eprintln!("gen_log: {why}");
    eprintln!("usage: gen_log DIR N [--size BYTES] [--segment-bytes BYTES]");
    std::process::exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| usage("DIR is missing")));
    let n: u64 = args
        .next()
        .unwrap_or_else(|| usage("N is missing"))
        .parse()
        .unwrap_or_else(|_| usage("N must be a number"));
    let mut size = 100usize;
    let mut opts = FileStoreOptions::default();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--size" => size = value.parse().unwrap_or_else(|_| usage("--size BYTES")),
            "--segment-bytes" => {
                opts.segment_bytes = value
                    .parse()
                    .unwrap_or_else(|_| usage("--segment-bytes BYTES"))
            }
            _ => usage(&format!("unknown argument {flag}")),
        }
    }

    let (store, report) = FileStore::open(&dir, opts).unwrap_or_else(|e| {
        eprintln!("gen_log: cannot open {}: {e}", dir.display());
        std::process::exit(1)
    });
    if store.contiguous_key() != 0 || store.log_id().is_some() {
        eprintln!("gen_log: {} already holds a log ({report})", dir.display());
        std::process::exit(1);
    }
    let id = LogId::random();
    store.set_log_id(id).expect("set the log id");

    let started = Instant::now();
    let mut key = 0u64;
    let mut entries = Vec::with_capacity(BATCH);
    while key < n {
        entries.clear();
        while entries.len() < BATCH && key < n {
            key += 1;
            let mut v = format!("{key:020}-").into_bytes();
            v.resize(size, b'v');
            entries.push(Entry {
                key,
                value: Bytes::from(v),
                id: None,
            });
        }
        store.put(&entries).expect("put");
    }
    store.sync().expect("sync");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "gen_log: wrote {n} messages of {size} bytes to {} in {secs:.2} s ({} segments, log id {id})",
        dir.display(),
        store.segment_count()
    );
}
