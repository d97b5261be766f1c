//! Receivers' message limits (Telegram's 4,096 characters, Slack's 40,000 for `text` and 3,000
//! for a section block, PagerDuty's 1,024 for a summary): a text over its limit is cut on a
//! character boundary and ends with a marker saying how much was cut.

/// Telegram `sendMessage` `text`: 1–4,096 characters.
pub const TELEGRAM_TEXT: usize = 4096;
/// Slack message `text` (Slack truncates beyond it).
pub const SLACK_TEXT: usize = 40_000;
/// Slack section block `text` (Slack refuses the message beyond it).
pub const SLACK_SECTION: usize = 3000;
/// PagerDuty Events v2 `payload.summary`.
pub const PAGERDUTY_SUMMARY: usize = 1024;
/// PagerDuty Events v2 `dedup_key`.
pub const PAGERDUTY_DEDUP_KEY: usize = 255;

/// `text` if it has at most `max` characters (Unicode scalar values); otherwise its first
/// characters and ` … (cut: N more characters)`, `max` characters in all, N counting every
/// character of `text` left out. A `max` too small for the marker keeps the marker's head.
pub fn cut(text: &str, max: usize) -> String {
    let total = text.chars().count();
    if total <= max {
        return text.to_owned();
    }
    // The marker's length depends on N, which depends on how much is kept: start from the
    // widest marker (nothing kept), then keep more while the whole still fits (a few steps:
    // only N's digit count changes the width).
    let width = |keep: usize| keep + marker(total - keep).chars().count();
    let mut keep = max.saturating_sub(marker(total).chars().count());
    while keep + 1 < total && width(keep + 1) <= max {
        keep += 1;
    }
    let mut out: String = text.chars().take(keep).collect();
    out.push_str(&marker(total - keep));
    if out.chars().count() > max {
        out = out.chars().take(max).collect();
    }
    out
}

/// As [`cut`], but `max` counts UTF-16 code units, as Telegram counts a message's length (an
/// emoji outside the BMP is two): the result is at most `max` units, cut on a character
/// boundary, with the same marker (N still counts characters).
pub fn cut_utf16(text: &str, max: usize) -> String {
    if text.encode_utf16().count() <= max {
        return text.to_owned();
    }
    let total = text.chars().count();
    // The widest marker (nothing kept) bounds every narrower one.
    let budget = max.saturating_sub(marker(total).encode_utf16().count());
    let (mut kept, mut used) = (0, 0);
    for c in text.chars() {
        if used + c.len_utf16() > budget {
            break;
        }
        used += c.len_utf16();
        kept += 1;
    }
    let mut out: String = text.chars().take(kept).collect();
    out.push_str(&marker(total - kept));
    out
}

fn marker(cut: usize) -> String {
    format!(" … (cut: {cut} more characters)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn telegram_counts_utf16_units() {
        // 4,096 emoji are 8,192 UTF-16 units: Telegram would refuse them uncut.
        let emoji = "🔥".repeat(TELEGRAM_TEXT);
        let out = cut_utf16(&emoji, TELEGRAM_TEXT);
        assert!(out.encode_utf16().count() <= TELEGRAM_TEXT, "{}", out.len());
        let kept = out.chars().take_while(|c| *c == '🔥').count();
        assert!(out.ends_with(&format!(
            " … (cut: {} more characters)",
            TELEGRAM_TEXT - kept
        )));
        assert!(kept > 2000, "{kept}");
        // Within the limit in units: unchanged, even when the characters are two units each.
        let fits = "🔥".repeat(TELEGRAM_TEXT / 2);
        assert_eq!(cut_utf16(&fits, TELEGRAM_TEXT), fits);
    }

    #[test]
    fn short_texts_pass_unchanged_up_to_the_limit() {
        assert_eq!(cut("", 10), "");
        let at_limit = "é".repeat(TELEGRAM_TEXT);
        assert_eq!(cut(&at_limit, TELEGRAM_TEXT), at_limit);
    }

    #[test]
    fn one_over_the_limit_is_cut_and_said() {
        // 4,097 two-byte characters: a byte cut at 4,096 would split one in half.
        let text = "é".repeat(TELEGRAM_TEXT + 1);
        let out = cut(&text, TELEGRAM_TEXT);
        assert_eq!(out.chars().count(), TELEGRAM_TEXT);
        let marker = " … (cut: 29 more characters)";
        assert!(out.ends_with(marker), "{}", &out[out.len() - 40..]);
        assert_eq!(
            out.chars().filter(|c| *c == 'é').count(),
            TELEGRAM_TEXT - marker.chars().count()
        );
    }

    #[test]
    fn four_byte_characters_and_the_other_limits() {
        let emoji = "🔥".repeat(PAGERDUTY_SUMMARY + 500);
        let out = cut(&emoji, PAGERDUTY_SUMMARY);
        assert_eq!(out.chars().count(), PAGERDUTY_SUMMARY);
        assert!(out.ends_with(" … (cut: 529 more characters)"), "{out}");
        assert!(out.starts_with(&"🔥".repeat(PAGERDUTY_SUMMARY - 29)));
        for max in [SLACK_SECTION, SLACK_TEXT] {
            let text = "x".repeat(max + 1);
            assert_eq!(cut(&text, max).chars().count(), max);
            assert_eq!(cut(&text[1..], max), text[1..]);
        }
        assert_eq!(cut("abcdef", 3), " … ");
    }

    proptest! {
        #[test]
        fn never_over_the_limit_and_the_count_is_true(
            text in "\\PC{0,300}",
            max in 40usize..200,
        ) {
            let out = cut(&text, max);
            let total = text.chars().count();
            prop_assert!(out.chars().count() <= max);
            prop_assert!(total <= max || out.chars().count() + 1 >= max);
            if total <= max {
                prop_assert_eq!(out, text);
            } else {
                let (kept, said) = out.rsplit_once(" … (cut: ").unwrap();
                let n: usize = said.trim_end_matches(" more characters)").parse().unwrap();
                prop_assert!(text.starts_with(kept));
                prop_assert_eq!(kept.chars().count() + n, total);
            }
        }
    }
}
