//! ops-coordinator: consumes the event stream, persists it in sled with the projections folded
//! from it (`ingest`, `store`, `projection`), elects an active coordinator through the KV lease
//! (`election`), and, while active, dispatches commands (`dispatch`) and evaluates alerts
//! (`alerts`, `notify`); every coordinator answers the query API (`api`).

pub mod admit;
pub mod alerts;
pub mod api;
pub mod config;
pub mod dispatch;
pub mod election;
pub mod emit;
pub mod http;
pub mod identity;
pub mod ingest;
pub mod notify;
pub mod projection;
pub mod rebuild;
pub mod service;
pub mod snapshot;
pub mod state;
pub mod store;
