//! `opsctl rollout ...` and `opsctl rollouts`, the library half: the flags (`args`), which
//! rollout a verb means (an id, the newest of a service, or the newest) and the requests on
//! `ops.api.rollout(s)`, and following one (`progress`, pure). The tables are
//! `views::rollouts`; opsctl's `rollout.rs` prints.

pub mod args;
pub mod help;
pub mod progress;

use opsfleet_proto::api::{
    RolloutOp, RolloutReply, RolloutRequest, RolloutView, RolloutsReply, RolloutsRequest,
};

use crate::client::{Api, ClientError};
use args::PickArgs;

/// Why a rollout could not be read or acted on.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("cannot read the rollouts")]
    List {
        #[source]
        source: ClientError,
    },
    #[error("no rollout {what} (`opsctl rollouts` lists them)")]
    NotFound { what: String },
    #[error("rollout {op}")]
    Act {
        op: &'static str,
        #[source]
        source: ClientError,
    },
}

/// `with id 0193a4c2`, `of service web`, `at all`: what a pick meant, for `NotFound`.
fn describe(pick: &PickArgs) -> String {
    match (&pick.id, &pick.service) {
        (Some(id), _) => format!("with id {id:?}"),
        (None, Some(s)) => format!("of service {s:?}"),
        (None, None) => "yet".to_owned(),
    }
}

/// The request that reads the rollout `pick` means: by id, else the newest (of a service).
pub fn pick_request(pick: &PickArgs) -> RolloutsRequest {
    RolloutsRequest {
        id: pick.id.clone(),
        service: if pick.id.is_some() {
            None
        } else {
            pick.service.clone()
        },
        limit: Some(1),
    }
}

/// The rollout `pick` means, with the reply it came in (for who answered).
pub async fn find(
    api: &Api,
    pick: &PickArgs,
) -> Result<(RolloutsReply, RolloutView), RolloutError> {
    let reply = api
        .rollouts(&pick_request(pick))
        .await
        .map_err(|source| RolloutError::List { source })?;
    match reply.rollouts.first().cloned() {
        Some(view) => Ok((reply, view)),
        None => Err(RolloutError::NotFound {
            what: describe(pick),
        }),
    }
}

/// The request of `op` on the rollout `pick` means. Without an id or a service, the newest
/// rollout's id is read first, so the coordinator is always told which one.
pub async fn op_request(
    api: &Api,
    op: RolloutOp,
    pick: &PickArgs,
    requested_by: &str,
) -> Result<RolloutRequest, RolloutError> {
    let mut req = RolloutRequest {
        op,
        start: None,
        id: pick.id.clone(),
        service: pick.service.clone().filter(|_| pick.id.is_none()),
        requested_by: requested_by.to_owned(),
    };
    if req.id.is_none() && req.service.is_none() {
        let (_, newest) = find(api, pick).await?;
        req.id = Some(newest.id);
    }
    Ok(req)
}

/// Sends `req` on `ops.api.as.<operator>.<role>.rollout` (the role the op needs).
pub async fn act(api: &Api, req: &RolloutRequest) -> Result<RolloutReply, RolloutError> {
    api.rollout(req).await.map_err(|source| RolloutError::Act {
        op: req.op.as_str(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pick_reads_one_rollout_by_id_else_the_newest_of_a_service() {
        let by_id = pick_request(&PickArgs {
            id: Some("0193a4c2".into()),
            service: None,
        });
        assert_eq!(by_id.id.as_deref(), Some("0193a4c2"));
        assert_eq!(by_id.limit, Some(1));
        let by_service = pick_request(&PickArgs {
            id: None,
            service: Some("web".into()),
        });
        assert_eq!(
            (by_service.id, by_service.service.as_deref()),
            (None, Some("web"))
        );
        let newest = pick_request(&PickArgs::default());
        assert_eq!(
            (newest.id, newest.service, newest.limit),
            (None, None, Some(1))
        );
    }
}
