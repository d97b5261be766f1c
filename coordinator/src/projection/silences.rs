//! Silences as the log records them (`silence_added`, `silence_expired`, both from the active
//! coordinator for an operator): a pure fold into `silence/<id>` rows, kept within
//! `bounds::SILENCES_KEPT`, and which silences match an alert at a given time (the clock is
//! the caller's: the fold never reads one).

use std::collections::BTreeMap;

use opsfleet_proto::pb;
use serde::{Deserialize, Serialize};

use super::bounds::{clip, SILENCES_KEPT, SILENCE_MATCHERS_KEPT};
use crate::glob::glob_match;

/// An operator's early end of a silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceEnd {
    pub by: String,
    pub role: String,
    pub at_unix_ms: i64,
}

/// One silence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceRecord {
    pub id: String,
    /// Host glob; empty = any host.
    pub host_glob: String,
    /// `key=value`, all of which the host's labels must have.
    pub labels: Vec<String>,
    /// Rule names, one of which the alert's rule must be; empty = any rule.
    pub rules: Vec<String>,
    pub starts_unix_ms: i64,
    pub ends_unix_ms: i64,
    pub reason: String,
    pub created_by: String,
    pub created_role: String,
    pub epoch: u64,
    /// Coordinator that recorded it.
    pub recorded_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired: Option<SilenceEnd>,
}

impl SilenceRecord {
    /// When it stops silencing: its `ends`, or an operator's earlier expiry.
    pub fn end_unix_ms(&self) -> i64 {
        self.expired
            .as_ref()
            .map_or(self.ends_unix_ms, |e| e.at_unix_ms.min(self.ends_unix_ms))
    }

    /// Silencing at `now`?
    pub fn active_at(&self, now_unix_ms: i64) -> bool {
        self.starts_unix_ms <= now_unix_ms && now_unix_ms < self.end_unix_ms()
    }

    /// Does it match an alert of `rule` on `host` whose labels are `labels` (whatever the
    /// time)? Every matcher given must hold.
    pub fn matches(&self, rule: &str, host: &str, labels: &BTreeMap<String, String>) -> bool {
        (self.host_glob.is_empty() || glob_match(&self.host_glob, host))
            && (self.rules.is_empty() || self.rules.iter().any(|r| r == rule))
            && self.labels.iter().all(|kv| match kv.split_once('=') {
                Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
                None => false,
            })
    }
}

/// Every silence the log holds (up to the cap), by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Silences(pub BTreeMap<String, SilenceRecord>);

