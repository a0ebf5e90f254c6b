//! The integration suite: one test binary, one module per category (see README.md here).

mod helpers;

mod t10_acceptance;
