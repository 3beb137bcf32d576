//! Markdown tables and the goal list the bench prints.

use std::fmt::Write as _;

/// One markdown table with a heading and notes under it.
#[derive(Debug)]
pub struct Table {
    title: String,
    headers: Vec<String>,
    /// Right-align every column but the first.
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(title: impl Into<String>, headers: &[&str]) -> Table {
        Table {
            title: title.into(),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds a row; it must have one cell per header.
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells);
    }

    /// Adds a line printed under the table.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Prints it to stdout.
    pub fn print(&self) {
        let mut out = format!("\n### {}\n\n", self.title);
        let _ = writeln!(out, "| {} |", self.headers.join(" | "));
        let align: Vec<&str> = (0..self.headers.len())
            .map(|i| if i == 0 { "---" } else { "---:" })
            .collect();
        let _ = writeln!(out, "|{}|", align.join("|"));
        for row in &self.rows {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                let _ = writeln!(out, "{note}");
            }
        }
        print!("{out}");
    }
}

/// `12345.6` as `12,346`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 && digits != "0" {
        out.insert(0, '-');
    }
    out
}

/// A fraction of one core as a percentage.
pub fn percent(fraction: f64) -> String {
    format!("{:.0}%", fraction * 100.0)
}

/// `a / b` as `0.83×`, or `–` when either is missing.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".to_string(),
    }
}

/// The median of some samples (the mean of the middle two for an even
/// count); sorts them.
pub fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => samples[n / 2],
        _ => (samples[n / 2 - 1] + samples[n / 2]) / 2.0,
    }
}

/// The `p`th percentile (nearest rank) of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One of the goals and how this run did against it.
#[derive(Debug)]
pub struct Goal {
    /// What is wanted, in words.
    pub goal: String,
    /// What this run measured.
    pub figure: String,
    /// `None` when the figure is missing.
    pub reached: Option<bool>,
}

impl Goal {
    /// A goal measured as `value` against `target`; `at_least` says which
    /// side is good.
    pub fn new(goal: &str, value: Option<f64>, target: f64, at_least: bool, unit: &str) -> Goal {
        let reached = value.map(|v| if at_least { v >= target } else { v <= target });
        let figure = value.map_or_else(|| "not measured".to_string(), |v| format_unit(v, unit));
        Goal {
            goal: goal.to_string(),
            figure,
            reached,
        }
    }
}

fn format_unit(value: f64, unit: &str) -> String {
    match unit {
        "×" => format!("{value:.2}×"),
        "µs" => format!("{value:.1} µs"),
        "ms" => format!("{value:.2} ms"),
        _ => format!("{value} {unit}"),
    }
}

/// Prints the goals table.
pub fn print_goals(goals: &[Goal]) {
    let mut table = Table::new(
        "Goals (reported, not asserted)",
        &["goal", "this run", "verdict"],
    );
    for g in goals {
        let verdict = match g.reached {
            Some(true) => "reached",
            Some(false) => "missed",
            None => "–",
        };
        table.row(vec![g.goal.clone(), g.figure.clone(), verdict.to_string()]);
    }
    table.print();
}
