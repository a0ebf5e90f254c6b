//! The log store through the `LogStore` trait: `FileStore` (segment files in a temporary
//! directory) beside `MemoryStore`.
//!
//! * `append/<store>/<fsync>/<batch>`: one `put` of a batch of 1 or 64 new entries (100-byte
//!   values, consecutive keys, as the master's writer does it). The fsync policy lives in the
//!   writer, not the store, so it is modelled here the way the writer applies it: `never` is
//!   `put` alone; `always` is `put` then `sync` (one fsync per batch: group commit);
//!   `interval` is `put` alone while another thread calls `sync` every 100 ms (the default
//!   `storage.fsync_interval_ms`).
//! * `read_1000/<store>`: `read` of 1000 entries from a log of 100 000, starting at a different
//!   place each time (all in the page cache for the file store).
//!
//! Appended stores are replaced by empty ones every [`REFILL_AT`] entries (outside the timed
//! part), so memory and disk use stay bounded however many iterations criterion asks for.
//!
//! Run: `cargo bench --bench store`.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use replog::domain::Entry;
use replog::storage::LogStore;
use replog::storage::file::{FileStore, FileStoreOptions};
use replog::storage::memory::MemoryStore;
use tempfile::TempDir;

/// Entries after which an appended store is thrown away and a fresh one started.
const REFILL_AT: u64 = 1_000_000;
/// The size of the log `read_1000` reads from.
const READ_LOG: u64 = 100_000;
const INTERVAL: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fsync {
    Never,
    Interval,
    Always,
}

impl Fsync {
    fn name(self) -> &'static str {
        match self {
            Fsync::Never => "never",
            Fsync::Interval => "interval",
            Fsync::Always => "always",
        }
    }
}

/// A store to append to, with the directory it lives in (for a file store).
struct Target {
    store: Arc<dyn LogStore>,
    _dir: Option<TempDir>,
}

fn file_store() -> Target {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (store, _) = FileStore::open(dir.path(), FileStoreOptions::default()).expect("open");
    Target {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

fn memory_store() -> Target {
    Target {
        store: Arc::new(MemoryStore::new()),
        _dir: None,
    }
}

/// `n` entries with consecutive keys after `store`'s last one, sharing one value buffer.
fn next_batch(store: &dyn LogStore, value: &Bytes, n: usize) -> Vec<Entry> {
    let first = store.contiguous_key() + 1;
    (first..first + n as u64)
        .map(|key| Entry {
            key,
            value: value.clone(),
            id: None,
        })
        .collect()
}

/// Calls `sync` on `store` every [`INTERVAL`] until dropped, like the writer's interval task.
struct Syncer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    fn start(store: Arc<dyn LogStore>) -> Syncer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::park_timeout(INTERVAL);
                store.sync().expect("fsync");
            }
        });
        Syncer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Makes an empty store to append to.
type MakeStore = fn() -> Target;

fn bench_append(c: &mut Criterion) {
    let value = Bytes::from(vec![b'x'; 100]);
    let cases: [(&str, MakeStore, Fsync); 4] = [
        ("file", file_store, Fsync::Never),
        ("file", file_store, Fsync::Interval),
        ("file", file_store, Fsync::Always),
        ("memory", memory_store, Fsync::Never),
    ];
    let mut g = c.benchmark_group("append");
    for (store_name, make, fsync) in cases {
        for n in [1usize, 64] {
            g.throughput(Throughput::Elements(n as u64));
            // An fsync per batch takes milliseconds on a real disk: fewer, longer samples.
            g.sample_size(if fsync == Fsync::Always { 20 } else { 50 });
            let id = BenchmarkId::new(format!("{store_name}/{}", fsync.name()), n);
            let start_syncer =
                |t: &Target| (fsync == Fsync::Interval).then(|| Syncer::start(t.store.clone()));
            let mut target = make();
            // One syncer for the whole benchmark (not per sample), so short samples see
            // their share of fsyncs too.
            let mut syncer = start_syncer(&target);
            g.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        if target.store.contiguous_key() >= REFILL_AT {
                            // Untimed: the old store's syncer stops before it is dropped.
                            drop(syncer.take());
                            target = make();
                            syncer = start_syncer(&target);
                        }
                        let batch = next_batch(&*target.store, &value, n);
                        let t0 = Instant::now();
                        let stored = target.store.put(black_box(&batch)).expect("put");
                        if fsync == Fsync::Always {
                            target.store.sync().expect("fsync");
                        }
                        spent += t0.elapsed();
                        assert_eq!(stored, n);
                    }
                    spent
                })
            });
            drop(syncer);
        }
    }
    g.finish();
}

fn bench_read(c: &mut Criterion) {
    let value = Bytes::from(vec![b'x'; 100]);
    let mut g = c.benchmark_group("read_1000");
    g.throughput(Throughput::Elements(1000));
    for (name, make) in [("file", file_store as MakeStore), ("memory", memory_store)] {
        let target = make();
        while target.store.contiguous_key() < READ_LOG {
            let batch = next_batch(&*target.store, &value, 1000);
            target.store.put(&batch).expect("put");
        }
        let mut from = 1u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                // Walk through the log so reads do not all hit the same few pages.
                from = (from + 7_919) % (READ_LOG - 1000) + 1;
                let got = target
                    .store
                    .read(black_box(from), 1000, usize::MAX)
                    .expect("read");
                assert_eq!(got.len(), 1000);
                got
            })
        });
    }
    g.finish();
}

// The allocator of the `replog` binary (see src/main.rs), so allocation costs are the ones a
// node pays.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = bench_append, bench_read
}
criterion_main!(benches);
