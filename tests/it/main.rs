//! End-to-end tests: the real gateway on real sockets with a real redb file.
//! One test binary (faster to link); `support` starts gateways and talks HTTP.

mod config;
mod admin;
mod crash;
mod forward;
mod ingest;
mod metrics;
mod plugins;
mod shutdown;
mod traces;
mod support;
mod pki;
mod tls;
