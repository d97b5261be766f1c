//! `[console]`: the web console on the `[http]` listener — its users file, session lifetimes,
//! and the refusal of a console on a non-loopback plain-HTTP listener.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::http::HttpConfig;

/// `[console]` section of the coordinator config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// TOML file of `[[user]] name, role, token_sha256` (see `docs/console.md`).
    pub users_file: PathBuf,
    /// Serve the console over plain HTTP on a non-loopback address. Logins and session
    /// cookies then cross the network in clear text: only behind a TLS-terminating proxy.
    #[serde(default)]
    pub insecure_http: bool,
    /// A session unused this long ends.
    #[serde(default = "default_idle", with = "humantime_serde")]
    pub session_idle: Duration,
    /// A session ends this long after its login, used or not.
    #[serde(default = "default_max", with = "humantime_serde")]
    pub session_max: Duration,
    /// Most live event streams (SSE) served at once.
    #[serde(default = "default_streams")]
    pub max_streams: usize,
}

fn default_idle() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_max() -> Duration {
    Duration::from_secs(12 * 3600)
}
fn default_streams() -> usize {
    32
}

impl ConsoleConfig {
    /// Problems as `(key, reason)` given the `[http]` section; empty when valid. The users
    /// file is read here too, so its problems are reported with the rest of the config.
    pub fn problems(&self, http: Option<&HttpConfig>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        match http {
            None => out.push((
                "users_file".to_owned(),
                "[console] needs an [http] listener to be served on".to_owned(),
            )),
            Some(h) => {
                let tls = h.tls_cert.is_some() && h.tls_key.is_some();
                if !tls && !h.listen.ip().is_loopback() && !self.insecure_http {
                    out.push((
                        "insecure_http".to_owned(),
                        format!(
                            "the console on {} would send logins and session cookies in clear \
                             text: set [http] tls_cert and tls_key, listen on a loopback \
                             address, or set insecure_http = true (behind a TLS proxy only)",
                            h.listen
                        ),
                    ));
                }
            }
        }
        if self.session_idle < Duration::from_secs(60) || self.session_idle > self.session_max {
            out.push((
                "session_idle".to_owned(),
                "must be at least 1m and at most session_max".to_owned(),
            ));
        }
        if self.session_max > Duration::from_secs(7 * 86_400) {
            out.push(("session_max".to_owned(), "must be at most 7d".to_owned()));
        }
        if !(1..=1000).contains(&self.max_streams) {
            out.push((
                "max_streams".to_owned(),
                "must be between 1 and 1000".to_owned(),
            ));
        }
        if let Err(problems) = super::users::Users::load(&self.users_file) {
            out.extend(problems.into_iter().map(|p| ("users_file".to_owned(), p)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(listen: &str, tls: bool) -> HttpConfig {
        HttpConfig {
            listen: listen.parse().unwrap(),
            tls_cert: tls.then(|| "c.pem".into()),
            tls_key: tls.then(|| "k.pem".into()),
            metrics_token_file: None,
        }
    }

    fn console(dir: &std::path::Path) -> ConsoleConfig {
        let users = dir.join("users.toml");
        std::fs::write(
            &users,
            format!(
                "[[user]]\nname = \"vic\"\nrole = \"viewer\"\ntoken_sha256 = \"{}\"\n",
                "a".repeat(64)
            ),
        )
        .unwrap();
        ConsoleConfig {
            users_file: users,
            insecure_http: false,
            session_idle: default_idle(),
            session_max: default_max(),
            max_streams: default_streams(),
        }
    }

    #[test]
    fn plain_http_is_refused_off_loopback_unless_said_insecure() {
        let dir = tempfile::tempdir().unwrap();
        let c = console(dir.path());
        assert!(c.problems(Some(&http("127.0.0.1:0", false))).is_empty());
        assert!(c.problems(Some(&http("[::1]:0", false))).is_empty());
        assert!(c.problems(Some(&http("0.0.0.0:9465", true))).is_empty());
        let p = c.problems(Some(&http("0.0.0.0:9465", false)));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "insecure_http");
        assert!(p[0].1.contains("clear text"), "{p:?}");
        let insecure = ConsoleConfig {
            insecure_http: true,
            ..c.clone()
        };
        assert!(insecure
            .problems(Some(&http("0.0.0.0:9465", false)))
            .is_empty());
        assert_eq!(c.problems(None)[0].0, "users_file");
    }

    #[test]
    fn lifetimes_and_the_users_file_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let c = ConsoleConfig {
            session_idle: Duration::from_secs(5),
            max_streams: 0,
            users_file: dir.path().join("missing.toml"),
            ..console(dir.path())
        };
        let keys: Vec<String> = c
            .problems(Some(&http("127.0.0.1:0", false)))
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(keys, ["session_idle", "max_streams", "users_file"]);
    }
}
