//! Test harness for opsfleet's integration tests: a real `nats-server -js`, the real `ops-agent`,
//! `ops-coordinator` and `opsctl` binaries, temp dirs, and teardown even on panic.
//!
//! Typical use (see `tests/tests/*.rs`):
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use opsfleet_tests::{AgentSpec, Cluster, CoordinatorSpec};
//!
//! # async fn demo() {
//! Cluster::run("example", async |c: &mut Cluster| {
//!     c.add_coordinator(CoordinatorSpec::new("blue"))?;
//!     c.add_agent(AgentSpec::new("web-01"))?;
//!     c.wait_hosts_at_least("blue", &BTreeMap::from([("web-01".to_owned(), 3)])).await?;
//!     let outboxes = c.stop_agents().await?;
//!     let blue = c.coordinator("blue")?;
//!     blue.stop().await?;
//!     let log = blue.dump_log().await?;
//!     # let _ = (outboxes, log);
//!     Ok(())
//! })
//! .await;
//! # }
//! ```
//!
//! Scenarios run inside [`Cluster::run`], which prints the tail of every process log when the
//! scenario fails or panics, and tears every process down in any case.

pub mod agent;
pub mod alertmanager;
pub mod artifacts;
pub mod backup;
pub mod bins;
pub mod browser;
pub mod check;
pub mod cluster;
pub mod compose;
pub mod console;
pub mod coordinator;
pub mod disk;
pub mod injected;
pub mod nats;
pub mod netns;
pub mod opsctl;
pub mod pagerduty;
pub mod procs;
pub mod pyenv;
pub mod receiver;
pub mod runbook;
pub mod s3server;
pub mod secure;
pub mod service_group;
pub mod service_project;
pub mod stream;
pub mod verbs;
pub mod wait;

pub use agent::{disk_and_log_modules, Agent, AgentSpec, OutboxInfo};
pub use check::{check_exactly_once, check_status_table, check_unique_ids, LogEntry};
pub use cluster::Cluster;
pub use coordinator::{Coordinator, CoordinatorSpec, RebuildReport};
pub use disk::SmallDisk;
pub use nats::NatsServer;
pub use netns::NetNs;
pub use opsctl::Opsctl;
pub use procs::{Proc, ProcessExited};
pub use receiver::{Receiver, Recorded, Reply};
pub use wait::{wait_until, wait_until_default, DEFAULT_POLL, DEFAULT_TIMEOUT};
