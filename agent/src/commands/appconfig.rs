//! `service_config_apply` / `service_config_rollback`: a declared config file of a service
//! replaced atomically, checked with the app's own check, applied (reload or restart) and
//! health gated; on any failure the previous content comes back.

use super::exec::Execution;
use super::CommandHandler;
use opsfleet_proto::pb;

impl CommandHandler {
    pub(super) async fn service_config_apply(&self, c: &pb::ServiceConfigApply) -> Execution {
        Execution::done(Err(format!(
            "service {}: config apply is not built yet",
            c.service
        )))
    }

    pub(super) async fn service_config_rollback(&self, c: &pb::ServiceConfigRollback) -> Execution {
        Execution::done(Err(format!(
            "service {}: config rollback is not built yet",
            c.service
        )))
    }
}
