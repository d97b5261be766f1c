//! Mutators of config files for the fuzz tests of both loaders (feature `testing`): line-wise
//! edits of a valid document (delete, duplicate, swap, odd values, inserted lines and bytes)
//! as proptest strategies.

use proptest::prelude::*;

/// Values that test the edges of every type a key may have.
pub const ODD_VALUES: [&str; 18] = [
    "\"\"",
    "-1",
    "0",
    "18446744073709551616",
    "1e400",
    "nan",
    "-inf",
    "\"9999999999999999999h\"",
    "\"9999999999999999999d\"",
    "\"0s\"",
    "[1, \"a\"]",
    "[]",
    "{}",
    "true",
    "\"../../etc/passwd\"",
    "\"a.b\"",
    "\"\\u0000\"",
    "\"999.1.1.1:99999\"",
];

/// One change to a TOML document, line by line (indices wrap around the line count).
#[derive(Debug, Clone)]
pub enum Edit {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    /// The value of a `key = value` line becomes `ODD_VALUES[v]`.
    OddValue(usize, usize),
    Insert(usize, String),
    /// A byte inserted into a line (at a place derived from the byte).
    Bytes(usize, u8),
}

/// Any one edit.
pub fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::Delete),
        any::<usize>().prop_map(Edit::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Swap(a, b)),
        (any::<usize>(), 0..ODD_VALUES.len()).prop_map(|(a, v)| Edit::OddValue(a, v)),
        (any::<usize>(), "[a-z_\\[\\]. =\"0-9]{0,30}").prop_map(|(a, s)| Edit::Insert(a, s)),
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Edit::Bytes(a, b)),
    ]
}

/// `text` with `edits` applied in order.
pub fn mutate(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for e in edits {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match e {
            Edit::Delete(i) => {
                lines.remove(i % n);
            }
            Edit::Duplicate(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Edit::Swap(a, b) => lines.swap(a % n, b % n),
            Edit::OddValue(i, v) => {
                let l = &mut lines[i % n];
                if let Some((key, _)) = l.split_once('=') {
                    *l = format!("{key}= {}", ODD_VALUES[*v % ODD_VALUES.len()]);
                }
            }
            Edit::Insert(i, s) => lines.insert(i % (n + 1), s.clone()),
            Edit::Bytes(i, b) => {
                let mut bytes = lines[i % n].clone().into_bytes();
                let at = (*b as usize) % (bytes.len() + 1);
                bytes.insert(at, *b);
                lines[i % n] = String::from_utf8_lossy(&bytes).into_owned();
            }
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_wrap_around_the_lines() {
        let text = "a = 1\nb = 2\n";
        assert_eq!(mutate(text, &[Edit::Delete(2)]), "b = 2");
        assert_eq!(mutate(text, &[Edit::Swap(0, 3)]), "b = 2\na = 1");
        assert_eq!(mutate(text, &[Edit::OddValue(1, 1)]), "a = 1\nb = -1");
        assert_eq!(
            mutate(text, &[Edit::Insert(5, "[x]".into())]),
            "a = 1\nb = 2\n[x]"
        );
        assert_eq!(mutate("", &[Edit::Duplicate(0)]), "");
    }
}
