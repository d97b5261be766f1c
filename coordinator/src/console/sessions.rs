//! Console sessions (in memory, per coordinator: a random 256-bit id, idle and absolute
//! expiry, a CSRF token each) and the slowing of failed logins per name and per address,
//! both bounded in memory. Pure: every call takes `now`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use opsfleet_proto::api::Role;

use super::users::User;

/// Most sessions kept; a login beyond it first drops expired ones, then the oldest.
const MAX_SESSIONS: usize = 10_000;
/// Most names and addresses whose failed logins are remembered.
const MAX_THROTTLED: usize = 10_000;
/// Failed logins per name before each further one waits.
const FREE_FAILURES_NAME: u32 = 3;
/// Failed logins per address before each further one waits (many people may share one).
const FREE_FAILURES_ADDR: u32 = 20;
/// Longest wait after failed logins.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Failures older than this are forgotten.
const FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);

/// 32 random bytes from the OS, hex: session ids and CSRF tokens.
pub fn random_token() -> Result<String, getrandom::Error> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf)?;
    Ok(hex::encode(buf))
}

/// One logged-in operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub operator: String,
    pub role: Role,
    /// The synchronizer token every form of this session carries.
    pub csrf: String,
    created: Instant,
    last_used: Instant,
}

/// Every live session by id.
#[derive(Debug)]
pub struct Sessions {
    by_id: HashMap<String, Session>,
    idle: Duration,
    max: Duration,
}

impl Sessions {
    pub fn new(idle: Duration, max: Duration) -> Self {
        Sessions {
            by_id: HashMap::new(),
            idle,
            max,
        }
    }

    fn expired(&self, s: &Session, now: Instant) -> bool {
        now.saturating_duration_since(s.last_used) > self.idle
            || now.saturating_duration_since(s.created) > self.max
    }

    /// Starts a session for `user` under `id` with CSRF token `csrf`.
    pub fn create(&mut self, user: &User, id: String, csrf: String, now: Instant) {
        if self.by_id.len() >= MAX_SESSIONS {
            let (idle, max) = (self.idle, self.max);
            self.by_id.retain(|_, s| {
                now.saturating_duration_since(s.last_used) <= idle
                    && now.saturating_duration_since(s.created) <= max
            });
        }
        if self.by_id.len() >= MAX_SESSIONS {
            let oldest = self.by_id.iter().min_by_key(|(_, s)| s.last_used);
            if let Some(oldest) = oldest.map(|(id, _)| id.clone()) {
                self.by_id.remove(&oldest);
            }
        }
        let session = Session {
            operator: user.name.clone(),
            role: user.role,
            csrf,
            created: now,
            last_used: now,
        };
        self.by_id.insert(id, session);
    }

    /// The live session `id`, marked used at `now`; an expired one is removed.
    pub fn get(&mut self, id: &str, now: Instant) -> Option<Session> {
        let expired = self.expired(self.by_id.get(id)?, now);
        if expired {
            self.by_id.remove(id);
            return None;
        }
        let s = self.by_id.get_mut(id)?;
        s.last_used = now;
        Some(s.clone())
    }

    /// Whether session `id` is still live at `now`, without marking it used (a live event
    /// stream checks this, so an open page neither outlives a logout nor keeps a session alive).
    pub fn alive(&self, id: &str, now: Instant) -> bool {
        self.by_id.get(id).is_some_and(|s| !self.expired(s, now))
    }

