//! The run-time control records of the modules (`c/<module>`, JSON owned by `crate::runner::control`)
//! in the agent's sled, beside the outbox: read at start, written and flushed on each change.

use super::{Outbox, OutboxError};

const CONTROL_PREFIX: &str = "c/";

impl Outbox {
    /// Every `c/<module>` record as (module, raw value), in module-name order.
    pub fn control_records(&self) -> Result<Vec<(String, Vec<u8>)>, OutboxError> {
        let mut out = Vec::new();
        for kv in self.db.scan_prefix(CONTROL_PREFIX.as_bytes()) {
            let (key, value) = kv.map_err(self.store_err("scan"))?;
            let rest = key.get(CONTROL_PREFIX.len()..).unwrap_or_default();
            let module = std::str::from_utf8(rest).map_err(|_| OutboxError::Corrupt {
                path: self.path.clone(),
                key: String::from_utf8_lossy(&key).into_owned(),
                reason: "control key is not UTF-8".to_owned(),
            })?;
            out.push((module.to_owned(), value.to_vec()));
        }
        Ok(out)
    }

    /// Writes (or with `None` deletes) `c/<module>` and flushes before returning, so an
    /// acknowledged control change survives a crash.
    pub async fn put_control(
        &self,
        module: &str,
        value: Option<Vec<u8>>,
    ) -> Result<(), OutboxError> {
        let key = format!("{CONTROL_PREFIX}{module}");
        match value {
            Some(v) => self.db.insert(key.as_bytes(), v),
            None => self.db.remove(key.as_bytes()),
        }
        .map_err(self.store_err("write"))?;
        self.db
            .flush_async()
            .await
            .map_err(self.store_err("flush"))?;
        Ok(())
    }
}
