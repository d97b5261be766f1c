//! Who may read `/metrics`: anyone who reaches the `[http]` listener, or, with `[http]
//! metrics_token_file`, only a request carrying `Authorization: Bearer <that token>` (what
//! Prometheus sends with `authorization: { credentials_file: ... }`). The scrape shows the
//! fleet (host, mount, service names) that `ops.api.status` shows only to a viewer. Pure but
//! for reading the file; tokens are compared by their sha256, so the time a comparison takes
//! tells nothing about the token.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Why the token file cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the metrics token file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the metrics token file {path} holds no token")]
    Empty { path: PathBuf },
}

/// The token `/metrics` asks for, if any (its sha256).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    token_sha256: Option<[u8; 32]>,
}

fn digest(text: &[u8]) -> [u8; 32] {
    Sha256::digest(text).into()
}

impl Access {
    /// Open to every request.
    pub fn open() -> Self {
        Access::default()
    }

    /// Only requests bearing `token`.
    pub fn token(token: &str) -> Self {
        Access {
            token_sha256: Some(digest(token.as_bytes())),
        }
    }

    /// The token in `path`: its content without surrounding whitespace, not empty.
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.to_owned(),
            source,
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(TokenError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(Access::token(token))
    }

    /// Whether a request with this `Authorization` header value may read.
    pub fn allows(&self, authorization: Option<&[u8]>) -> bool {
        let Some(want) = &self.token_sha256 else {
            return true;
        };
        let given = authorization.and_then(|h| h.strip_prefix(b"Bearer "));
        given.is_some_and(|t| digest(t.trim_ascii()) == *want)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_allows_all_and_a_token_only_its_bearer() {
        assert!(Access::open().allows(None));
        let a = Access::token("s3cret");
        assert!(a.allows(Some(b"Bearer s3cret")));
        // Refused: no header, another token, a prefix of it, another scheme, no scheme.
        for refused in [
            None,
            Some(&b"Bearer other"[..]),
            Some(b"Bearer s3cre"),
            Some(b"Bearer "),
            Some(b"Basic s3cret"),
            Some(b"s3cret"),
        ] {
            assert!(
                !a.allows(refused),
                "{:?}",
                refused.map(String::from_utf8_lossy)
            );
        }
    }

    #[test]
    fn the_file_is_trimmed_and_must_hold_a_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").expect("write");
        assert_eq!(
            Access::from_file(&path).expect("token"),
            Access::token("s3cret")
        );
        std::fs::write(&path, " \n").expect("write");
        assert!(matches!(
            Access::from_file(&path),
            Err(TokenError::Empty { .. })
        ));
        let missing = dir.path().join("missing");
        assert!(matches!(
            Access::from_file(&missing),
            Err(TokenError::Read { .. })
        ));
    }
}
