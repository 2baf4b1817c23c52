//! stratix-gateway: the Rust API gateway for ObSync on Docker Swarm.
//!
//! The modules follow a request's path: [`config`] -> [`server`] (listeners, shutdown,
//! `/health`) -> [`routing`] -> [`proxy`] (headers, errors) -> [`upstream`] (endpoints and the
//! pooled client) -> [`telemetry`]; [`admin`] serves the operator-only listener.
//!
//! At the bottom, importing nothing of the crate but each other's leaves: [`clock`] (one
//! reading per poll), [`config`], [`path`] (dot segments and route prefixes) and [`shard`]
//! (per-worker cells). The layers above are being made one-way (issue 19; what is left is in
//! its notes): `../shared/tools/module-cycles.py src` lists the cycles that remain.

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]

pub mod admin;
pub mod body;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod http1;
pub mod path;
pub mod proxy;
pub mod reply;
pub mod routing;
pub mod server;
pub mod shard;
pub mod telemetry;
pub mod upstream;