    pub fn remove(&mut self, id: &str) {
        self.by_id.remove(id);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Failed logins by key (`name:<n>` or `addr:<ip>`).
#[derive(Debug, Default)]
pub struct Throttle {
    by_key: HashMap<String, Failures>,
}

impl Throttle {
    fn free(key: &str) -> u32 {
        if key.starts_with("addr:") {
            FREE_FAILURES_ADDR
        } else {
            FREE_FAILURES_NAME
        }
    }

    /// How long a login for `key` must still wait at `now`, if at all.
    pub fn wait(&self, key: &str, now: Instant) -> Option<Duration> {
        let f = self.by_key.get(key)?;
        let over = f.count.checked_sub(Self::free(key)).filter(|o| *o > 0)?;
        let wait = Duration::from_secs(1)
            .saturating_mul(1u32 << over.min(16))
            .min(MAX_WAIT);
        let until = f.last + wait;
        (until > now).then(|| until - now)
    }

    /// Records a failed login for `key` at `now`.
    pub fn failed(&mut self, key: &str, now: Instant) {
        if self.by_key.len() >= MAX_THROTTLED && !self.by_key.contains_key(key) {
            self.by_key
                .retain(|_, f| now.saturating_duration_since(f.last) < FAILURE_MEMORY);
            if self.by_key.len() >= MAX_THROTTLED {
                let oldest = self.by_key.iter().min_by_key(|(_, f)| f.last);
                if let Some(k) = oldest.map(|(k, _)| k.clone()) {
                    self.by_key.remove(&k);
                }
            }
        }
        let f = self.by_key.entry(key.to_owned()).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.saturating_duration_since(f.last) >= FAILURE_MEMORY {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
    }

    /// A successful login forgets the key's failures.
    pub fn succeeded(&mut self, key: &str) {
        self.by_key.remove(key);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, role: Role) -> User {
        use sha2::Digest;
        let text = format!(
            "[[user]]\nname = \"{name}\"\nrole = \"{}\"\ntoken_sha256 = \"{}\"\n",
            role.as_str(),
            hex::encode(sha2::Sha256::digest(b"x"))
        );
        let users = super::super::users::Users::parse(&text).unwrap();
        users.check(name, "x").unwrap().clone()
    }

    #[test]
    fn sessions_end_when_idle_or_too_old() {
        let t0 = Instant::now();
        let mut s = Sessions::new(Duration::from_secs(60), Duration::from_secs(300));
        s.create(&user("olga", Role::Operator), "id1".into(), "c1".into(), t0);
        let got = s.get("id1", t0 + Duration::from_secs(59)).unwrap();
        assert_eq!(
            (got.operator.as_str(), got.role, got.csrf.as_str()),
            ("olga", Role::Operator, "c1")
        );
        // Used every 50 s it lives until the absolute limit.
        for i in 2..=6 {
            assert!(
                s.get("id1", t0 + Duration::from_secs(50 * i)).is_some(),
                "{i}"
            );
        }
        assert!(s.get("id1", t0 + Duration::from_secs(301)).is_none());
        assert_eq!(s.len(), 0);
        s.create(&user("vic", Role::Viewer), "id2".into(), "c2".into(), t0);
        assert!(s.get("id2", t0 + Duration::from_secs(61)).is_none());
        s.create(&user("vic", Role::Viewer), "id3".into(), "c3".into(), t0);
        s.remove("id3");
        assert!(s.get("id3", t0).is_none());
        assert!(s.get("nope", t0).is_none());
    }

    #[test]
    fn sessions_stay_bounded() {
        let t0 = Instant::now();
        let mut s = Sessions::new(Duration::from_secs(60), Duration::from_secs(300));
        let u = user("vic", Role::Viewer);
        for i in 0..MAX_SESSIONS + 10 {
            s.create(
                &u,
                format!("id{i}"),
                String::new(),
                t0 + Duration::from_millis(i as u64),
            );
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.get("id0", t0).is_none(), "the oldest went");
        assert!(s.get(&format!("id{}", MAX_SESSIONS + 9), t0).is_some());
    }

    #[test]
    fn failed_logins_slow_the_next_ones_and_stay_bounded() {
        let t0 = Instant::now();
        let mut t = Throttle::default();
        for _ in 0..FREE_FAILURES_NAME {
            assert_eq!(t.wait("name:olga", t0), None);
            t.failed("name:olga", t0);
        }
        assert_eq!(t.wait("name:olga", t0), None);
        t.failed("name:olga", t0);
        assert_eq!(t.wait("name:olga", t0), Some(Duration::from_secs(2)));
        assert_eq!(t.wait("name:olga", t0 + Duration::from_secs(2)), None);
        for _ in 0..40 {
            t.failed("name:olga", t0);
        }
        assert_eq!(t.wait("name:olga", t0), Some(MAX_WAIT));
        t.succeeded("name:olga");
        assert_eq!(t.wait("name:olga", t0), None);
        // An address gets more free failures than a name.
        for _ in 0..FREE_FAILURES_NAME + 1 {
            t.failed("addr:127.0.0.1", t0);
        }
        assert_eq!(t.wait("addr:127.0.0.1", t0), None);
        for i in 0..MAX_THROTTLED + 5 {
            t.failed(&format!("name:n{i}"), t0 + Duration::from_millis(i as u64));
        }
        assert!(t.len() <= MAX_THROTTLED);
        assert_eq!(random_token().unwrap().len(), 64);
        assert_ne!(random_token().unwrap(), random_token().unwrap());
    }
}
