//! The commands of the `replog` binary besides `serve`: the command line ([`cli`]), the
//! clients (`append`, `read`, `status`, `bench`: [`client`]) and `replog cluster`
//! ([`cluster`]).

pub mod cli;
pub mod client;
pub mod cluster;
