//! Active/standby election through a lease in the KV bucket `ops_leader`: the pure state
//! machine (`fsm`), its timing and the fast-takeover promise (`timing`), and the driver that
//! runs it against NATS (`lease`).

pub mod foreign;
pub mod fsm;
pub mod lease;
pub mod timing;

pub use fsm::{Action, Election, Input, Role, Sighting, StepDown};
pub use lease::{
    Driver, LeaderRecord, LeaderView, Leadership, ReleaseHandle, Requester, RoleChange, LEADER_KEY,
};
pub use timing::{FastTakeover, LeaseTiming};
