//! Active/standby service groups (the active coordinator keeps exactly one active member per
//! group and fails over on health): `config` (`[groups]`), `members` (a group's members as the
//! fleet shows them, pure), `decide` (what to do, pure), `driver` (acting on it while active
//! and caught up: `group_failover` events, `service_role` commands).

pub mod ask;
pub mod config;
pub mod decide;
pub mod driver;
pub mod handover;
pub mod members;

pub use config::GroupsConfig;
