//! Module configs the coordinator sends (pure): a rollback's config is looked up in the log by
//! fingerprint, and every candidate is parsed and its fingerprint recomputed exactly as the
//! agent computes it (`opsfleet_agent::config`), so a config an agent announced under a
//! fingerprint that is not its own is never sent; `config apply` is stamped with the
//! fingerprint the coordinator computed, not the one the request claims.

use std::collections::{BTreeMap, BTreeSet};

use super::DispatchError;
use crate::projection::Fleet;

/// The fingerprint of a module config given as the TOML of one `[[modules]]` entry, computed
/// as the agent computes it; `Err` with the reason if the agent would not accept the entry for
/// `module` (unparsable, invalid, or naming another module).
pub fn recompute(module: &str, toml: &str) -> Result<String, String> {
    let cfg = opsfleet_agent::config::parse_module_toml(toml).map_err(|problems| {
        problems
            .iter()
            .map(|(k, r)| format!("{k}: {r}"))
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    if cfg.name() != module {
        return Err(format!("the config is for module {:?}", cfg.name()));
    }
    Ok(cfg.fingerprint())
}

/// A config found for a rollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundConfig {
    /// The fingerprint, recomputed from `toml`.
    pub fingerprint: String,
    pub toml: String,
    /// Hosts that announced a matching fingerprint with a config that does not have it (or does
    /// not parse): skipped, worth a warning.
    pub forged_on: BTreeSet<String>,
}

/// The config of `module` whose fingerprint is (or, given at least 8 hex digits, starts with)
/// `wanted`, as the log knows it: the targets' own history first, then any host's (a
/// fingerprint names one config, wherever it was seen). Only entries whose fingerprint
/// recomputes to the announced one count; if `wanted` exists only as entries that do not, the
/// request is refused naming the hosts that announced them.
pub fn find_config(
    fleet: &Fleet,
    module: &str,
    wanted: &str,
    targets: &[String],
) -> Result<FoundConfig, DispatchError> {
    let Candidates {
        mut genuine,
        mut forged,
        known,
    } = candidates(fleet, module, wanted, targets);
    let pick = match genuine.get(wanted) {
        Some(toml) => Some((wanted.to_owned(), toml.clone())),
        None if genuine.len() == 1 => genuine.pop_first(),
        None if genuine.len() > 1 => {
            return Err(DispatchError::AmbiguousFingerprint {
                module: module.to_owned(),
                fingerprint: wanted.to_owned(),
                count: genuine.len(),
            })
        }
        None => None,
    };
    match pick {
        Some((fingerprint, toml)) => {
            let forged_on = forged.remove(&fingerprint).unwrap_or_default();
            Ok(FoundConfig {
                fingerprint,
                toml,
                forged_on,
            })
        }
        None if !forged.is_empty() => {
            let fingerprints: Vec<&str> = forged.keys().map(String::as_str).collect();
            let fingerprint = fingerprints.join(", ");
            let hosts: BTreeSet<String> = forged.into_values().flatten().collect();
            Err(DispatchError::ForgedFingerprint {
                module: module.to_owned(),
                fingerprint,
                hosts: hosts.into_iter().collect::<Vec<_>>().join(", "),
            })
        }
        None => Err(DispatchError::UnknownFingerprint {
            module: module.to_owned(),
            fingerprint: wanted.to_owned(),
            known: if known.is_empty() {
                "none".to_owned()
            } else {
                known.into_iter().collect::<Vec<_>>().join(", ")
            },
        }),
    }
}

/// The configs of one module the log knows that `find_config` chooses from.
struct Candidates {
    /// Verified fingerprint matching the wanted one -> the first TOML found for it.
    genuine: BTreeMap<String, String>,
    /// Announced fingerprint matching the wanted one -> hosts whose entry does not
    /// recompute to it.
    forged: BTreeMap<String, BTreeSet<String>>,
    /// Every verified fingerprint, for the error that names what is known.
    known: BTreeSet<String>,
}

/// The configs of `module` on the targets first, then on any host, each host once.
fn candidates(fleet: &Fleet, module: &str, wanted: &str, targets: &[String]) -> Candidates {
    let on_targets = targets.iter().filter_map(|h| fleet.host(h));
    let mut seen_hosts: BTreeSet<&str> = BTreeSet::new();
    let mut found = Candidates {
        genuine: BTreeMap::new(),
        forged: BTreeMap::new(),
        known: BTreeSet::new(),
    };
    for host in on_targets.chain(fleet.hosts()) {
        if !seen_hosts.insert(host.host.as_str()) {
            continue;
        }
        let Some(info) = host.modules.get(module) else {
            continue;
        };
        for c in &info.configs {
            let hit =
                c.fingerprint == wanted || (wanted.len() >= 8 && c.fingerprint.starts_with(wanted));
            let verified = recompute(module, &c.toml).is_ok_and(|fp| fp == c.fingerprint);
            if verified {
                found.known.insert(c.fingerprint.clone());
            }
            if !hit {
                continue;
            }
            if verified {
                found
                    .genuine
                    .entry(c.fingerprint.clone())
                    .or_insert_with(|| c.toml.clone());
            } else {
                found
                    .forged
                    .entry(c.fingerprint.clone())
                    .or_default()
                    .insert(host.host.clone());
            }
        }
    }
    found
}

/// The fingerprint to stamp on `config apply` of `toml` to `module`: recomputed here. A
/// request that claims a different one is refused; a config the agent would not accept gets
/// none (the agent rejects it with every problem and keeps its config, as a `config_rejected`
/// event says).
pub fn apply_fingerprint(
    module: &str,
    toml: &str,
    claimed: Option<&str>,
) -> Result<String, DispatchError> {
    let Ok(fingerprint) = recompute(module, toml) else {
        return Ok(String::new());
    };
    match claimed.map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) if c != fingerprint => Err(DispatchError::FingerprintMismatch {
            module: module.to_owned(),
            claimed: c.to_owned(),
            computed: fingerprint,
        }),
        _ => Ok(fingerprint),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsfleet_proto::{pb, EventEnvelope};
    use uuid::Uuid;

    const ONE: &str = "type = \"disk\"\nname = \"disk\"\ninterval = \"10s\"\npaths = [\"/\"]\n";
    const TWO: &str = "type = \"disk\"\nname = \"disk\"\ninterval = \"20s\"\npaths = [\"/\"]\n";
    const EVIL: &str = "type = \"health\"\nname = \"disk\"\ninterval = \"10s\"\n\
                        [[probes]]\nname = \"x\"\ntype = \"command\"\nargv = [\"/bin/sh\", \"-c\", \"id\"]\n";

    fn fp(toml: &str) -> String {
        recompute("disk", toml).expect("valid config")
    }

    fn announce(fleet: &mut Fleet, host: &str, seq: u64, fingerprint: &str, toml: &str) {
        fleet.apply(&EventEnvelope {
            id: Uuid::now_v7(),
            host: host.to_owned(),
            seq,
            time_unix_ms: seq as i64,
            module: "disk".to_owned(),
            incarnation: Uuid::nil(),
            body: pb::event::Body::ModuleState(pb::ModuleState {
                module: "disk".to_owned(),
                kind: "disk".to_owned(),
                state: pb::ModuleRunState::Running as i32,
                reason: "started".to_owned(),
                config_fingerprint: fingerprint.to_owned(),
                config_toml: toml.to_owned(),
            }),
        });
    }

    #[test]
    fn the_fingerprint_is_the_agents() {
        let cfg = opsfleet_agent::config::parse_module_toml(ONE).expect("valid");
        assert_eq!(recompute("disk", ONE), Ok(cfg.fingerprint()));
        // The agent announces `toml::to_string` of its config: that text recomputes too.
        let announced = toml::to_string(&cfg).expect("serialises");
        assert_eq!(recompute("disk", &announced), Ok(cfg.fingerprint()));
        assert_ne!(fp(ONE), fp(TWO));
        assert!(recompute("disk", "type = ").is_err());
        assert!(recompute("disk", "type = \"disk\"\ninterval = \"0s\"\n").is_err());
        let other = recompute("log", ONE).unwrap_err();
        assert!(other.contains("\"disk\""), "{other}");
    }

    #[test]
    fn rollback_finds_the_config_by_fingerprint_in_the_log() {
        let mut fleet = Fleet::new();
        announce(&mut fleet, "web-01", 1, &fp(ONE), ONE);
        announce(&mut fleet, "web-02", 1, &fp(TWO), TWO);
        let targets = ["web-01".to_owned()];
        let found = find_config(&fleet, "disk", &fp(ONE), &targets).unwrap();
        assert_eq!((found.fingerprint, found.toml), (fp(ONE), ONE.to_owned()));
        // A prefix of 8+ digits is enough; a config seen on another host counts too.
        let found = find_config(&fleet, "disk", &fp(TWO)[..8], &targets).unwrap();
        assert_eq!(found.fingerprint, fp(TWO));
        let err = find_config(&fleet, "disk", "0123456789", &targets)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("0123456789") && err.contains(&fp(ONE)),
            "{err}"
        );
        assert!(matches!(
            find_config(&fleet, "log", &fp(ONE), &targets),
            Err(DispatchError::UnknownFingerprint { .. })
        ));
    }

    #[test]
    fn a_forged_fingerprint_is_never_sent() {
        let mut fleet = Fleet::new();
        // A valid config of its own, just not the one it claims to be.
        assert!(recompute("disk", EVIL).is_ok_and(|real| real != fp(ONE)));
        // db-01 announces ONE's fingerprint with a command-probe config.
        announce(&mut fleet, "db-01", 1, &fp(ONE), EVIL);
        // ... and a fingerprint of its own invention, and a config that does not parse.
        announce(&mut fleet, "db-01", 2, &"f".repeat(64), EVIL);
        announce(&mut fleet, "db-01", 3, &"e".repeat(64), "type = ");
        let targets = ["web-01".to_owned()];
        let err = find_config(&fleet, "disk", &fp(ONE), &targets).unwrap_err();
        assert!(
            matches!(&err, DispatchError::ForgedFingerprint { hosts, .. } if hosts == "db-01"),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains(&fp(ONE)) && text.contains("db-01"), "{text}");
        for (wanted, named) in [
            ("f".repeat(64), "f".repeat(64)),
            ("eeeeeeee".to_owned(), "e".repeat(64)),
        ] {
            let err = find_config(&fleet, "disk", &wanted, &targets).unwrap_err();
            assert!(
                matches!(&err, DispatchError::ForgedFingerprint { fingerprint, .. } if *fingerprint == named),
                "{err}"
            );
        }
        // Once web-01 announced ONE for real, the genuine entry is sent, never the forged one.
        announce(&mut fleet, "web-01", 1, &fp(ONE), ONE);
        let found = find_config(&fleet, "disk", &fp(ONE), &targets).unwrap();
        assert_eq!(found.toml, ONE);
        assert_eq!(found.forged_on, BTreeSet::from(["db-01".to_owned()]));
        // Forged entries do not make a prefix ambiguous either.
        let found = find_config(&fleet, "disk", &fp(ONE)[..10], &targets).unwrap();
        assert_eq!(found.toml, ONE);
        // ... nor are they listed as known.
        let err = find_config(&fleet, "disk", "0123456789", &targets)
            .unwrap_err()
            .to_string();
        assert!(!err.contains(&"f".repeat(64)), "{err}");
    }

    #[test]
    fn apply_is_stamped_with_the_recomputed_fingerprint() {
        assert_eq!(apply_fingerprint("disk", ONE, None).unwrap(), fp(ONE));
        assert_eq!(
            apply_fingerprint("disk", ONE, Some(&fp(ONE))).unwrap(),
            fp(ONE)
        );
        let err = apply_fingerprint("disk", ONE, Some(&fp(TWO))).unwrap_err();
        assert!(matches!(err, DispatchError::FingerprintMismatch { .. }));
        assert!(err.to_string().contains(&fp(ONE)), "{err}");
        // A config the agent would reject goes out unstamped, for the agent to say why.
        assert_eq!(apply_fingerprint("disk", "type = ", None).unwrap(), "");
    }
}
