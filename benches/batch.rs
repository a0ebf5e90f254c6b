//! The binary replication batch codec (`replog::protocol`): encode and decode (with its
//! bounds, order and UTF-8 checks) of batches of 1, 64 and 512 entries with 100-byte values.
//!
//! Run: `cargo bench --bench batch`.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use replog::domain::Entry;
use replog::protocol::{decode_batch, encode_batch};

/// The receiver's limit on a value: `limits.max_message_bytes`, default 1 MiB.
const MAX_VALUE: usize = 1 << 20;

fn entries(n: usize) -> Vec<Entry> {
    let value = Bytes::from(vec![b'x'; 100]);
    (1..=n as u64)
        .map(|key| Entry {
            key: 1_000_000 + key,
            value: value.clone(),
            id: None,
        })
        .collect()
}

fn bench_batch(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch");
    for n in [1usize, 64, 512] {
        let batch = entries(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("encode", n), &batch, |b, batch| {
            b.iter(|| encode_batch(black_box(batch)))
        });
        let body = encode_batch(&batch);
        g.bench_with_input(BenchmarkId::new("decode", n), &body, |b, body| {
            // Cloning `Bytes` is a reference count: the decoder gets the body as a server
            // would hand it over, without a copy.
            b.iter(|| {
                decode_batch(black_box(body.clone()), MAX_VALUE)
                    .expect("the bench's own batch decodes")
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
        .measurement_time(Duration::from_secs(2));
    targets = bench_batch
}
criterion_main!(benches);
