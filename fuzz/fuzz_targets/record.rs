//! The on-disk record decoder (`log::record`): arbitrary bytes decoded as a record, and the
//! same bytes read as a record to encode, decode back and damage. See `checks`.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use replog_fuzz::checks;

fuzz_target!(|data: &[u8]| {
    checks::check_record_bytes(data);
    let _ = round_trip(Unstructured::new(data));
});

fn round_trip(mut u: Unstructured<'_>) -> arbitrary::Result<()> {
    let key: u64 = u.arbitrary()?;
    let id = if u.arbitrary()? {
        // Now and then past the 256-byte limit, which encode must refuse.
        let n = if u.ratio(1u8, 16)? {
            u.int_in_range(250..=300)?
        } else {
            u.int_in_range(0..=16)?
        };
        Some(u.bytes(n)?)
    } else {
        None
    };
    let flip = if u.arbitrary()? {
        Some((u.arbitrary::<usize>()?, u.arbitrary::<u8>()?))
    } else {
        None
    };
    let trailing_len = u.int_in_range(0..=24)?;
    let trailing = u.bytes(trailing_len)?;
    let value = u.take_rest();
    checks::check_record_round_trip(key, id, value, trailing, flip);
    Ok(())
}
