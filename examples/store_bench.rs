//! Benchmarks the file log store alone: append throughput per fsync policy, recovery (open)
//! time, and resident memory after opening a large log.
//!
//! ```text
//! cargo run --release --example store_bench -- [--runs 3] [--secs 3] [--recovery 1000000,10000000]
//!                                              [--dir /tmp] [--skip-append] [--skip-recovery]
//! ```
//!
//! Every figure is the median of `--runs` runs. Data lives in a fresh directory under `--dir`
//! and is deleted afterwards. Recovery and memory are measured in a child process (this
//! program re-run as `store_bench open DIR`), so that what the writing phase allocated does not
//! count and the open is the process's first touch of the index.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use replog::domain::Entry;
use replog::storage::LogStore;
use replog::storage::file::{FileStore, FileStoreOptions};

const VALUE_BYTES: usize = 100;

struct Args {
    runs: usize,
    secs: f64,
    recovery: Vec<u64>,
    dir: PathBuf,
    append: bool,
    recover: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        runs: 3,
        secs: 3.0,
        recovery: vec![1_000_000, 10_000_000],
        dir: std::env::temp_dir(),
        append: true,
        recover: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--runs" => a.runs = value().parse().unwrap_or_else(|_| usage("--runs N")),
            "--secs" => a.secs = value().parse().unwrap_or_else(|_| usage("--secs S")),
            "--recovery" => {
                a.recovery = value()
                    .split(',')
                    .map(|n| n.parse().unwrap_or_else(|_| usage("--recovery N,N,…")))
                    .collect()
            }
            "--dir" => a.dir = PathBuf::from(value()),
            "--skip-append" => a.append = false,
            "--skip-recovery" => a.recover = false,
            _ => usage(&format!("unknown argument {flag}")),
        }
    }
    a
}

fn usage(why: &str) -> ! {
    eprintln!("store_bench: {why}");
    eprintln!(
        "usage: store_bench [--runs N] [--secs S] [--recovery N,N] [--dir DIR] [--skip-append] [--skip-recovery]"
    );
    std::process::exit(2)
}

