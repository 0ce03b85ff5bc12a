//! End-to-end tests: the real gateway on real sockets with a real redb file.
//! One test binary (faster to link); `support` starts gateways and talks HTTP.

mod admin;
mod clock;
mod config;
mod console;
mod crash;
mod disk;
mod fleet_delivery;
mod fleet_ops;
mod fleet_plugins;
mod fleet_security;
mod fleet_smoke;
mod fleet_tenants;
mod forward;
mod hostile;
mod ingest;
mod metrics;
mod natsd;
mod operator_cli;
mod packaging;
mod pki;
mod plugin_dev;
mod plugin_fuzz;
mod plugins;
mod shutdown;
mod signatures;
mod sigstop;
mod store_cli;
mod support;
mod tls;
mod traces;
mod upload_limits;
