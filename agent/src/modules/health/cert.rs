//! Certificate expiry: the `notAfter` of an X.509 certificate (x509-parser), its level against
//! `warn_days` / `crit_days` (pure), and the `cert` probe of a PEM file.

use opsfleet_proto::pb;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::tls::{pem_certs, read_pem};

const DAY_MS: i64 = 86_400_000;

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    pub not_after_unix_ms: i64,
    /// The subject (`CN=app.example.org`).
    pub subject: String,
    /// `notAfter` as a date (`2026-12-11`).
    pub not_after_date: String,
}

/// Parses a DER certificate.
pub fn facts(der: &[u8]) -> Result<CertFacts, String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let not_after = cert.validity().not_after;
    Ok(CertFacts {
        not_after_unix_ms: not_after.timestamp().saturating_mul(1000),
        subject: cert.subject().to_string(),
        not_after_date: not_after.to_datetime().date().to_string(),
    })
}

/// Whole days left at `now` (negative once expired: an hour past is -1).
pub fn days_left(not_after_unix_ms: i64, now_unix_ms: i64) -> i64 {
    (not_after_unix_ms - now_unix_ms).div_euclid(DAY_MS)
}

/// The level of a certificate: `crit` with `crit_days` days left or fewer (or expired),
/// `warn` with `warn_days` or fewer, else `ok`. Pure.
pub fn level(not_after_unix_ms: i64, now_unix_ms: i64, (warn, crit): (u32, u32)) -> pb::CertLevel {
    let left = days_left(not_after_unix_ms, now_unix_ms);
    if left < 0 || left <= i64::from(crit) {
        pb::CertLevel::Crit
    } else if left <= i64::from(warn) {
        pb::CertLevel::Warn
    } else {
        pb::CertLevel::Ok
    }
}

/// `type = "cert"`: the first certificate of the PEM file `path`. Success while it parses
/// and has not expired; the detail says subject, date and days left.
pub async fn cert_file_probe(
    path: &std::path::Path,
    now_unix_ms: i64,
) -> (bool, String, Option<i64>) {
    let bytes = match read_pem(path).await {
        Ok(b) => b,
        Err(e) => return (false, e, None),
    };
    let Some(first) = pem_certs(&bytes).into_iter().next() else {
        return (
            false,
            format!("{}: no PEM certificate in it", path.display()),
            None,
        );
    };
    match facts(&first) {
        Err(e) => (false, format!("{}: {e}", path.display()), None),
        Ok(f) => {
            let left = days_left(f.not_after_unix_ms, now_unix_ms);
            let ok = f.not_after_unix_ms > now_unix_ms;
            (ok, describe(&f, left), Some(f.not_after_unix_ms))
        }
    }
}

/// `CN=app expires 2026-12-11 (5 days left)` or `... expired 2026-12-01 (3 days ago)`.
pub fn describe(f: &CertFacts, left: i64) -> String {
    if left < 0 {
        format!(
            "certificate {} expired {} ({} day(s) ago)",
            f.subject, f.not_after_date, -left
        )
    } else {
        format!(
            "certificate {} expires {} ({left} day(s) left)",
            f.subject, f.not_after_date
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn levels_at_the_edges() {
        let at = |days: i64, hours: i64| NOW + days * DAY_MS + hours * 3_600_000;
        let t = (30, 7);
        assert_eq!(level(at(31, 0), NOW, t), pb::CertLevel::Ok);
        assert_eq!(level(at(30, 23), NOW, t), pb::CertLevel::Warn);
        assert_eq!(level(at(8, 0), NOW, t), pb::CertLevel::Warn);
        assert_eq!(level(at(7, 23), NOW, t), pb::CertLevel::Crit);
        assert_eq!(level(at(0, 1), NOW, t), pb::CertLevel::Crit);
        assert_eq!(level(at(0, -1), NOW, t), pb::CertLevel::Crit, "expired");
        assert_eq!(days_left(at(0, -1), NOW), -1);
        assert_eq!(days_left(at(5, 2), NOW), 5);
    }

    proptest! {
        #[test]
        fn fewer_days_never_means_a_better_level(
            a in -100i64..400, b in -100i64..400, warn in 0u32..60, crit in 0u32..60,
        ) {
            let t = (warn.max(crit), crit);
            let (near, far) = (a.min(b), a.max(b));
            let rank = |l: pb::CertLevel| l as i32;
            prop_assert!(
                rank(level(NOW + near * DAY_MS, NOW, t)) >= rank(level(NOW + far * DAY_MS, NOW, t))
            );
        }
    }

    #[tokio::test]
    async fn a_pem_file_with_five_days_left_and_a_broken_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["app.test".to_owned()]).expect("params");
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(5) + time::Duration::hours(2);
        let cert = params.self_signed(&key).expect("cert");
        let path = dir.path().join("app.pem");
        std::fs::write(&path, cert.pem()).expect("write");
        let now_ms = now.unix_timestamp() * 1000;
        let (ok, detail, not_after) = cert_file_probe(&path, now_ms).await;
        assert!(ok, "{detail}");
        assert!(detail.contains("5 day(s) left"), "{detail}");
        let not_after = not_after.expect("not after");
        assert_eq!(level(not_after, now_ms, (30, 7)), pb::CertLevel::Crit);
        assert_eq!(level(not_after, now_ms, (10, 3)), pb::CertLevel::Warn);
        std::fs::write(&path, "not a certificate").expect("write");
        let (ok, detail, _) = cert_file_probe(&path, now_ms).await;
        assert!(!ok && detail.contains("no PEM certificate"), "{detail}");
        let (ok, detail, _) = cert_file_probe(&dir.path().join("missing.pem"), now_ms).await;
        assert!(!ok && detail.contains("cannot open"), "{detail}");
        // Expired: the probe fails.
        let (ok, detail, _) = cert_file_probe_at(&cert.pem(), &dir, now_ms + 7 * DAY_MS).await;
        assert!(!ok && detail.contains("expired"), "{detail}");
    }

    async fn cert_file_probe_at(
        pem: &str,
        dir: &tempfile::TempDir,
        now_ms: i64,
    ) -> (bool, String, Option<i64>) {
        let path = dir.path().join("again.pem");
        std::fs::write(&path, pem).expect("write");
        cert_file_probe(&path, now_ms).await
    }
}
