//! Runbooks read as a test runs them: the Markdown's fenced blocks (with the file name an
//! operator is told to save a block as), the shell splitter the docs tests share, and the
//! steps of `sh` blocks with the exit status each is documented to have (`# exits N: why`).

/// Splits a shell line into words: quotes and backslashes as the shell does for the simple
/// cases the docs use; operators (`&&`, `||`, `;`, `|`) become words of their own.
pub fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut started = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                started = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    cur.push(q);
                }
            }
            '"' => {
                started = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                cur.push(n);
                            }
                        }
                        _ => cur.push(q),
                    }
                }
            }
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    started = true;
                }
            }
            '#' if !started => break,
            ' ' | '\t' => {
                if started {
                    out.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            ';' | '|' | '&' => {
                if started {
                    out.push(std::mem::take(&mut cur));
                    started = false;
                }
                let mut op = c.to_string();
                if chars.peek() == Some(&c) {
                    op.push(c);
                    chars.next();
                }
                out.push(op);
            }
            _ => {
                cur.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(cur);
    }
    out
}

/// The simple commands of a line: split at operators, without `sudo`, `VAR=value` and `$(`.
pub fn simple_commands(line: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for part in words(line).split(|w| matches!(w.as_str(), ";" | "|" | "||" | "&&" | "&")) {
        let mut part: Vec<String> = part.to_vec();
        while part
            .first()
            .is_some_and(|w| w == "sudo" || (w.contains('=') && !w.starts_with('-')))
        {
            part.remove(0);
        }
        if !part.is_empty() {
            out.push(part);
        }
    }
    out
}

/// One fenced block of a Markdown file.
#[derive(Debug, Clone)]
pub struct Block {
    /// The fence's language (`sh`, `toml`, `json`, or empty).
    pub lang: String,
    /// The lines between the fences, each ending in a newline.
    pub body: String,
    /// 1-based line of the opening fence.
    pub line: usize,
    /// The last `code span` of the nearest non-empty line before the fence, if any: the file
    /// name a runbook tells the operator to save the block as.
    pub label: Option<String>,
}

/// Every fenced block of `text`, in order.
pub fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    let mut last_text = "";
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(lang) = trimmed.strip_prefix("```") {
            match open.take() {
                Some(block) => out.push(block),
                None => {
                    open = Some(Block {
                        lang: lang.trim().to_owned(),
                        body: String::new(),
                        line: i + 1,
                        label: last_span(last_text),
                    })
                }
            }
            last_text = "";
            continue;
        }
        match open.as_mut() {
            Some(block) => {
                block.body.push_str(line);
                block.body.push('\n');
            }
            None if !trimmed.is_empty() => last_text = trimmed,
            None => {}
        }
    }
    out
}

/// The last `code span` of a line.
fn last_span(line: &str) -> Option<String> {
    let parts: Vec<&str> = line.split('`').collect();
    // Closed spans are the odd parts before the last part.
    (1..parts.len().saturating_sub(1))
        .rev()
        .find(|i| i % 2 == 1)
        .map(|i| parts[i].to_owned())
        .filter(|s| !s.is_empty())
}

/// One command line of an `sh` block, as the runbook documents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// 1-based line in the Markdown file.
    pub line: usize,
    /// The words of the command (continuations joined, comment dropped).
    pub words: Vec<String>,
    /// The exit status the runbook says it has: `# exits N` in its comment, else 0.
    pub exits: i32,
}

/// The command lines of the `sh` blocks of `text`, in order (a line with operators such as
/// `&&` is one step of all its words; runbooks run by tests keep to simple commands).
pub fn steps(text: &str) -> Vec<Step> {
    let mut out = Vec::new();
    for block in blocks(text).iter().filter(|b| b.lang == "sh") {
        let mut pending = String::new();
        let mut first = 0;
        for (n, line) in block.body.lines().enumerate() {
            let body = line.trim();
            if pending.is_empty() {
                first = block.line + 1 + n;
            }
            if let Some(cont) = body.strip_suffix('\\') {
                pending.push_str(cont);
                pending.push(' ');
                continue;
            }
            pending.push_str(body);
            let full = std::mem::take(&mut pending);
            let words = words(&full);
            if words.is_empty() {
                continue;
            }
            out.push(Step {
                line: first,
                words,
                exits: documented_exit(&full),
            });
        }
    }
    out
}

/// `N` of a `# exits N` comment (0 without one).
fn documented_exit(line: &str) -> i32 {
    line.split_once("# exits ")
        .and_then(|(_, rest)| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_carry_the_file_name_before_them_and_steps_their_exit() {
        let text = "Save it as `new.json`:\n\n```json\n{}\n```\n\n```sh\n\
                    opsctl a --x 'b c'   # exits 1: refused\nopsctl b \\\n  --y\n```\n";
        let b = blocks(text);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].label.as_deref(), Some("new.json"));
        assert_eq!(b[0].body, "{}\n");
        assert_eq!(
            steps(text),
            vec![
                Step {
                    line: 8,
                    words: vec!["opsctl".into(), "a".into(), "--x".into(), "b c".into()],
                    exits: 1
                },
                Step {
                    line: 9,
                    words: vec!["opsctl".into(), "b".into(), "--y".into()],
                    exits: 0
                },
            ]
        );
    }
}
