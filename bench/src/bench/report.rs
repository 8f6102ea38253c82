//! Report rows, the stdout table and the JSON document. Targets are evaluated and printed,
//! never asserted: the benchmark is a report.

use std::time::Duration;

use serde_json::{json, Value};

/// What a figure is compared with: another figure measured in the same run.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
}

impl Baseline {
    pub fn new(name: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Self {
            name: name.into(),
            value,
            unit,
        }
    }
}

/// A goal from the issues.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// value / baseline must be at least this.
    RatioAtLeast(f64),
    /// value / baseline must be at most this.
    RatioAtMost(f64),
    /// the value itself must be below this (in the row's unit).
    Below(f64),
    /// a textual check must read "MATCH".
    Match,
}

#[derive(Debug, Clone)]
pub enum Figure {
    Num(f64, &'static str),
    Text(String),
}

#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub figure: Figure,
    pub baseline: Option<Baseline>,
    pub target: Option<Target>,
    pub detail: Value,
}

impl Row {
    pub fn num(name: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Self {
            name: name.into(),
            figure: Figure::Num(value, unit),
            baseline: None,
            target: None,
            detail: Value::Null,
        }
    }

    pub fn text(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            figure: Figure::Text(text.into()),
            baseline: None,
            target: None,
            detail: Value::Null,
        }
    }

    pub fn vs(mut self, baseline: Baseline) -> Self {
        self.baseline = Some(baseline);
        self
    }

    pub fn target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }

    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }

    fn value(&self) -> Option<f64> {
        match self.figure {
            Figure::Num(v, _) => Some(v),
            Figure::Text(_) => None,
        }
    }

    pub fn ratio(&self) -> Option<f64> {
        let b = self.baseline.as_ref()?;
        let v = self.value()?;
        (b.value != 0.0).then(|| v / b.value)
    }

    pub fn met(&self) -> Option<bool> {
        Some(match self.target? {
            Target::RatioAtLeast(t) => self.ratio()? >= t,
            Target::RatioAtMost(t) => self.ratio()? <= t,
            Target::Below(t) => self.value()? < t,
            Target::Match => matches!(&self.figure, Figure::Text(s) if s.starts_with("MATCH")),
        })
    }

    fn unit(&self) -> &'static str {
        match self.figure {
            Figure::Num(_, unit) => unit,
            Figure::Text(_) => "",
        }
    }

    fn target_text(&self) -> String {
        match self.target {
            None => String::new(),
            Some(Target::RatioAtLeast(t)) => format!(">= {t:.2}x"),
            Some(Target::RatioAtMost(t)) => format!("<= {t:.2}x"),
            Some(Target::Below(t)) => format!("< {}", fmt_num(t, self.unit())),
            Some(Target::Match) => "MATCH".into(),
        }
    }

    fn to_json(&self) -> Value {
        let (value, unit) = match &self.figure {
            Figure::Num(v, u) => (json!(v), json!(u)),
            Figure::Text(s) => (json!(s), Value::Null),
        };
        json!({
            "name": self.name,
            "value": value,
            "unit": unit,
            "baseline": self.baseline.as_ref().map(|b| json!({
                "name": b.name, "value": b.value, "unit": b.unit,
            })),
            "ratio": self.ratio(),
            "target": self.target.map(|_| self.target_text()),
            "met": self.met(),
            "detail": self.detail,
        })
    }
}

pub struct Section {
    pub name: &'static str,
    pub title: String,
    pub notes: Vec<String>,
    pub rows: Vec<Row>,
    pub elapsed: Duration,
}