fn value_for(key: u64) -> Bytes {
    let mut v = format!("{key:020}-").into_bytes();
    v.resize(VALUE_BYTES, b'v');
    Bytes::from(v)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(base: &Path, name: &str) -> Scratch {
        let p = base.join(format!("replog-store-bench-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Clone, Copy, Debug)]
enum Policy {
    Never,
    Interval,
    Always,
}

struct AppendResult {
    msgs_per_s: f64,
    syncs_per_s: f64,
}

/// Appends 100-byte messages in batches of `batch` for `secs` seconds under `policy`.
fn append_run(base: &Path, policy: Policy, batch: usize, secs: f64) -> AppendResult {
    let scratch = Scratch::new(base, "append");
    let (store, _) = FileStore::open(&scratch.0, FileStoreOptions::default()).expect("open");
    let store = Arc::new(store);
    let stop = Arc::new(AtomicBool::new(false));
    let syncs = Arc::new(AtomicU64::new(0));
    let syncer = matches!(policy, Policy::Interval).then(|| {
        let (store, stop, syncs) = (store.clone(), stop.clone(), syncs.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                store.sync().expect("sync");
                syncs.fetch_add(1, Ordering::Relaxed);
            }
        })
    });
    let deadline = Duration::from_secs_f64(secs);
    let started = Instant::now();
    let mut key = 0u64;
    let mut entries = Vec::with_capacity(batch);
    while started.elapsed() < deadline {
        // Check the clock every 64 puts at most, and build each batch fresh like the writer does.
        for _ in 0..64 {
            entries.clear();
            for _ in 0..batch {
                key += 1;
                entries.push(Entry {
                    key,
                    value: value_for(key),
                    id: None,
                });
            }
            store.put(&entries).expect("put");
            if let Policy::Always = policy {
                store.sync().expect("sync");
                syncs.fetch_add(1, Ordering::Relaxed);
            }
            if matches!(policy, Policy::Always) && started.elapsed() >= deadline {
                break;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = syncer {
        t.join().expect("syncer");
    }
    AppendResult {
        msgs_per_s: key as f64 / elapsed,
        syncs_per_s: syncs.load(Ordering::Relaxed) as f64 / elapsed,
    }
}

/// Fills a log with `n` messages (batches of 1000, one sync at the end); returns seconds taken.
fn fill(dir: &Path, n: u64) -> f64 {
    let (store, _) = FileStore::open(dir, FileStoreOptions::default()).expect("open");
    let started = Instant::now();
    let mut key = 0u64;
    let mut entries = Vec::with_capacity(1000);
    while key < n {
        entries.clear();
        while entries.len() < 1000 && key < n {
            key += 1;
            entries.push(Entry {
                key,
                value: value_for(key),
                id: None,
            });
        }
        store.put(&entries).expect("put");
    }
    store.sync().expect("sync");
    started.elapsed().as_secs_f64()
}

/// Child process: open `dir`, report open time and memory, then read everything back.
fn child_open(dir: &Path) {
    let rss_before = status_kb("VmRSS:");
    let started = Instant::now();
    let (store, report) = FileStore::open(dir, FileStoreOptions::default()).expect("open");
    let open_s = started.elapsed().as_secs_f64();
    let rss_open = status_kb("VmRSS:");
    let started = Instant::now();
    let mut from = 1;
    let mut n = 0u64;
    loop {
        let got = store.read(from, 1000, 1 << 20).expect("read");
        let Some(last) = got.last() else { break };
        from = last.key + 1;
        n += got.len() as u64;
    }
    let read_s = started.elapsed().as_secs_f64();
    assert_eq!(n, report.contiguous_key);
    println!(
        "open_s={open_s} records={} rss_before_kb={rss_before} rss_open_kb={rss_open} read_s={read_s} rss_after_read_kb={} hwm_kb={} index_bytes={}",
        report.records,
        status_kb("VmRSS:"),
        status_kb("VmHWM:"),
        report.index_bytes
    );
}

fn field(line: &str, name: &str) -> f64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn main() {
    let mut raw = std::env::args().skip(1);
    if raw.next().as_deref() == Some("open") {
        let dir = raw.next().unwrap_or_else(|| usage("open DIR"));
        child_open(Path::new(&dir));
        return;
    }
    let args = parse_args();
    println!(
        "store_bench: {}-byte values, median of {} runs, data under {}; load average at start: {}",
        VALUE_BYTES,
        args.runs,
        args.dir.display(),
        load()
    );

    if args.append {
        println!();
        println!("append throughput ({} s per run)", args.secs);
        println!(
            "{:<10} {:>6} {:>14} {:>10} {:>10}",
            "policy", "batch", "msgs/s", "MB/s", "fsyncs/s"
        );
        let cases = [
            (Policy::Never, 1),
            (Policy::Never, 64),
            (Policy::Interval, 1),
            (Policy::Interval, 64),
            (Policy::Always, 1),
            (Policy::Always, 16),
            (Policy::Always, 64),
        ];
        for (policy, batch) in cases {
            let runs: Vec<AppendResult> = (0..args.runs)
                .map(|_| append_run(&args.dir, policy, batch, args.secs))
                .collect();
            let msgs = median(runs.iter().map(|r| r.msgs_per_s).collect());
            let syncs = median(runs.iter().map(|r| r.syncs_per_s).collect());
            println!(
                "{:<10} {:>6} {:>14.0} {:>10.1} {:>10.0}",
                format!("{policy:?}").to_lowercase(),
                batch,
                msgs,
                msgs * VALUE_BYTES as f64 / 1e6,
                syncs
            );
        }
    }

    if args.recover {
        println!();
        println!("recovery (open in a fresh process; page cache warm) and memory");
        println!(
            "{:>11} {:>9} {:>9} {:>11} {:>10} {:>12} {:>11} {:>9}",
            "messages", "fill s", "open s", "RSS open", "index", "read-all s", "RSS after", "peak"
        );
        let exe = std::env::current_exe().expect("current exe");
        for &n in &args.recovery {
            let scratch = Scratch::new(&args.dir, &format!("recovery-{n}"));
            let fill_s = fill(&scratch.0, n);
            let lines: Vec<String> = (0..args.runs)
                .map(|_| {
                    let out = Command::new(&exe)
                        .arg("open")
                        .arg(&scratch.0)
                        .output()
                        .expect("run child");
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    String::from_utf8_lossy(&out.stdout).into_owned()
                })
                .collect();
            let med = |name: &str| median(lines.iter().map(|l| field(l, name)).collect());
            let mib = |kb: f64| format!("{:.0} MiB", kb / 1024.0);
            println!(
                "{:>11} {:>9.2} {:>9.2} {:>11} {:>10} {:>12.2} {:>11} {:>9}",
                n,
                fill_s,
                med("open_s"),
                mib(med("rss_open_kb")),
                format!("{:.0} MiB", med("index_bytes") / (1 << 20) as f64),
                med("read_s"),
                mib(med("rss_after_read_kb")),
                mib(med("hwm_kb")),
            );
        }
    }
    println!();
    println!("load average at end: {}", load());
}
