//! A small writer of the Prometheus text exposition format (0.0.4): `# HELP` and `# TYPE`
//! once per family, written with its first sample (a family with no sample writes nothing),
//! label values and help text escaped as the format says.

use std::fmt::Write as _;

/// The content type of what `Text` writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

/// The text being written, and the family whose header is due with its first sample.
pub struct Text {
    out: String,
    pending: Option<(&'static str, Kind, &'static str)>,
    family: &'static str,
}

impl Text {
    pub fn with_capacity(bytes: usize) -> Self {
        Text {
            out: String::with_capacity(bytes),
            pending: None,
            family: "",
        }
    }

    /// Starts family `name`: every `sample` until the next `family` belongs to it.
    pub fn family(&mut self, name: &'static str, kind: Kind, help: &'static str) {
        self.pending = Some((name, kind, help));
        self.family = name;
    }

    /// One sample of the current family.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        self.start_sample(labels);
        write_f64(&mut self.out, value);
        self.out.push('\n');
    }

    /// One integer sample of the current family (exact beyond 2^53).
    pub fn sample_u64(&mut self, labels: &[(&str, &str)], value: u64) {
        self.start_sample(labels);
        // Writing to a String cannot fail.
        let _ = write!(self.out, "{value}");
        self.out.push('\n');
    }

    fn start_sample(&mut self, labels: &[(&str, &str)]) {
        if let Some((name, kind, help)) = self.pending.take() {
            self.out.push_str("# HELP ");
            self.out.push_str(name);
            self.out.push(' ');
            escape_into(&mut self.out, help, false);
            self.out.push_str("\n# TYPE ");
            self.out.push_str(name);
            self.out.push(' ');
            self.out.push_str(kind.as_str());
            self.out.push('\n');
        }
        self.out.push_str(self.family);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_into(&mut self.out, v, true);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// `\` and newline escaped (and `"` in a label value), as the text format requires.
fn escape_into(out: &mut String, text: &str, quote: bool) {
    if !text
        .bytes()
        .any(|b| b == b'\\' || b == b'\n' || (quote && b == b'"'))
    {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// A float as the format spells it (`NaN`, `+Inf`, `-Inf`; integers without a fraction).
fn write_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_once_with_the_first_sample_and_escaped_values() {
        let mut t = Text::with_capacity(0);
        t.family("empty", Kind::Gauge, "never written");
        t.family("x_ratio", Kind::Gauge, "a \\ help\nline");
        t.sample(&[("mount", "/a\"b\\c\nd")], 0.25);
        t.sample(&[], f64::INFINITY);
        t.family("y_total", Kind::Counter, "count");
        t.sample_u64(&[("a", "1"), ("b", "2")], u64::MAX);
        t.sample(&[], f64::NAN);
        t.sample(&[], 3.0);
        assert_eq!(
            t.finish(),
            "# HELP x_ratio a \\\\ help\\nline\n# TYPE x_ratio gauge\n\
             x_ratio{mount=\"/a\\\"b\\\\c\\nd\"} 0.25\nx_ratio +Inf\n\
             # HELP y_total count\n# TYPE y_total counter\n\
             y_total{a=\"1\",b=\"2\"} 18446744073709551615\ny_total NaN\ny_total 3\n"
        );
    }
}
