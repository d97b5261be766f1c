//! opsctl's library half: connecting from flags, calling the query API (following its pages),
//! and rendering replies as tables (pure functions of the reply and `now`, golden-tested).

pub mod audit;
pub mod client;
pub mod configs;
pub mod drill;
pub mod drills;
pub mod events;
pub mod groups;
pub mod leader;
pub mod out;
pub mod outcome;
pub mod paging;
pub mod render;
pub mod roll;
pub mod rollout;
pub mod sanitize;
pub mod service_config;
pub mod silences;
pub mod table;
pub mod verbs;
pub mod views;
pub mod wait;
