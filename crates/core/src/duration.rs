//! Duration strings as used in configs (`30s`, `15m`, `6h`, `1d`, `2w`, `1h30m`, or bare seconds).

use std::fmt::Write as _;

/// Why a duration string is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Empty input.
    #[error("duration is empty")]
    Empty,
    /// A character that is not a digit or a known unit.
    #[error(
        "invalid duration {0:?}: expected a number with unit s, m, h, d or w (e.g. 30m, 6h, 1d)"
    )]
    Invalid(String),
    /// Does not fit in 64 bits of seconds.
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Parses a duration into whole seconds.
///
/// # Errors
/// [`DurationError`] when the text is empty, malformed or overflows.
pub fn parse_secs(text: &str) -> Result<u64, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map_err(|_| DurationError::Overflow(text.to_owned()));
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in s.chars() {
        if let Some(d) = c.to_digit(10) {
            let n = number.unwrap_or(0);
            number = Some(
                n.checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(d)))
                    .ok_or_else(|| DurationError::Overflow(text.to_owned()))?,
            );
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(DurationError::Invalid(text.to_owned())),
        };
        let n = number
            .take()
            .ok_or_else(|| DurationError::Invalid(text.to_owned()))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| DurationError::Overflow(text.to_owned()))?;
    }
    if number.is_some() {
        // Trailing digits without a unit, as in "1h30".
        return Err(DurationError::Invalid(text.to_owned()));
    }
    Ok(total)
}

/// Formats seconds compactly with the largest units that divide them (`3600` → `1h`, `5400` → `1h30m`).
#[must_use]
pub fn format_secs(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, name) in [(86_400, 'd'), (3_600, 'h'), (60, 'm'), (1, 's')] {
        if rest >= unit {
            let _ = write!(out, "{}{name}", rest / unit);
            rest %= unit;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations_parse_with_every_unit() {
        for (text, secs) in [
            ("30s", 30),
            ("15m", 900),
            ("6h", 21_600),
            ("1d", 86_400),
            ("2w", 1_209_600),
            ("1h30m", 5_400),
            ("300", 300),
            (" 5m ", 300),
        ] {
            assert_eq!(parse_secs(text), Ok(secs), "{text}");
        }
    }

    #[test]
    fn malformed_durations_are_rejected() {
        assert_eq!(parse_secs(""), Err(DurationError::Empty));
        for bad in ["m", "5x", "1h30", "-5m", "5 m", "1.5h"] {
            assert!(
                matches!(parse_secs(bad), Err(DurationError::Invalid(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_secs("99999999999999999999s"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn formatting_uses_the_largest_units() {
        assert_eq!(format_secs(3_600), "1h");
        assert_eq!(format_secs(5_400), "1h30m");
        assert_eq!(format_secs(86_400), "1d");
        assert_eq!(format_secs(90), "1m30s");
        assert_eq!(format_secs(0), "0s");
    }

    proptest! {
        #[test]
        fn formatted_durations_parse_back(secs in 0u64..10_000_000) {
            prop_assert_eq!(parse_secs(&format_secs(secs)), Ok(secs));
        }
    }
}
