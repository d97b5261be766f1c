//! The bench's results: figures with their DESIGN.md targets and pass/miss verdicts, rendered
//! as a comfy-table table and as JSON (`--json`).

use comfy_table::{presets, Cell, ContentArrangement, Table};
use serde::Serialize;

/// How a figure is compared with its target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cmp {
    /// value >= target
    AtLeast,
    /// value <= target
    AtMost,
    /// value < target
    Below,
}

/// A target from DESIGN.md ("Performance targets").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    pub cmp: Cmp,
    pub value: f64,
}

impl Target {
    pub const fn at_least(value: f64) -> Option<Target> {
        Some(Target {
            cmp: Cmp::AtLeast,
            value,
        })
    }
    pub const fn at_most(value: f64) -> Option<Target> {
        Some(Target {
            cmp: Cmp::AtMost,
            value,
        })
    }
    pub const fn below(value: f64) -> Option<Target> {
        Some(Target {
            cmp: Cmp::Below,
            value,
        })
    }

    /// Whether `v` meets the target (pure).
    pub fn met_by(&self, v: f64) -> bool {
        match self.cmp {
            Cmp::AtLeast => v >= self.value,
            Cmp::AtMost => v <= self.value,
            Cmp::Below => v < self.value,
        }
    }

    fn text(&self, unit: &str) -> String {
        let op = match self.cmp {
            Cmp::AtLeast => ">=",
            Cmp::AtMost => "<=",
            Cmp::Below => "<",
        };
        format!("{op} {} {unit}", fmt_num(self.value))
    }
}

/// One measured figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    /// Stable key (JSON consumers and the smoke test rely on it).
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    /// `None` when the measurement failed (see `note`).
    pub value: Option<f64>,
    pub target: Option<Target>,
    /// `pass`, `miss`, `baseline` (no target: a reference measured in the same run) or `error`.
    pub verdict: &'static str,
    /// How many repeats (or samples) the value summarises, and how.
    pub note: String,
}

/// What a figure is, before it is measured: key, label, unit and target.
#[derive(Debug, Clone, PartialEq)]
pub struct FigSpec {
    /// Stable key (JSON consumers and the smoke test rely on it).
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub target: Option<Target>,
}

impl FigSpec {
    /// The measured figure with its verdict.
    pub fn measured(&self, value: f64, note: impl Into<String>) -> Figure {
        let verdict = match &self.target {
            None => "baseline",
            Some(t) if t.met_by(value) => "pass",
            Some(_) => "miss",
        };
        Figure {
            key: self.key,
            label: self.label,
            unit: self.unit,
            value: Some(value),
            target: self.target.clone(),
            verdict,
            note: note.into(),
        }
    }

    /// The figure of a measurement that failed.
    pub fn failed(&self, error: &anyhow::Error) -> Figure {
        Figure {
            key: self.key,
            label: self.label,
            unit: self.unit,
            value: None,
            target: self.target.clone(),
            verdict: "error",
            note: format!("{error:#}"),
        }
    }
}

impl Figure {
    /// How far from the target, as text ("2.1x over", "-37%"); empty when met or absent.
    pub fn shortfall(&self) -> String {
        match (&self.target, self.value) {
            (Some(t), Some(v)) if !t.met_by(v) && t.value != 0.0 => match t.cmp {
                Cmp::AtLeast => format!("{:.0}% short", (1.0 - v / t.value) * 100.0),
                Cmp::AtMost | Cmp::Below => format!("{:.2}x the target", v / t.value),
            },
            _ => String::new(),
        }
    }
}

/// Where and how the bench ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub mem_total_gib: f64,
    pub kernel: String,
    pub load_avg_at_start: String,
    pub nats_server: String,
}

/// Everything `--json` writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub command: String,
    pub started_unix_ms: i64,
    pub elapsed_s: f64,
    pub quick: bool,
    pub machine: Machine,
    pub sizes: serde_json::Value,
    pub figures: Vec<Figure>,
}

/// Numbers as people read them: thousands separated, 3 significant decimals below 100.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.abs() >= 1000.0 {
        let n = v.round() as i64;
        let s = n.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 {
            out.insert(0, '-');
        }
        out
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The figures as a table (pure).
pub fn table(figures: &[Figure]) -> String {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(["figure", "value", "target", "verdict", "how"]);
    for f in figures {
        let value = f
            .value
            .map(|v| format!("{} {}", fmt_num(v), f.unit))
            .unwrap_or_else(|| "-".to_owned());
        let target = f
            .target
            .as_ref()
            .map(|t| t.text(f.unit))
            .unwrap_or_else(|| "-".to_owned());
        let verdict = match f.shortfall() {
            s if s.is_empty() => f.verdict.to_owned(),
            s => format!("{} ({s})", f.verdict),
        };
        let mut note = f.note.clone();
        if note.chars().count() > 72 {
            note = note.chars().take(69).collect::<String>() + "...";
        }
        t.add_row([
            Cell::new(f.label),
            Cell::new(value),
            Cell::new(target),
            Cell::new(verdict),
            Cell::new(note),
        ]);
    }
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(target: Option<Target>, unit: &'static str) -> FigSpec {
        FigSpec {
            key: "k",
            label: "l",
            unit,
            target,
        }
    }

    #[test]
    fn verdicts_follow_the_target() {
        let f = spec(Target::below(50.0), "ms").measured(40.0, "");
        assert_eq!(f.verdict, "pass");
        let f = spec(Target::below(50.0), "ms").measured(100.0, "");
        assert_eq!(
            (f.verdict, f.shortfall().as_str()),
            ("miss", "2.00x the target")
        );
        let f = spec(Target::at_least(50_000.0), "ev/s").measured(40_000.0, "");
        assert_eq!((f.verdict, f.shortfall().as_str()), ("miss", "20% short"));
        let f = spec(None, "ev/s").measured(9.0, "");
        assert_eq!(f.verdict, "baseline");
        assert!(Target::at_most(3.0).is_some_and(|t| t.met_by(3.0)));
        assert!(Target::below(3.0).is_some_and(|t| !t.met_by(3.0)));
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_num(1_234_567.4), "1,234,567");
        assert_eq!(fmt_num(-4321.0), "-4,321");
        assert_eq!(fmt_num(123.4), "123");
        assert_eq!(fmt_num(12.34), "12.3");
        assert_eq!(fmt_num(0.1234), "0.123");
    }

    #[test]
    fn table_shows_every_figure_with_its_target() {
        let figs = vec![
            spec(Target::at_least(50_000.0), "ev/s").measured(60_000.0, "median of 3"),
            spec(Target::below(50.0), "ms").measured(70.0, "n=1000"),
        ];
        let t = table(&figs);
        assert!(t.contains("60,000 ev/s") && t.contains(">= 50,000 ev/s") && t.contains("pass"));
        assert!(t.contains("miss (1.40x the target)"), "{t}");
    }
}
