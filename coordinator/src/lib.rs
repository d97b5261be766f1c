//! ops-coordinator: consumes the event stream, persists it in sled with the projections folded
//! from it (`ingest`, `store`, `projection`), elects an active coordinator through the KV lease
//! (`election`), and, while active, dispatches commands (`dispatch`) and evaluates alerts
//! (`alerts`, `notify`); every coordinator answers the query API (`api`).
//!
//! The library surface is deliberate: what `main.rs`, the benchmark and the integration tests
//! use (`config`, `service`, `store`, `projection`, `ingest`, `admit`, `election`, `state`,
//! `rebuild`) is `pub`; the rest is `pub(crate)`, so the compiler reports dead code there.

pub(crate) mod acting;
pub mod admit;
pub(crate) mod alerts;
pub(crate) mod api;
pub mod config;
pub(crate) mod console;
pub(crate) mod dispatch;
pub(crate) mod drills;
pub mod election;
pub(crate) mod emit;
pub(crate) mod glob;
pub(crate) mod groups;
pub(crate) mod http;
pub(crate) mod identity;
pub mod ingest;
pub mod memory;
pub(crate) mod metrics;
pub(crate) mod notify;
pub mod projection;
pub mod rebuild;
pub(crate) mod rollout;
pub mod service;
pub(crate) mod snapshot;
pub mod state;
pub mod store;

pub use alerts::evaluation_pass;
