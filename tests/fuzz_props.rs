//! The fuzz targets' properties (`fuzz/src/checks.rs`) under proptest, with few enough cases
//! that they add seconds to `cargo test`: the record decoder, segment scan and recovery of a
//! data dir (with cuts), the replication batch decoder and the config parser. The long runs are
//! `fuzz/run.sh` (cargo-fuzz); see `fuzz/README.md`.
//!
//! Failures the fuzzers found are pinned as plain tests at the end, named after what broke.

#[path = "../fuzz/src/checks.rs"]
mod checks;

use checks::{BatchItem, Damage, SegmentPlan};
use proptest::prelude::*;
use proptest::sample::select;
use replog::storage::meta::CutMark;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..=max)
}

// ---------------------------------------------------------------------------------------------
// Records

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn record_decode_tells_the_truth_about_any_bytes(buf in bytes(160)) {
        checks::check_record_bytes(&buf);
    }

    #[test]
    fn record_round_trips_and_catches_any_changed_byte(
        key in prop_oneof![1 => Just(0u64), 8 => 1u64..1000, 2 => any::<u64>()],
        id in proptest::option::of(prop_oneof![8 => bytes(16), 1 => bytes(300)]),
        value in bytes(300),
        trailing in bytes(8),
        flip in proptest::option::of((any::<usize>(), any::<u8>())),
    ) {
        checks::check_record_round_trip(key, id.as_deref(), &value, &trailing, flip);
    }
}

// ---------------------------------------------------------------------------------------------
// Replication batches

