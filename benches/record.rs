//! The on-disk record codec (`replog::storage::record`): encode, and decode with its CRC32C check,
//! of one record with a 100-byte value, with and without a client id.
//!
//! Run: `cargo bench --bench record`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use replog::storage::record::{self, Record, RecordStatus};

const VALUE: [u8; 100] = [b'x'; 100];
/// A typical idempotency id (a UUID).
const ID: &[u8] = b"5f0c6a52-8d3e-4b8e-9a77-1f2b3c4d5e6f";

fn bench_record(c: &mut Criterion) {
    let mut g = c.benchmark_group("record");
    for (name, id) in [("no_id", None), ("with_id", Some(ID))] {
        let rec = Record {
            key: 123_456_789,
            id,
            value: &VALUE,
        };
        g.throughput(Throughput::Bytes(rec.encoded_len() as u64));
        // The store encodes into a reused buffer, so this does too: no allocation per record.
        let mut buf = Vec::with_capacity(1024);
        g.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| {
                buf.clear();
                record::encode(black_box(&rec), &mut buf).expect("a valid record")
            })
        });
        let mut encoded = Vec::new();
        record::encode(&rec, &mut encoded).expect("a valid record");
        g.bench_function(format!("decode_verify/{name}"), |b| {
            b.iter(|| match record::decode(black_box(&encoded)) {
                RecordStatus::Valid(r) => r.value.len(),
                other => panic!("the bench's own record does not decode: {other:?}"),
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
    targets = bench_record
}
criterion_main!(benches);