impl Silences {
    pub fn get(&self, id: &str) -> Option<&SilenceRecord> {
        self.0.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &SilenceRecord> {
        self.0.values()
    }

    /// Folds a `silence_added` recorded by coordinator `by`: the first record of an id wins.
    /// Beyond `SILENCES_KEPT` the silence that ends first is dropped (the API refuses a new one
    /// while that many are active, so that one has ended). Returns the ids whose rows changed.
    pub fn add(&mut self, a: &pb::SilenceAdded, by: &str) -> Vec<String> {
        if a.silence_id.is_empty() || self.0.contains_key(&a.silence_id) {
            return Vec::new();
        }
        let few = |v: &[String]| -> Vec<String> {
            v.iter()
                .take(SILENCE_MATCHERS_KEPT)
                .map(|s| clip(s))
                .collect()
        };
        let rec = SilenceRecord {
            id: a.silence_id.clone(),
            host_glob: clip(&a.host_glob),
            labels: few(&a.labels),
            rules: few(&a.rules),
            starts_unix_ms: a.starts_unix_ms,
            ends_unix_ms: a.ends_unix_ms,
            reason: clip(&a.reason),
            created_by: clip(&a.created_by),
            created_role: clip(&a.created_role),
            epoch: a.epoch,
            recorded_by: by.to_owned(),
            expired: None,
        };
        self.0.insert(rec.id.clone(), rec);
        let mut changed = vec![a.silence_id.clone()];
        while self.0.len() > SILENCES_KEPT {
            let oldest = self
                .0
                .values()
                .min_by(|x, y| (x.end_unix_ms(), &x.id).cmp(&(y.end_unix_ms(), &y.id)))
                .map(|s| s.id.clone());
            let Some(oldest) = oldest else { break };
            self.0.remove(&oldest);
            changed.push(oldest);
        }
        changed
    }

    /// Folds a `silence_expired`: ends a known silence that has not ended by then (a repeated
    /// or late expiry changes nothing). Returns the id if its row changed.
    pub fn expire(&mut self, x: &pb::SilenceExpired) -> Option<String> {
        let rec = self.0.get_mut(&x.silence_id)?;
        if rec.expired.is_some() || x.at_unix_ms >= rec.ends_unix_ms {
            return None;
        }
        rec.expired = Some(SilenceEnd {
            by: clip(&x.by),
            role: clip(&x.role),
            at_unix_ms: x.at_unix_ms,
        });
        Some(rec.id.clone())
    }

    /// The silences active at `now` that match an alert of `rule` on `host`.
    pub fn silencing<'a>(
        &'a self,
        rule: &'a str,
        host: &'a str,
        labels: &'a BTreeMap<String, String>,
        now_unix_ms: i64,
    ) -> impl Iterator<Item = &'a SilenceRecord> + 'a {
        self.0
            .values()
            .filter(move |s| s.active_at(now_unix_ms) && s.matches(rule, host, labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn added(id: &str, starts: i64, ends: i64) -> pb::SilenceAdded {
        pb::SilenceAdded {
            silence_id: id.into(),
            host_glob: "web-*".into(),
            labels: vec!["env=prod".into()],
            rules: vec!["disk_crit".into()],
            starts_unix_ms: starts,
            ends_unix_ms: ends,
            reason: "maintenance".into(),
            created_by: "alice".into(),
            created_role: "operator".into(),
            epoch: 3,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_matcher_must_hold() {
        let mut s = Silences::default();
        assert_eq!(s.add(&added("a", 100, 200), "blue"), ["a"]);
        let rec = s.get("a").unwrap();
        let prod = labels(&[("env", "prod"), ("team", "x")]);
        assert!(rec.matches("disk_crit", "web-01", &prod));
        assert!(!rec.matches("disk_warn", "web-01", &prod));
        assert!(!rec.matches("disk_crit", "db-01", &prod));
        assert!(!rec.matches("disk_crit", "web-01", &labels(&[("env", "dev")])));
        assert!(!rec.matches("disk_crit", "web-01", &BTreeMap::new()));
        let any_rule = SilenceRecord {
            rules: vec![],
            labels: vec![],
            ..rec.clone()
        };
        assert!(any_rule.matches("host_lost", "web-9", &BTreeMap::new()));
    }

    #[test]
    fn a_silence_is_active_from_start_until_its_end_or_expiry() {
        let mut s = Silences::default();
        s.add(&added("a", 100, 200), "blue");
        let prod = labels(&[("env", "prod")]);
        let active = |s: &Silences, now| s.silencing("disk_crit", "web-01", &prod, now).count();
        assert_eq!(
            (
                active(&s, 99),
                active(&s, 100),
                active(&s, 199),
                active(&s, 200)
            ),
            (0, 1, 1, 0)
        );
        let expire = |at| pb::SilenceExpired {
            silence_id: "a".into(),
            by: "bob".into(),
            role: "operator".into(),
            at_unix_ms: at,
            epoch: 4,
        };
        // After its end an expiry changes nothing.
        assert_eq!(s.expire(&expire(250)), None);
        assert_eq!(s.expire(&expire(150)), Some("a".into()));
        assert_eq!(s.expire(&expire(160)), None, "the first expiry wins");
        assert_eq!(s.get("a").unwrap().end_unix_ms(), 150);
        assert_eq!((active(&s, 149), active(&s, 150)), (1, 0));
        // The same id again is a duplicate record.
        assert!(s.add(&added("a", 0, 10_000), "green").is_empty());
        assert_eq!(s.get("a").unwrap().recorded_by, "blue");
    }

    #[test]
    fn beyond_the_cap_the_silence_that_ended_first_goes() {
        let mut s = Silences::default();
        for i in 0..SILENCES_KEPT {
            s.add(&added(&format!("s{i:05}"), 0, 1_000 + i as i64), "blue");
        }
        let changed = s.add(&added("new", 0, 5), "blue");
        assert_eq!(
            changed,
            ["new", "new"],
            "the new one ends first, so it goes"
        );
        let changed = s.add(&added("later", 0, 1_000_000), "blue");
        assert_eq!(changed, ["later", "s00000"]);
        assert_eq!(s.0.len(), SILENCES_KEPT);
    }
}
