//! The console's users file: `[[user]] name, role, token_sha256`, every problem reported at
//! once, and the constant-time check of a login's token against its stored sha256.

use std::collections::BTreeMap;
use std::path::Path;

use opsfleet_proto::api::Role;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// One login: an operator name (a subject token, as opsctl's `--operator`) and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub role: Role,
    token_sha256: [u8; 32],
}

/// Every user of the file, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Users {
    by_name: BTreeMap<String, User>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUser {
    name: String,
    role: String,
    token_sha256: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    user: Vec<toml::Value>,
}

impl Users {
    /// Reads `file`; every problem as a line `FILE: user[i].key: reason`.
    pub fn load(file: &Path) -> Result<Users, Vec<String>> {
        let shown = file.display();
        let text = std::fs::read_to_string(file)
            .map_err(|e| vec![format!("{shown}: cannot read: {e}")])?;
        Users::parse(&text).map_err(|p| p.into_iter().map(|l| format!("{shown}: {l}")).collect())
    }

    /// Parses the text of a users file; every problem as `user[i].key: reason`.
    pub fn parse(text: &str) -> Result<Users, Vec<String>> {
        let file: File = toml::from_str(text).map_err(|e| vec![one_line(&e.to_string())])?;
        let mut problems = Vec::new();
        let mut by_name = BTreeMap::new();
        for (i, value) in file.user.into_iter().enumerate() {
            let u: FileUser = match value.try_into() {
                Ok(u) => u,
                Err(e) => {
                    problems.push(format!("user[{i}]: {}", one_line(&e.to_string())));
                    continue;
                }
            };
            let mut ok = true;
            let mut bad = |key: &str, reason: String| {
                problems.push(format!("user[{i}].{key}: {reason}"));
                ok = false;
            };
            if let Err(e) = opsfleet_proto::subjects::validate_token(&u.name) {
                bad("name", e.to_string());
            }
            let role = Role::parse(&u.role);
            if role.is_none() {
                bad(
                    "role",
                    format!("{:?} is not viewer, operator or admin", u.role),
                );
            }
            let hash = parse_sha256(&u.token_sha256);
            if hash.is_none() {
                bad(
                    "token_sha256",
                    "must be 64 hex digits (sha256sum of the token)".into(),
                );
            }
            if by_name.contains_key(&u.name) {
                bad("name", format!("{} is listed twice", u.name));
            }
            if let (true, Some(role), Some(token_sha256)) = (ok, role, hash) {
                let user = User {
                    name: u.name.clone(),
                    role,
                    token_sha256,
                };
                by_name.insert(u.name, user);
            }
        }
        if problems.is_empty() && by_name.is_empty() {
            problems.push("no [[user]]: nobody could log in".to_owned());
        }
        if problems.is_empty() {
            Ok(Users { by_name })
        } else {
            Err(problems)
        }
    }

    /// The user `name` if `token` hashes to its stored sha256 (compared in constant time; an
    /// unknown name costs the same hash and comparison).
    pub fn check(&self, name: &str, token: &str) -> Option<&User> {
        let given: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let user = self.by_name.get(name);
        let stored = user.map_or([0u8; 32], |u| u.token_sha256);
        let equal = constant_time_eq(&given, &stored);
        user.filter(|_| equal)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text.trim()).ok()?;
    bytes.try_into().ok()
}

/// Equal bytes, in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sha(token: &str) -> String {
        hex::encode(Sha256::digest(token.as_bytes()))
    }

    #[test]
    fn a_login_needs_the_token_whose_hash_is_stored() {
        let text = format!(
            "[[user]]\nname = \"olga\"\nrole = \"operator\"\ntoken_sha256 = \"{}\"\n\
             [[user]]\nname = \"vic\"\nrole = \"viewer\"\ntoken_sha256 = \"{}\"\n",
            sha("olga-secret"),
            sha("vic-secret")
        );
        let users = Users::parse(&text).unwrap();
        assert_eq!(users.len(), 2);
        let olga = users.check("olga", "olga-secret").unwrap();
        assert_eq!(olga.role, Role::Operator);
        assert!(users.check("olga", "vic-secret").is_none());
        assert!(users.check("olga", "").is_none());
        assert!(users.check("nobody", "olga-secret").is_none());
        assert_eq!(users.check("vic", "vic-secret").unwrap().role, Role::Viewer);
    }

    #[test]
    fn every_problem_of_the_file_is_reported() {
        let text = format!(
            "[[user]]\nname = \"a.b\"\nrole = \"root\"\ntoken_sha256 = \"xyz\"\n\
             [[user]]\nname = \"ok\"\nrole = \"admin\"\ntoken_sha256 = \"{}\"\n\
             [[user]]\nname = \"ok\"\nrole = \"admin\"\ntoken_sha256 = \"{}\"\n\
             [[user]]\nname = \"x\"\nrole = \"admin\"\ntoken = \"plain\"\n",
            sha("1"),
            sha("2")
        );
        let p = Users::parse(&text).unwrap_err();
        assert_eq!(p.len(), 5, "{p:#?}");
        assert!(p[0].starts_with("user[0].name:"), "{p:?}");
        assert!(p[1].starts_with("user[0].role:"), "{p:?}");
        assert!(p[2].starts_with("user[0].token_sha256:"), "{p:?}");
        assert!(
            p[3].starts_with("user[2].name: ok is listed twice"),
            "{p:?}"
        );
        assert!(
            p[4].starts_with("user[3]:") && p[4].contains("token"),
            "{p:?}"
        );
        assert_eq!(
            Users::parse("").unwrap_err()[0],
            "no [[user]]: nobody could log in"
        );
        assert_eq!(Users::parse("[[user]\n").unwrap_err().len(), 1);
        assert!(constant_time_eq(b"ab", b"ab") && !constant_time_eq(b"ab", b"ac"));
        assert!(!constant_time_eq(b"ab", b"abc"));
    }
}
