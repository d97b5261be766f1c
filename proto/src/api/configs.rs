//! `ops.api.configs`: the configs one module of one host ran with, as its `module_state`
//! events carried them (fingerprints, when each was seen, which one runs now, and the TOML).

use serde::{Deserialize, Serialize};

use super::Responder;

/// Request for `ops.api.configs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigsRequest {
    pub host: String,
    /// The module instance (`disk`, `nightly-db`).
    pub module: String,
}

/// Reply to `ops.api.configs`: oldest first, at most the coordinator's per-module history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigsReply {
    pub responder: Responder,
    pub host: String,
    pub module: String,
    /// Fingerprint of the config the module runs now (its latest `module_state`).
    pub current: String,
    pub configs: Vec<ConfigVersion>,
}

/// One config of a module, identified by its 64-hex sha256 fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigVersion {
    pub fingerprint: String,
    /// Agent clock of the first and the latest event that carried it (0: not recorded).
    pub first_seen_unix_ms: i64,
    pub last_seen_unix_ms: i64,
    /// The module runs this config now.
    pub current: bool,
    /// The `[[modules]]` entry as TOML, as the agent announced it. Module configs are not
    /// redacted: they travel in `module_state` events every viewer can read, so they must hold
    /// no secrets (docs/modules.md).
    pub toml: String,
}

impl ConfigsReply {
    /// The config whose fingerprint is `wanted` or starts with it (at least 8 hex digits);
    /// `Err` with the reason (unknown, ambiguous) otherwise.
    pub fn find(&self, wanted: &str) -> Result<&ConfigVersion, String> {
        let hits: Vec<&ConfigVersion> = self
            .configs
            .iter()
            .filter(|c| {
                c.fingerprint == wanted || (wanted.len() >= 8 && c.fingerprint.starts_with(wanted))
            })
            .collect();
        match hits.as_slice() {
            [one] => Ok(one),
            [] if wanted.len() < 8 => Err(format!(
                "fingerprint {wanted:?} is too short: give at least 8 hex digits"
            )),
            [] => Err(format!(
                "no config of module {} on {} with fingerprint {wanted} (known: {})",
                self.module,
                self.host,
                self.known()
            )),
            many => Err(format!(
                "fingerprint {wanted} is ambiguous: it starts {} known fingerprints; give more of it",
                many.len()
            )),
        }
    }

    /// The current config, if the history holds it.
    pub fn current_config(&self) -> Option<&ConfigVersion> {
        self.configs.iter().find(|c| c.current)
    }

    fn known(&self) -> String {
        if self.configs.is_empty() {
            return "none".to_owned();
        }
        self.configs
            .iter()
            .map(|c| c.fingerprint.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(fp: &str, current: bool) -> ConfigVersion {
        ConfigVersion {
            fingerprint: fp.to_owned(),
            first_seen_unix_ms: 1,
            last_seen_unix_ms: 2,
            current,
            toml: String::new(),
        }
    }

    #[test]
    fn a_fingerprint_is_found_by_a_unique_prefix_of_eight_or_more() {
        let reply = ConfigsReply {
            responder: Responder {
                name: "blue".into(),
                color: "blue".into(),
                role: Default::default(),
                epoch: 1,
                applied_stream_seq: 0,
                behind: 0,
            },
            host: "web-01".into(),
            module: "disk".into(),
            current: "abcdef0123".into(),
            configs: vec![version("abcdef0123", true), version("abcdef0199", false)],
        };
        assert_eq!(reply.find("abcdef0123").map(|c| c.current), Ok(true));
        assert!(reply.find("abcdef01").unwrap_err().contains("ambiguous"));
        assert!(reply.find("abcd").unwrap_err().contains("at least 8"));
        let err = reply.find("99999999").unwrap_err();
        assert!(err.contains("known: abcdef0123, abcdef0199"), "{err}");
        assert_eq!(
            reply.current_config().map(|c| c.fingerprint.as_str()),
            Some("abcdef0123")
        );
    }
}
