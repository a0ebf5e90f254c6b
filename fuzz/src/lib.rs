//! Fuzz targets for replog's input decoders (see `fuzz/README.md`). The properties live in
//! [`checks`], which `tests/fuzz_props.rs` also runs under proptest in every `cargo test`.

pub mod checks;
