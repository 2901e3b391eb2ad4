//! The result table: one row per figure, with its target and whether it was met, rendered as
//! Markdown and as JSON.

use serde::Serialize;

/// Which side of the limit passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// The figure must not exceed the limit (times, memory).
    AtMost,
    /// The figure must reach the limit (rates, ratios).
    AtLeast,
    /// No target: printed for context only.
    Info,
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Scenario number and name, e.g. "1 initial sync".
    pub scenario: String,
    /// What was measured.
    pub figure: String,
    /// The measured value (`None` when the scenario failed before measuring it).
    pub value: Option<f64>,
    /// Unit of `value` and `limit`.
    pub unit: String,
    /// The target's limit, in `unit`.
    pub limit: Option<f64>,
    /// How `value` is held against `limit`.
    pub goal: Goal,
    /// `value / limit`.
    pub ratio: Option<f64>,
    /// Whether the target is met (`None` for context rows).
    pub pass: Option<bool>,
    /// Free text: conditions, counts, why it failed.
    pub note: String,
}

impl Row {
    /// A figure held against a target.
    pub fn target(
        scenario: &str,
        figure: &str,
        value: f64,
        unit: &str,
        goal: Goal,
        limit: f64,
    ) -> Self {
        let ratio = (limit != 0.0).then(|| value / limit);
        let pass = match goal {
            Goal::AtMost => Some(value <= limit),
            Goal::AtLeast => Some(value >= limit),
            Goal::Info => None,
        };
        Self {
            scenario: scenario.to_owned(),
            figure: figure.to_owned(),
            value: Some(value),
            unit: unit.to_owned(),
            limit: Some(limit),
            goal,
            ratio,
            pass,
            note: String::new(),
        }
    }

    /// A figure shown for context, without a target.
    pub fn info(scenario: &str, figure: &str, value: f64, unit: &str) -> Self {
        Self {
            scenario: scenario.to_owned(),
            figure: figure.to_owned(),
            value: Some(value),
            unit: unit.to_owned(),
            limit: None,
            goal: Goal::Info,
            ratio: None,
            pass: None,
            note: String::new(),
        }
    }

    /// A scenario that could not be measured.
    pub fn failed(scenario: &str, why: &str) -> Self {
        Self {
            scenario: scenario.to_owned(),
            figure: "(not measured)".to_owned(),
            value: None,
            unit: String::new(),
            limit: None,
            goal: Goal::Info,
            ratio: None,
            pass: Some(false),
            note: why.to_owned(),
        }
    }

    /// The same row with a note.
    #[must_use]
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

/// Compact number formatting: no more digits than the figure deserves.
fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        // Thousands separated by a thin space keep large rates readable.
        let s = format!("{v:.0}");
        let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push('\u{2009}');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn with_unit(v: f64, unit: &str) -> String {
    if unit.is_empty() {
        num(v)
    } else {
        format!("{} {unit}", num(v))
    }
}

/// The Markdown table.
#[must_use]
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | figure | measured | target | ratio to limit | result | note |\n|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let measured = r
            .value
            .map_or_else(|| "—".to_owned(), |v| with_unit(v, &r.unit));
        let target = match (r.goal, r.limit) {
            (Goal::AtMost, Some(l)) => format!("≤ {}", with_unit(l, &r.unit)),
            (Goal::AtLeast, Some(l)) => format!("≥ {}", with_unit(l, &r.unit)),
            _ => "—".to_owned(),
        };
        let ratio = r
            .ratio
            .map_or_else(|| "—".to_owned(), |x| format!("{x:.2}"));
        let result = match r.pass {
            Some(true) => "pass",
            Some(false) => "**miss**",
            None => "info",
        };
        out.push_str(&format!(
            "| {} | {} | {measured} | {target} | {ratio} | {result} | {} |\n",
            r.scenario,
            r.figure,
            r.note.replace('|', "/")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_and_at_least_pass_on_their_own_side_of_the_limit() {
        let fast = Row::target("1", "time", 20.0, "s", Goal::AtMost, 35.0);
        let slow = Row::target("1", "time", 40.0, "s", Goal::AtMost, 35.0);
        let rate = Row::target("1", "rate", 25_000.0, "/s", Goal::AtLeast, 30_000.0);
        assert_eq!(fast.pass, Some(true));
        assert_eq!(slow.pass, Some(false));
        assert_eq!(rate.pass, Some(false));
        assert!((rate.ratio.unwrap_or_default() - 25.0 / 30.0).abs() < 1e-9);
    }

    #[test]
    fn the_table_shows_targets_and_misses() {
        let t = markdown(&[
            Row::target("1", "rate", 31_234.0, "devices/s", Goal::AtLeast, 30_000.0),
            Row::failed("2", "sync did not start"),
        ]);
        assert!(t.contains("≥ 30\u{2009}000 devices/s"), "{t}");
        assert!(t.contains("31\u{2009}234 devices/s"), "{t}");
        assert!(t.contains("**miss**"), "{t}");
        assert!(t.contains("sync did not start"), "{t}");
    }
}
