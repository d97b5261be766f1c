//! `ops.api.backups` (the backup catalog per host and job) and `ops.api.incidents` (log
//! incidents per host and file), filtered by host glob and paged by (host, job|path).

use opsfleet_proto::api::{
    truncate_excerpt, BackupFailureView, BackupSuccessView, BackupView, BackupsReply,
    BackupsRequest, IncidentView, IncidentsReply, IncidentsRequest, Responder, EXCERPT_MAX_BYTES,
};

use super::{page, Cursor, View};
use crate::glob::glob_match;
use crate::projection::{BackupJob, Fleet};

fn backup_view(host: &str, name: &str, job: &BackupJob, archives: bool) -> BackupView {
    BackupView {
        host: host.to_owned(),
        job: name.to_owned(),
        state: job.state(),
        last_success: job.last_success.as_ref().map(|s| BackupSuccessView {
            run_id: s.run_id.clone(),
            archive: s.archive.clone(),
            size_bytes: s.size_bytes,
            files: s.files,
            duration_ms: s.duration_ms,
            sha256: s.sha256.clone(),
            at_unix_ms: s.at_unix_ms,
        }),
        last_failure: job.last_failure.as_ref().map(|f| BackupFailureView {
            run_id: f.run_id.clone(),
            reason: f.reason.clone(),
            at_unix_ms: f.at_unix_ms,
        }),
        running: job.running.clone(),
        archives_kept: job.archives.len() as u64,
        pruned_archives: job.pruned_archives,
        pruned_bytes: job.pruned_bytes,
        last_restore: job.last_restore.clone(),
        archives: if archives {
            job.archives.clone()
        } else {
            Vec::new()
        },
        remote: job.remote.clone(),
        restore_test: job.restore_test.clone(),
    }
}

/// One page of backup jobs matching `req`, ascending by (host, job), and the next cursor.
pub fn backups(fleet: &Fleet, req: &BackupsRequest) -> (Vec<BackupView>, Option<String>) {
    let rows = fleet
        .hosts()
        .filter(|h| req.host.as_deref().is_none_or(|p| glob_match(p, &h.host)))
        .flat_map(|h| {
            h.runbooks
                .backups
                .iter()
                .filter(|(name, _)| req.job.as_deref().is_none_or(|j| j == name.as_str()))
                .map(move |(name, job)| {
                    let view = backup_view(&h.host, name, job, req.archives);
                    (Cursor::row(&h.host, name), view)
                })
        });
    page(rows, req)
}

/// One page of incidents matching `req`, ascending by (host, path), and the next cursor.
pub fn incidents(fleet: &Fleet, req: &IncidentsRequest) -> (Vec<IncidentView>, Option<String>) {
    let rows = fleet
        .hosts()
        .filter(|h| req.host.as_deref().is_none_or(|p| glob_match(p, &h.host)))
        .flat_map(|h| {
            h.runbooks
                .incidents
                .iter()
                .filter(|(_, i)| req.since_unix_ms.is_none_or(|s| i.last_at_unix_ms >= s))
                .map(move |(path, i)| {
                    let view = IncidentView {
                        host: h.host.clone(),
                        path: path.clone(),
                        pattern: i.last_pattern.clone(),
                        count: i.count,
                        suppressed: i.suppressed,
                        first_seen_unix_ms: i.first_at_unix_ms,
                        last_seen_unix_ms: i.last_at_unix_ms,
                        last_excerpt: truncate_excerpt(&i.last_excerpt, EXCERPT_MAX_BYTES),
                    };
                    (Cursor::row(&h.host, path), view)
                })
        });
    page(rows, req)
}

impl View for BackupsRequest {
    fn answer(&self, fleet: &Fleet, responder: Responder, _now_unix_ms: i64) -> BackupsReply {
        let (backups, next) = backups(fleet, self);
        BackupsReply {
            responder,
            backups,
            next,
        }
    }
}

impl View for IncidentsRequest {
    fn answer(&self, fleet: &Fleet, responder: Responder, _now_unix_ms: i64) -> IncidentsReply {
        let (incidents, next) = incidents(fleet, self);
        IncidentsReply {
            responder,
            incidents,
            next,
        }
    }
}
