//! The built-in dry-run route: each notification as one JSON line on stdout (or a test sink),
//! `{"dry_run":true,"route":"dry-run",<notification fields>}`.

use std::io::Write;
use std::sync::Mutex;

use serde::Serialize;

use super::{Delivery, Notification};

#[derive(Serialize)]
struct Line<'a> {
    dry_run: bool,
    route: &'a str,
    #[serde(flatten)]
    notification: &'a Notification,
}

/// The line printed for `n` (without the newline).
pub fn line(route: &str, n: &Notification) -> String {
    serde_json::to_string(&Line {
        dry_run: true,
        route,
        notification: n,
    })
    .unwrap_or_default()
}

/// Writes the line and a newline in one write, then flushes.
pub(super) fn print(
    sink: &Mutex<Box<dyn Write + Send>>,
    route: &str,
    n: &Notification,
) -> Delivery {
    let mut text = line(route, n);
    text.push('\n');
    let mut sink = match sink.lock() {
        Ok(s) => s,
        Err(poisoned) => poisoned.into_inner(),
    };
    match sink.write_all(text.as_bytes()).and_then(|()| sink.flush()) {
        Ok(()) => Delivery::DryRun,
        Err(e) => Delivery::Failed {
            attempts: 1,
            reason: format!("cannot write the dry-run line: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests::sample;

    #[test]
    fn golden_line() {
        assert_eq!(
            line("dry-run", &sample()),
            r#"{"dry_run":true,"route":"dry-run","id":"a1:firing:7","alert_id":"a1","rule":"disk_pressure","host":"db-01","subject":"/var","state":"firing","severity":"critical","summary":"/var is 95% full","at_unix_ms":1764633600000,"coordinator":"blue","epoch":7}"#
        );
    }
}
