//! `app` commands: an action forwarded to a service's own control endpoint (an HTTP POST of
//! JSON or a NATS request), allowed only when the service declares it; the app's answer
//! (status, body excerpt) is the command's result.

use super::exec::Execution;
use super::CommandHandler;
use opsfleet_proto::pb;

impl CommandHandler {
    pub(super) async fn app(&self, a: &pb::AppAction) -> Execution {
        Execution::done(Err(format!(
            "service {}: app control forwarding is not built yet",
            a.service
        )))
    }
}
