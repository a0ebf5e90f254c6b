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
mod t86_events;
mod t90_issue_15;
mod t91_review_15;
mod t92_failover;
mod t93_review_13;
mod t95_failover_model;
mod t96_review_today;
mod t97_review_floor;