impl Section {
    pub fn new(name: &'static str, title: impl Into<String>) -> Self {
        Self {
            name,
            title: title.into(),
            notes: Vec::new(),
            rows: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn row(&mut self, row: Row) {
        self.rows.push(row);
    }

    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "title": self.title,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "notes": self.notes,
            "rows": self.rows.iter().map(Row::to_json).collect::<Vec<_>>(),
        })
    }

    /// The section as a fixed-width table.
    pub fn render(&self) -> String {
        let header = [
            "measurement",
            "value",
            "baseline (same run)",
            "baseline value",
            "ratio",
            "target",
            "met",
        ];
        let mut lines: Vec<[String; 7]> = vec![header.map(str::to_string)];
        for row in &self.rows {
            let value = match &row.figure {
                Figure::Num(v, u) => fmt_num(*v, u),
                Figure::Text(s) => s.clone(),
            };
            let (bname, bvalue) = match &row.baseline {
                Some(b) => (b.name.clone(), fmt_num(b.value, b.unit)),
                None => (String::new(), String::new()),
            };
            let ratio = row.ratio().map(|r| format!("{r:.2}x")).unwrap_or_default();
            let met = match row.met() {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "",
            };
            lines.push([
                row.name.clone(),
                value,
                bname,
                bvalue,
                ratio,
                row.target_text(),
                met.to_string(),
            ]);
        }
        let mut widths = [0usize; 7];
        for line in &lines {
            for (w, cell) in widths.iter_mut().zip(line.iter()) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let right = [false, true, false, true, true, false, false];
        let mut out = format!(
            "\n== {} — {} ({:.1} s) ==\n",
            self.name,
            self.title,
            self.elapsed.as_secs_f64()
        );
        for (i, line) in lines.iter().enumerate() {
            let mut text = String::from("  ");
            for (c, cell) in line.iter().enumerate() {
                let pad = widths[c] - cell.chars().count();
                if right[c] {
                    text.push_str(&" ".repeat(pad));
                    text.push_str(cell);
                } else {
                    text.push_str(cell);
                    text.push_str(&" ".repeat(pad));
                }
                text.push_str("  ");
            }
            out.push_str(text.trim_end());
            out.push('\n');
            if i == 0 {
                let total: usize = widths.iter().sum::<usize>() + 2 * widths.len();
                out.push_str("  ");
                out.push_str(&"-".repeat(total));
                out.push('\n');
            }
        }
        for note in &self.notes {
            out.push_str(&format!("  * {note}\n"));
        }
        out
    }
}

/// Human formatting: rates with thousands separators, times with three significant digits.
pub fn fmt_num(v: f64, unit: &str) -> String {
    let body = match unit {
        "ev/s" | "req/s" | "rows/s" | "events" | "rows" => group_thousands(v.round() as i64),
        _ if v.abs() >= 100.0 => format!("{v:.0}"),
        _ if v.abs() >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    };
    if unit.is_empty() {
        body
    } else {
        format!("{body} {unit}")
    }
}

fn group_thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// Latency samples, summarised by nearest-rank percentiles.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The `p`-th percentile (0 < p <= 100) in milliseconds; 0 without samples.
    pub fn pct_ms(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let n = sorted.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        sorted[rank.clamp(1, n) - 1].as_secs_f64() * 1e3
    }

    pub fn mean_ms(&self) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e3 / self.0.len() as f64
    }

    pub fn summary(&self) -> Value {
        json!({
            "count": self.len(),
            "mean_ms": self.mean_ms(),
            "p50_ms": self.pct_ms(50.0),
            "p90_ms": self.pct_ms(90.0),
            "p99_ms": self.pct_ms(99.0),
            "max_ms": self.pct_ms(100.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut s = Samples::default();
        for ms in 1..=100 {
            s.push(Duration::from_millis(ms));
        }
        assert_eq!(s.pct_ms(50.0), 50.0);
        assert_eq!(s.pct_ms(99.0), 99.0);
        assert_eq!(s.pct_ms(100.0), 100.0);
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(fmt_num(1234567.0, "ev/s"), "1,234,567 ev/s");
        assert_eq!(fmt_num(1.234, "ms"), "1.23 ms");
    }
}
