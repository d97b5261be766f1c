//! The one table renderer of opsctl: a header, rows of cells made inert, columns padded by
//! comfy-table with no borders, each line right-trimmed. Every human table goes through here.

use comfy_table::{presets, ContentArrangement};

use crate::sanitize::inert;

/// A borderless table whose cells come from hosts and are made inert (`sanitize::inert`).
pub struct Table {
    inner: comfy_table::Table,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        let mut inner = comfy_table::Table::new();
        inner
            .load_preset(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled)
            .set_header(header.to_vec());
        Table { inner }
    }

    /// Adds a row; every cell is made inert first.
    pub fn row<const N: usize>(&mut self, cells: [String; N]) {
        self.inner.add_row(cells.map(|c| inert(&c)));
    }

    /// Appends the table to `out`, one right-trimmed line each.
    pub fn write_to(&self, out: &mut String) {
        for line in self.inner.to_string().lines() {
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }

    /// The table as text, one right-trimmed line each.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write_to(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn columns_are_padded_lines_trimmed_and_cells_inert() {
        let mut t = Table::new(&["A", "LONG HEADER"]);
        t.row(["x\x1b".to_owned(), "1".to_owned()]);
        assert_eq!(t.render(), " A   LONG HEADER\n x␛  1\n");
    }
}
