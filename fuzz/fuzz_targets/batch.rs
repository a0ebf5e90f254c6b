//! The binary replication batch decoder (`protocol::decode_batch`): arbitrary bodies, and
//! batches built from the input, encoded and decoded back. See `checks`.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use replog_fuzz::checks::{self, BatchItem};

/// `limits.max_message_bytes` values to decode with: tiny ones make the limit reachable.
const MAX_VALUES: [usize; 4] = [0, 16, 1 << 20, 64 << 20];

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        checks::check_batch_bytes(data, 1 << 20);
        return;
    };
    let max_value = MAX_VALUES[usize::from(first) % MAX_VALUES.len()];
    checks::check_batch_bytes(body, max_value);
    let _ = round_trip(&mut Unstructured::new(body), max_value);
});

fn round_trip(u: &mut Unstructured<'_>, max_value: usize) -> arbitrary::Result<()> {
    let count = u.int_in_range(0..=16)?;
    let mut items: Vec<BatchItem> = Vec::with_capacity(count);
    let mut key = 0u64;
    for _ in 0..count {
        // Mostly increasing keys (a valid batch); sometimes anything (key 0, a repeat, …).
        key = if u.ratio(7u8, 8)? {
            key.saturating_add(u.int_in_range(1..=3)?)
        } else {
            u.arbitrary()?
        };
        let id: Option<String> = if u.arbitrary()? {
            Some(if u.ratio(1u8, 16)? {
                "i".repeat(u.int_in_range(250..=300)?)
            } else {
                u.arbitrary()?
            })
        } else {
            None
        };
        let value: String = u.arbitrary()?;
        items.push((key, id, value));
    }
    checks::check_batch_round_trip(&items, max_value);
    Ok(())
}
