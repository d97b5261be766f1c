//! Host-name globs, as views filter and commands target: `*` any run of characters, `?` one
//! character, otherwise an exact name.

/// Does `name` match `pattern`? `*` matches any run of characters, `?` one character;
/// without either, the pattern is an exact name.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matcher with backtracking to the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_shells() {
        assert!(glob_match("web-*", "web-01"));
        assert!(glob_match("web-0?", "web-01"));
        assert!(glob_match("*", "db-01"));
        assert!(glob_match("*-01", "db-01"));
        assert!(glob_match("w*b*1", "web-01"));
        assert!(glob_match("db-01", "db-01"));
        assert!(!glob_match("db-01", "db-011"));
        assert!(!glob_match("web-*", "db-01"));
        assert!(!glob_match("web-0?", "web-1"));
        assert!(!glob_match("", "web-01"));
    }
}
