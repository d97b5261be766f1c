//! `opsctl silence add|list|expire` and `opsctl alerts ack`: ask, then print the silence or
//! alert as recorded (JSON, or a line), or the silences table.

use opsfleet_cli::client::Api;
use opsfleet_cli::out::write_out;
use opsfleet_cli::sanitize::inert;
use opsfleet_cli::silences::{self, AckArgs, SilenceCommand};
use opsfleet_proto::api::{SilenceExpire, SilenceRequest};

use crate::args::Output;
use crate::exit;
use crate::show::print;

/// `opsctl silence ...`.
pub async fn run(api: &Api, cmd: SilenceCommand, output: Output) -> anyhow::Result<()> {
    let req = match cmd {
        SilenceCommand::List(a) => {
            let reply = silences::list(api, &a).await?;
            return print(&reply, output, silences::render);
        }
        SilenceCommand::Add(a) => a.request().map_err(exit::Usage)?,
        SilenceCommand::Expire(a) => SilenceRequest::Expire(SilenceExpire { id: a.id }),
    };
    let what = req.what();
    let reply = api.silence(&req).await?;
    let s = &reply.silence;
    match output {
        Output::Json => print(&reply, output, |_| String::new()),
        Output::Table => Ok(write_out(&format!(
            "{what}: {} ({}) by {}; {}\n",
            inert(&s.id),
            inert(&s.state),
            inert(&s.created_by),
            inert(&s.reason)
        ))?),
    }
}

/// `opsctl alerts ack`.
pub async fn ack(api: &Api, a: AckArgs, output: Output) -> anyhow::Result<()> {
    let reply = api.alert_ack(&a.request()).await?;
    let alert = &reply.alert;
    match output {
        Output::Json => print(&reply, output, |_| String::new()),
        Output::Table => Ok(write_out(&format!(
            "acknowledged {} ({}) by {}\n",
            inert(&alert.key),
            alert.state,
            inert(alert.acked_by.as_deref().unwrap_or("-"))
        ))?),
    }
}
