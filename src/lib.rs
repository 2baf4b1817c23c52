//! stratix-gateway: the Rust API gateway for ObSync on Docker Swarm.
//!
//! The modules form layers; each imports only from the layers below it (`tests/layers.rs`
//! checks it, `../shared/tools/module-cycles.py src` finds no cycle):
//!
//! 1. [`clock`] (one reading per poll, the exchange [`clock::Deadline`]), [`path`], [`config`],
//!    [`error`] (the boxed error, error chains), [`shard`] (per-worker cells), [`version`] (which
//!    build this is);
//! 2. [`http1`] (the wire format both sides share, no I/O), [`body`] (the client's, the
//!    upstream request's and the response bodies), [`reply`] (the gateway's own JSON answers);
//! 3. [`routing`] (prefix to upstream), [`auth`] (tokens to identity headers), [`telemetry`]
//!    (access log, metrics);
//! 4. [`upstream`] (discovery, health, balancing, breaker, retry, the pooled client);
//! 5. [`proxy`] (a request through a route to an upstream) and [`server`] (listeners,
//!    connections, draining): siblings, neither imports the other;
//! 6. [`admin`] (`/status`, `/metrics`), [`app`] (composition: the only place that wires the
//!    proxy into the listeners), [`demo`] (the gateway over demo tasks), [`lab`] (failure
//!    scenarios through an upstream's policy code on a paused clock), [`cli`].
//!
//! A request's way through them: `server` reads it into a [`body::ClientBody`], `app`'s
//! handler hands it to `proxy`, which routes it and sends it through the `upstream` stack, and
//! the answer travels back as a [`body::ResponseBody`] that `server` writes.

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod body;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod error;
pub mod http1;
pub mod lab;
pub mod path;
pub mod proxy;
pub mod reply;
pub mod routing;
pub mod server;
pub mod shard;
pub mod telemetry;
pub mod upstream;
pub mod version;
