//! The semantic checks of a `type = "s3"` remote: bucket and prefix names, the endpoint
//! (plain HTTP only on loopback or with `allow_http`) and the credentials file's permissions.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::RemoteConfig;

/// Every problem of an S3 remote, keys relative to `remote`.
pub(super) fn s3_problems(cfg: &RemoteConfig, out: &mut Vec<(String, String)>) {
    if !cfg.path.as_os_str().is_empty() {
        out.push(("path".into(), "only for type = \"path\"".into()));
    }
    let b = &cfg.bucket;
    if b.is_empty() {
        out.push(("bucket".into(), "is required for type = \"s3\"".into()));
    } else if !(3..=63).contains(&b.len())
        || !b
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        || !b.as_bytes()[0].is_ascii_alphanumeric()
    {
        out.push((
            "bucket".into(),
            format!("{b:?} is not a bucket name (3-63 of a-z, 0-9, '-', '.')"),
        ));
    }
    let p = &cfg.prefix;
    if p.starts_with('/') || p.split('/').any(|s| s == ".." || s == ".") || p.contains("//") {
        out.push((
            "prefix".into(),
            format!("{p:?} must be a relative key prefix without '.', '..' or empty parts"),
        ));
    }
    if cfg.region.trim().is_empty() {
        out.push(("region".into(), "must not be empty".into()));
    }
    if let Some(e) = &cfg.endpoint {
        if let Some(why) = endpoint_problem(e, cfg.allow_http) {
            out.push(("endpoint".into(), why));
        }
    }
    // Only the path's form here: config checks read no files (a secret may be provisioned
    // after the config). Existence and mode are checked each time the destination is opened,
    // and a refusal is a `backup_sync_failed` naming the reason.
    if let Some(f) = cfg.credentials_file.as_deref().filter(|f| !f.is_absolute()) {
        out.push((
            "credentials_file".into(),
            format!("must be an absolute path: {f:?}"),
        ));
    }
}

/// Why `endpoint` is refused: not an http(s) URL, or plain HTTP to a host that is not
/// loopback without `allow_http`.
fn endpoint_problem(endpoint: &str, allow_http: bool) -> Option<String> {
    let url = match reqwest::Url::parse(endpoint) {
        Ok(u) => u,
        Err(e) => return Some(format!("{endpoint:?} is not a URL: {e}")),
    };
    match url.scheme() {
        "https" => None,
        "http" => {
            let host = url.host_str().unwrap_or_default();
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback =
                host == "localhost" || host.parse::<IpAddr>().is_ok_and(|a| a.is_loopback());
            (!loopback && !allow_http).then(|| {
                format!(
                    "{endpoint:?} is plain HTTP to a host that is not loopback; use https or set allow_http = true"
                )
            })
        }
        s => Some(format!("{endpoint:?}: scheme {s:?} is not http or https")),
    }
}

/// Why the credentials file cannot be used: unreadable, not a file, or readable or writable
/// by group or others (it holds a secret key).
pub fn credentials_file_problem(path: &Path) -> Option<String> {
    if !path.is_absolute() {
        return Some(format!("must be an absolute path: {path:?}"));
    }
    match std::fs::metadata(path) {
        Err(e) => Some(format!("cannot read {path:?}: {e}")),
        Ok(m) if !m.is_file() => Some(format!("{path:?} is not a file")),
        Ok(m) if m.permissions().mode() & 0o077 != 0 => Some(format!(
            "{path:?} has mode {:o}: a secret must not be group or world accessible (chmod 600)",
            m.permissions().mode() & 0o777
        )),
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::credentials_file_problem;
    use crate::config::parse_str;

    const HEAD: &str = "host = \"db-01\"\n[[modules]]\ntype = \"backup\"\n";

    fn job(name: &str, remote: &str) -> String {
        format!(
            "[[modules.jobs]]\nname = \"{name}\"\nsources = [\"/srv/data\"]\ndestination = \"/var/backups/app\"\n[modules.jobs.remote]\ntype = \"s3\"\n{remote}\n"
        )
    }

    #[test]
    fn every_s3_problem_is_reported() {
        let tmp = tempfile::tempdir().expect("tmp");
        let open_file = tmp.path().join("creds-open");
        std::fs::write(
            &open_file,
            "aws_access_key_id = a\naws_secret_access_key = b\n",
        )
        .expect("write");
        std::fs::set_permissions(&open_file, std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let private = tmp.path().join("creds");
        std::fs::write(
            &private,
            "aws_access_key_id = a\naws_secret_access_key = b\n",
        )
        .expect("write");
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let text = format!(
            "{HEAD}{}{}{}{}{}",
            // No bucket, a path, a bad prefix, an empty region, plain HTTP off loopback,
            // a world-readable credentials file (refused only where it is used, below).
            job(
                "a",
                &format!(
                    "path = \"/mnt/x\"\nprefix = \"/abs/../x\"\nregion = \" \"\nendpoint = \"http://s3.example.com:9000\"\ncredentials_file = {:?}",
                    open_file.display().to_string()
                )
            ),
            job("b", "bucket = \"Bad_Bucket\"\nendpoint = \"ftp://x\"\ncredentials_file = \"creds\""),
            job("c", "bucket = \"ok-bucket\"\nendpoint = \"not a url\""),
            // Fine: loopback HTTP, explicit allow_http, https, a private file.
            job(
                "ok1",
                &format!(
                    "bucket = \"ok-bucket\"\nprefix = \"hosts/db-01\"\nendpoint = \"http://127.0.0.1:9000\"\ncredentials_file = {:?}",
                    private.display().to_string()
                )
            ),
            job(
                "ok2",
                "bucket = \"ok.bucket\"\nendpoint = \"http://minio.lan:9000\"\nallow_http = true\n"
            ),
        );
        let problems = parse_str(&text).expect_err("invalid");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        let want = [
            "modules[0].jobs[0].remote.path",
            "modules[0].jobs[0].remote.bucket",
            "modules[0].jobs[0].remote.prefix",
            "modules[0].jobs[0].remote.region",
            "modules[0].jobs[0].remote.endpoint",
            "modules[0].jobs[1].remote.bucket",
            "modules[0].jobs[1].remote.endpoint",
            "modules[0].jobs[1].remote.credentials_file",
            "modules[0].jobs[2].remote.endpoint",
        ];
        for k in want {
            assert!(keys.contains(&k), "{k} missing from {problems:#?}");
        }
        assert_eq!(keys.len(), want.len(), "{problems:#?}");
        // A group- or world-readable secret, or a missing one, is refused where it is used.
        let perm = credentials_file_problem(&open_file).expect("0644 refused");
        assert!(perm.contains("644"), "{perm}");
        assert!(credentials_file_problem(&tmp.path().join("absent")).is_some());
        assert_eq!(credentials_file_problem(&private), None);
        // The secret itself is never in a problem.
        assert!(
            problems.iter().all(|p| !p.reason.contains("aws_secret")),
            "{problems:#?}"
        );
        // S3 keys are refused on a path remote.
        let text = format!(
            "{HEAD}{}",
            job("p", "path = \"/mnt/x\"\nbucket = \"b-b-b\"").replace("\"s3\"", "\"path\"")
        );
        let problems = parse_str(&text).expect_err("invalid");
        assert!(
            problems.iter().any(|p| p.key.ends_with("remote.bucket")),
            "{problems:#?}"
        );
    }
}
