//! Printing: aligned tables and key/value blocks for people, the API's own
//! JSON for scripts (`--json`).

use crate::client::Reply;
use serde_json::Value;
use std::fmt::Write as _;

/// Prints a reply's body exactly as the API sent it, on its own line.
pub fn raw(reply: &Reply) {
    println!("{}", reply.raw.trim_end());
}

/// A table with a header row; columns are as wide as their widest cell.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(titles: &[&str]) -> Self {
        Self {
            rows: vec![titles.iter().map(|t| (*t).to_owned()).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, two spaces between columns.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table, or a note when it has no rows.
    pub fn print(&self, empty: &str) {
        if self.rows.len() == 1 {
            println!("{empty}");
        } else {
            print!("{}", self.render());
        }
    }
}

/// Prints `key: value` lines with the values aligned.
pub fn fields(pairs: &[(&str, String)]) {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (key, value) in pairs {
        println!("{:<width$} {value}", format!("{key}:"));
    }
}

/// A JSON value as a table cell: strings bare, `null` as `-`.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A timestamp without its milliseconds and zone letter (`2026-01-01 12:00:00`).
pub fn time(value: &Value) -> String {
    match value.as_str() {
        Some(t) if t.len() >= 19 => t[..19].replace('T', " "),
        _ => cell(value),
    }
}

/// Milliseconds for people (`850 ms`, `12.3 s`, `4 min 05 s`).
pub fn duration_ms(ms: i64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min {:02} s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// Bytes for people (`512 B`, `1.5 MiB`).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `next_cursor` as a hint to get the next page, if there is one.
pub fn more(page: &Value, command: &str) {
    if let Some(cursor) = page["next_cursor"].as_str() {
        println!("(more: {command} --cursor {cursor})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let mut table = Table::new(&["ID", "NAME"]);
        table.row(vec!["1".into(), "alpha".into()]);
        table.row(vec!["22222".into(), "b".into()]);
        assert_eq!(table.render(), "ID     NAME\n1      alpha\n22222  b\n");
    }

    #[test]
    fn units_read_well() {
        assert_eq!(duration_ms(850), "850 ms");
        assert_eq!(duration_ms(12_345), "12.3 s");
        assert_eq!(duration_ms(245_000), "4 min 05 s");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536 * 1024), "1.5 MiB");
        assert_eq!(
            time(&Value::from("2026-01-01T12:00:00.123Z")),
            "2026-01-01 12:00:00"
        );
    }
}
