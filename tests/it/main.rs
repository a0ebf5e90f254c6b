//! The integration suite: one test binary, one module per category (see README.md here).

mod helpers;

mod t10_acceptance;
mod t20_delay;
mod t30_pause;
mod t40_error_injection;
mod t50_restart;
mod t60_bad_input;
