//! The integration suite: one test binary, one module per category (see README.md here).

mod helpers;

mod t10_acceptance;
mod t11_seed_examples;
mod t12_reads;
mod t20_delay;
mod t30_pause;
mod t40_error_injection;
mod t50_restart;
mod t60_bad_input;
mod t65_config;
mod t66_security;
mod t70_cluster_sizes;
mod t80_cli;
mod t81_idempotency;
mod t82_tailing;
mod t83_metrics;
mod t84_openapi;
mod t85_backpressure;