fn batch_items() -> impl Strategy<Value = Vec<BatchItem>> {
    let item = (
        prop_oneof![1 => Just(0u64), 12 => 1u64..=3, 1 => any::<u64>()],
        proptest::option::of(prop_oneof![8 => ".{0,8}", 1 => "i{250,300}"]),
        ".{0,24}",
    );
    // Keys as steps from the previous one: mostly increasing, sometimes a repeat (step 0).
    proptest::collection::vec(item, 0..12).prop_map(|steps| {
        let mut key = 0u64;
        steps
            .into_iter()
            .map(|(step, id, value)| {
                key = key.saturating_add(step);
                (key, id, value)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn batch_decode_of_any_body_is_consistent(
        body in prop_oneof![
            bytes(200),
            // A valid header, so the fuzz reaches the entries.
            bytes(200).prop_map(|mut b| { b.splice(0..0, [1, 2, 0, 0, 0]); b }),
        ],
        max in select(vec![0usize, 16, 1 << 20]),
    ) {
        checks::check_batch_bytes(&body, max);
    }

    #[test]
    fn batch_round_trips_or_names_the_first_bad_entry(
        items in batch_items(),
        max in select(vec![0usize, 16, 1 << 20]),
    ) {
        checks::check_batch_round_trip(&items, max);
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// Settings and values to combine: real keys with good, bad and wrongly typed values.
const KEYS: &[&str] = &[
    "node.name",
    "node.role",
    "node.listen",
    "node.data_dir",
    "node.cluster_token",
    "node.worker_threads",
    "master.secondaries",
    "master.quorum",
    "master.default_write_concern",
    "master.default_timeout_ms",
    "master.advertise_url",
    "master.dedup_window",
    "master.max_pending_appends",
    "secondary.master_url",
    "replication.retry_delays_s",
    "replication.request_timeout_ms",
    "replication.max_inflight",
    "replication.max_batch_entries",
    "replication.max_batch_bytes",
    "heartbeat.interval_ms",
    "heartbeat.timeout_ms",
    "heartbeat.suspected_after",
    "heartbeat.unhealthy_after",
    "storage.engine",
    "storage.fsync",
    "storage.fsync_interval_ms",
    "storage.segment_bytes",
    "log.file",
    "log.level",
    "log.max_event_lines_per_s",
    "fault.enabled",
    "fault.error_rate",
    "limits.max_message_bytes",
    "node.bogus",
];

const VALUES: &[&str] = &[
    "0",
    "1",
    "2",
    "-1",
    "5000",
    "4096",
    "9223372036854775807",
    "-9223372036854775808",
    "0.5",
    "1.5",
    "-0.0",
    "nan",
    "inf",
    "1e300",
    "true",
    "\"\"",
    "\" \"",
    "\"master\"",
    "\"secondary\"",
    "\"all\"",
    "\"majority\"",
    "\"3\"",
    "\"0\"",
    "\"always\"",
    "\"never\"",
    "\"memory\"",
    "\"disk\"",
    "\"debug\"",
    "\"warn,replog=trace\"",
    "\"[\"",
    "\"127.0.0.1:8000\"",
    "\"[::1]:0\"",
    "\"http://h:1\"",
    "\"ftp://h\"",
    "\"a\\nb\"",
    "\"\\u0000\"",
    "[]",
    "[0.1, 2]",
    "[-1]",
    "[nan]",
    "[1e10]",
    "[{name = \"s1\", url = \"http://s1:1\"}]",
    "[{name = \"s1\", url = \"http://s1:1\"}, {name = \"s1\", url = \"http://s2:1\"}]",
    "[{name = \"\", url = \"http://s1:1\"}]",
    "[{name = \"s\", url = \"http://s:1\", extra = 1}]",
    "{}",
    "{a = 1}",
];

fn toml_doc() -> impl Strategy<Value = String> {
    proptest::collection::btree_map(select(KEYS), select(VALUES), 0..8)
        .prop_map(|m| m.into_iter().map(|(k, v)| format!("{k} = {v}\n")).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn config_from_toml_never_panics_and_explains_refusals(
        text in prop_oneof![4 => toml_doc(), 1 => ".{0,64}"],
    ) {
        checks::check_config_toml(&text);
    }

    #[test]
    fn config_from_env_never_panics_and_explains_refusals(
        vars in proptest::collection::vec(
            (
                prop_oneof![
                    4 => select(KEYS).prop_map(|k| format!("REPLOG_{}", k.replace('.', "_").to_uppercase())),
                    1 => "REPLOG_[A-Z_]{0,12}",
                ],
                prop_oneof![
                    3 => select(VALUES).prop_map(str::to_string),
                    1 => "[a-z0-9=,:/. ]{0,24}",
                    1 => Just("5\nlisten = 3".to_string()),
                ],
            ),
            0..4,
        ),
    ) {
        checks::check_config_env(&vars);
    }
}

// ---------------------------------------------------------------------------------------------
// Data directories

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        2 => Just(Damage::None),
        1 => any::<usize>().prop_map(Damage::Truncate),
        1 => (any::<usize>(), 1..=255u8).prop_map(|(p, m)| Damage::Flip(p, m)),
        1 => bytes(48).prop_map(Damage::Append),
        1 => (1..=600usize).prop_map(Damage::Zeros),
    ]
}

fn segment_plan() -> impl Strategy<Value = SegmentPlan> {
    let record = (
        prop_oneof![12 => 0u64..=10, 1 => any::<u64>()],
        proptest::option::of(prop_oneof![8 => bytes(6), 1 => bytes(300)]),
        bytes(32),
    );
    (
        prop_oneof![24 => Just(true), 1 => Just(false)],
        proptest::collection::vec(record, 0..10),
        damage(),
    )
        .prop_map(|(header, records, damage)| SegmentPlan {
            header,
            records,
            damage,
        })
}

/// Cuts recorded in a `cuts` file: small keys and offsets, so that they void some of the
/// planned records, and some positions lie beyond the records (to be moved back).
fn cuts() -> impl Strategy<Value = Vec<CutMark>> {
    let cut = (1u64..=10, 1u32..=4, 0u64..=400, 0u64..=5).prop_map(
        |(from_key, segment, offset, entries)| CutMark {
            from_key,
            segment,
            offset,
            entries,
        },
    );
    prop_oneof![2 => Just(Vec::new()), 3 => proptest::collection::vec(cut, 1..=3)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn recovery_cuts_only_a_damaged_tail_and_serves_only_valid_contiguous_records(
        plans in proptest::collection::vec(segment_plan(), 0..=3),
        cuts in cuts(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        checks::check_store(&dir.path().join("data"), &checks::build_segments(&plans), &cuts);
    }

    #[test]
    fn recovery_of_a_segment_of_garbage(garbage in bytes(200), header in any::<bool>()) {
        let mut file = Vec::new();
        if header {
            file.extend_from_slice(&replog::storage::segment::header(1));
        }
        file.extend_from_slice(&garbage);
        let dir = tempfile::tempdir().unwrap();
        checks::check_store(&dir.path().join("data"), &[file], &[]);
    }
}
