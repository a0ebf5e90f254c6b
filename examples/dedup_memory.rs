//! Measures the memory cost of the master's idempotency index (`replog::storage::dedup::IdIndex`) per
//! remembered id, with a counting allocator: the heap bytes live after inserting N ids,
//! divided by N. The figures in `src/dedup.rs` and the README come from this.
//!
//! ```text
//! cargo run --release --example dedup_memory -- [N=1000000] [ID_BYTES=36]
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use replog::storage::dedup::IdIndex;

/// The system allocator, counting live bytes as the allocator hands them out (rounded up to
/// the allocator's granularity is not visible here, so glibc's 8-byte chunk header and 16-byte
/// rounding are added per allocation in [`malloc_usable`]).
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static ALLOCS: AtomicIsize = AtomicIsize::new(0);

/// What glibc's malloc really takes for a request of `size` bytes: a chunk of at least 32
/// bytes holding the size plus an 8-byte header, rounded up to 16.
fn malloc_usable(size: usize) -> isize {
    (size + 8).div_ceil(16).max(2) as isize * 16
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(malloc_usable(layout.size()), Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(malloc_usable(layout.size()), Ordering::Relaxed);
        ALLOCS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            malloc_usable(new_size) - malloc_usable(layout.size()),
            Ordering::Relaxed,
        );
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn measure(n: u64, id_bytes: usize, window: Option<u64>) -> f64 {
    let before = LIVE.load(Ordering::Relaxed);
    let mut ix = IdIndex::new(window);
    let mut id = vec![b'x'; id_bytes];
    for key in 1..=n {
        // Unique ids of exactly `id_bytes` bytes.
        let digits = format!("{key:020}");
        let tail = digits.len().min(id_bytes);
        id[id_bytes - tail..].copy_from_slice(&digits.as_bytes()[digits.len() - tail..]);
        ix.insert(&id, key);
    }
    assert_eq!(ix.len() as u64, window.map_or(n, |w| w.min(n)));
    let after = LIVE.load(Ordering::Relaxed);
    let per_id = (after - before) as f64 / ix.len() as f64;
    drop(ix);
    per_id
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let id_bytes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(36);
    println!("{n} ids of {id_bytes} bytes (heap bytes per remembered id, glibc chunk sizes):");
    println!(
        "  whole log (no window):         {:>6.1} B/id",
        measure(n, id_bytes, None)
    );
    println!(
        "  window = N (eviction queue):   {:>6.1} B/id",
        measure(n, id_bytes, Some(n))
    );
    println!(
        "  window = N, 10 N appended:     {:>6.1} B/id",
        measure(n * 10, id_bytes, Some(n))
    );
}
