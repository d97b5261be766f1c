//! Making untrusted text inert before opsctl prints it in a table cell or an event line: log
//! excerpts, reasons, names, labels and paths come from hosts and must not drive the
//! operator's terminal. JSON output does not go through here (serde escapes it exactly).

/// `text` with every character that a terminal could act on replaced by a visible stand-in:
/// C0 controls (including ESC, CR, LF, TAB, BS) by their Unicode control pictures (`\x1b` →
/// `␛`, `\r` → `␍`), DEL by `␡`, C1 controls (including the 8-bit CSI `\u{9b}`) and the
/// bidirectional overrides and isolates (which reorder what is shown) by `�`. Each character
/// becomes one character, so widths and cuts computed before stay right. Pure.
pub fn inert(text: &str) -> String {
    if !text.chars().any(needs_replacing) {
        return text.to_owned();
    }
    text.chars().map(stand_in).collect()
}

fn needs_replacing(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// U+200E/U+200F marks, U+202A..U+202E embeddings and overrides, U+2066..U+2069 isolates.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn stand_in(c: char) -> char {
    match c {
        '\u{0}'..='\u{1f}' => char::from_u32(0x2400 + u32::from(c)).unwrap_or('?'),
        '\u{7f}' => '\u{2421}',
        c if needs_replacing(c) => '\u{fffd}',
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_and_cursor_moves_become_visible_stand_ins() {
        assert_eq!(inert("a\x1b[2Jb\rc"), "a␛[2Jb␍c");
        assert_eq!(inert("x\ny\tz\x08\x07\0"), "x␊y␉z␈␇␀");
        assert_eq!(inert("del\x7f"), "del␡");
        assert_eq!(
            inert("csi\u{9b}31m nel\u{85}"),
            "csi\u{fffd}31m nel\u{fffd}"
        );
        assert_eq!(inert("evil\u{202e}txt.exe"), "evil\u{fffd}txt.exe");
    }

    #[test]
    fn plain_text_and_printable_unicode_pass_unchanged() {
        for s in [
            "",
            "web-01",
            "/var/log/app.log",
            "ERROR: disk 95% full …",
            "naïve ü 日本",
        ] {
            assert_eq!(inert(s), s);
        }
    }

    #[test]
    fn nothing_a_terminal_acts_on_survives_and_lengths_are_kept() {
        for c in (0u32..0x3000).filter_map(char::from_u32) {
            let s = format!("<{c}>");
            let out = inert(&s);
            assert_eq!(out.chars().count(), 3, "{c:?}");
            let mid = out.chars().nth(1).unwrap_or(' ');
            assert!(
                !mid.is_control() && !is_bidi_control(mid),
                "{c:?} -> {mid:?}"
            );
        }
    }
}
