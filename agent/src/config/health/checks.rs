//! The checks of one probe entry: keys that belong to another probe type, its target (`url`,
//! `address`, `argv`, `path`), TLS, JSON assertions, latency bound and certificate days.
//! Every problem is reported, not the first.

use std::time::Duration;

use super::{
    parse_probe_url, LatencyWindow, ProbeConfig, ProbeType, DEFAULT_CRIT_DAYS, DEFAULT_WARN_DAYS,
    LATENCY_MIN_SAMPLES,
};

use ProbeType::{Cert, Command, Http, Tcp, Websocket};

impl ProbeConfig {
    /// Problems of this probe, keys relative to it; `interval` is its module's (or its
    /// service's `health_interval`).
    pub(super) fn problems(&self, interval: Duration) -> Vec<(String, String)> {
        let mut out = self.foreign_keys();
        out.extend(self.target_problems());
        out.extend(self.tls_problems());
        out.extend(self.latency_problems(interval));
        out.extend(self.cert_problems());
        for (i, a) in self.json.iter().enumerate() {
            out.extend(
                a.problems()
                    .into_iter()
                    .map(|(k, r)| (format!("json[{i}]{k}"), r)),
            );
        }
        let mut push = |k: &str, r: String| out.push((k.to_owned(), r));
        if let Some(s) = self.expect_status {
            if !(100..=599).contains(&s) {
                push("expect_status", format!("{s} is not an HTTP status code"));
            }
        }
        if self.expect_text.is_some() && self.send_text.is_none() {
            push(
                "expect_text",
                "needs send_text (the answer to a ping frame is its pong)".to_owned(),
            );
        }
        if self.timeout.is_zero() {
            push("timeout", "must be greater than 0".to_owned());
        }
        if self.ready_after == 0 {
            push("ready_after", "must be at least 1".to_owned());
        }
        if self.degraded_after == 0 {
            push("degraded_after", "must be at least 1".to_owned());
        }
        if self.failed_after < self.degraded_after.max(1) {
            push(
                "failed_after",
                format!(
                    "must be at least degraded_after ({} < {})",
                    self.failed_after, self.degraded_after
                ),
            );
        }
        out
    }

    /// Keys set that only make sense for another probe type.
    fn foreign_keys(&self) -> Vec<(String, String)> {
        let ty = self.probe.as_str();
        let foreign: [(&str, bool, &[ProbeType]); 14] = [
            ("url", self.url.is_some(), &[Http, Websocket]),
            ("expect_status", self.expect_status.is_some(), &[Http]),
            ("body_contains", self.body_contains.is_some(), &[Http]),
            ("json", !self.json.is_empty(), &[Http]),
            ("ca_file", self.ca_file.is_some(), &[Http, Websocket]),
            ("insecure", self.insecure, &[Http, Websocket]),
            ("address", self.address.is_some(), &[Tcp]),
            ("argv", self.argv.is_some(), &[Command]),
            ("expect_exit", self.expect_exit.is_some(), &[Command]),
            ("path", self.path.is_some(), &[Cert]),
            (
                "warn_days",
                self.warn_days.is_some(),
                &[Cert, Http, Websocket],
            ),
            (
                "crit_days",
                self.crit_days.is_some(),
                &[Cert, Http, Websocket],
            ),
            ("send_text", self.send_text.is_some(), &[Websocket]),
            ("expect_text", self.expect_text.is_some(), &[Websocket]),
        ];
        foreign
            .into_iter()
            .filter(|(_, set, owners)| *set && !owners.contains(&self.probe))
            .map(|(key, _, owners)| {
                let names: Vec<String> = owners
                    .iter()
                    .map(|o| format!("type = \"{}\"", o.as_str()))
                    .collect();
                (
                    key.to_owned(),
                    format!(
                        "only for {} (this probe is type = \"{ty}\")",
                        names.join(" or ")
                    ),
                )
            })
            .collect()
    }

