//! Active/standby election through a lease in the KV bucket `ops_leader`: the pure state
//! machine (`fsm`) and the driver that runs it against NATS (`lease`).

pub mod fsm;
pub mod lease;

pub use fsm::{Action, Election, Input, LeaseTiming, Role, StepDown};
pub use lease::{
    Driver, LeaderRecord, LeaderView, Leadership, ReleaseHandle, Requester, RoleChange, LEADER_KEY,
};
