//! ops-agent library: config, durable outbox, publisher, modules and the runner that ties
//! them together. `main.rs` only wires these up.

pub mod commands;
pub mod config;
pub mod footprint;
pub mod http;
pub mod modules;
pub mod outbox;
pub mod publisher;
pub mod runner;
pub mod telemetry;

pub use config::{AgentConfig, LoadedConfig, ModuleConfig};
pub use outbox::{NewEvent, Outbox, OutboxError, OutboxSummary, StateWrite, StoredEvent};
pub use publisher::{EventSink, JetStreamSink, Publisher, PublisherControl};
pub use runner::{ModuleEntry, Runner, StatusBoard};