    /// The target of the probe's type: `url`, `address`, `argv` or `path`.
    fn target_problems(&self) -> Vec<(String, String)> {
        let problem = |k: &str, r: String| vec![(k.to_owned(), r)];
        let required = |k: &str| {
            problem(
                k,
                format!("is required for type = \"{}\"", self.probe.as_str()),
            )
        };
        match self.probe {
            Http | Websocket => match &self.url {
                None => required("url"),
                Some(u) => parse_probe_url(u, self.probe)
                    .err()
                    .map_or_else(Vec::new, |reason| problem("url", reason)),
            },
            Tcp => match &self.address {
                None => required("address"),
                Some(a) if !valid_host_port(a) => problem(
                    "address",
                    format!("{a:?} is not host:port (e.g. \"127.0.0.1:5432\")"),
                ),
                Some(_) => Vec::new(),
            },
            Command => match &self.argv {
                None => required("argv"),
                Some(v) if v.is_empty() || v[0].is_empty() => {
                    problem("argv", "needs at least the program".to_owned())
                }
                Some(_) => Vec::new(),
            },
            Cert => match &self.path {
                None => required("path"),
                Some(p) if !p.is_absolute() => {
                    problem("path", format!("{} must be an absolute path", p.display()))
                }
                Some(_) => Vec::new(),
            },
        }
    }

    /// `ca_file` and `insecure` only with an `https://` / `wss://` URL, not both.
    fn tls_problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !matches!(self.probe, Http | Websocket) || self.url.is_none() {
            return out;
        }
        let tls = self.uses_tls();
        let plain = || "only with an https:// or wss:// url".to_owned();
        if let Some(ca) = &self.ca_file {
            if !tls {
                out.push(("ca_file".to_owned(), plain()));
            } else if !ca.is_absolute() {
                out.push((
                    "ca_file".to_owned(),
                    format!("{} must be an absolute path", ca.display()),
                ));
            }
        }
        if self.insecure && !tls {
            out.push(("insecure".to_owned(), plain()));
        }
        if self.insecure && self.ca_file.is_some() {
            out.push((
                "insecure".to_owned(),
                "insecure = true verifies nothing; drop ca_file or insecure".to_owned(),
            ));
        }
        for (key, set) in [
            ("warn_days", self.warn_days.is_some()),
            ("crit_days", self.crit_days.is_some()),
        ] {
            if set && !tls {
                out.push((key.to_owned(), plain()));
            }
        }
        out
    }

    /// `latency_window` needs `latency_p95`; both must be able to judge something.
    fn latency_problems(&self, interval: Duration) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(bound) = self.latency_p95 {
            if bound.is_zero() {
                out.push((
                    "latency_p95".to_owned(),
                    "must be greater than 0".to_owned(),
                ));
            } else if bound >= self.timeout {
                out.push((
                    "latency_p95".to_owned(),
                    format!(
                        "must be below the timeout ({bound:?} >= {:?}): a probe slower than \
                         the timeout fails instead",
                        self.timeout
                    ),
                ));
            }
            if self.probe == Cert {
                out.push((
                    "latency_p95".to_owned(),
                    "not for type = \"cert\" (it reads a file)".to_owned(),
                ));
            }
        }
        match self.latency_window {
            None => {}
            Some(_) if self.latency_p95.is_none() => {
                out.push(("latency_window".to_owned(), "needs latency_p95".to_owned()))
            }
            Some(LatencyWindow::Probes(0)) => out.push((
                "latency_window".to_owned(),
                "must be at least 1 probe".to_owned(),
            )),
            Some(LatencyWindow::Probes(n)) if n > 1000 => out.push((
                "latency_window".to_owned(),
                format!("at most 1000 probes ({n})"),
            )),
            Some(LatencyWindow::Probes(_)) => {}
            Some(LatencyWindow::Duration(d)) => {
                let min = interval.saturating_mul(LATENCY_MIN_SAMPLES as u32);
                if d < min {
                    out.push((
                        "latency_window".to_owned(),
                        format!(
                            "{d:?} holds fewer than {LATENCY_MIN_SAMPLES} probes at the interval \
                             {interval:?}; give at least {min:?}"
                        ),
                    ));
                }
            }
        }
        out
    }

    /// `crit_days` below `warn_days`.
    fn cert_problems(&self) -> Vec<(String, String)> {
        let warn = self.warn_days.unwrap_or(DEFAULT_WARN_DAYS);
        let crit = self.crit_days.unwrap_or(DEFAULT_CRIT_DAYS);
        if (self.warn_days.is_some() || self.crit_days.is_some()) && crit > warn {
            return vec![(
                "crit_days".to_owned(),
                format!("must not exceed warn_days ({crit} > {warn})"),
            )];
        }
        Vec::new()
    }
}

/// `host:port` with a non-empty host and a numeric port.
fn valid_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}
