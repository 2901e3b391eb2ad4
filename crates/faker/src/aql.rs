//! The small part of Armis AQL the faker understands.
//!
//! ```text
//! query   = "in:devices" { filter }             terms separated by spaces, in any order
//! filter  = key ":" value { "," value }          values of one filter are OR-ed,
//!                                                different filters are AND-ed
//! key     = type | category | manufacturer | tag | tags | riskLevel | id   (case-insensitive)
//! value   = word | '"' text '"'                  names compare case-insensitively
//!         | n | n ".." m                         numbers and inclusive ranges (riskLevel, id)
//! ignored = "timeFrame:" … | "orderBy=" …        accepted and ignored (real queries carry them)
//! ```
//!
//! Examples: `in:devices`, `in:devices type:Camera`, `in:devices type:"Access Point",Router`,
//! `in:devices tag:Corporate riskLevel:8..10`, `in:devices id:1..5000`. A name that no
//! device has (a misspelt type) selects nothing, as in Armis; an unknown key, a missing
//! `in:devices`, another `in:` collection or a malformed number is an error.

use crate::generator::{TAGS, TYPES, Traits};

/// Why a query is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AqlError {
    /// Empty query.
    #[error("aql is empty; expected e.g. in:devices")]
    Empty,
    /// No `in:devices`.
    #[error("aql must select in:devices")]
    NoCollection,
    /// `in:` something else.
    #[error("unsupported collection in:{0}; the faker serves only in:devices")]
    Collection(String),
    /// A term that is not `key:value`.
    #[error("malformed aql term {0:?}: expected key:value")]
    Term(String),
    /// A key the faker does not know.
    #[error(
        "unsupported aql filter {0:?}; supported: type, category, manufacturer, tag, riskLevel, id"
    )]
    Key(String),
    /// A filter without values.
    #[error("aql filter {0:?} has no value")]
    EmptyValue(String),
    /// Unbalanced quote.
    #[error("unbalanced quote in aql")]
    Quote,
    /// Not a number or range.
    #[error("aql filter {key}: {value:?} is not a number or a range a..b")]
    Number {
        /// The filter.
        key: String,
        /// The bad value.
        value: String,
    },
}

/// One filter: which values pass.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Filter {
    /// Indices into [`TYPES`].
    Type(Vec<usize>),
    /// Lower-case category names.
    Category(Vec<String>),
    /// Lower-case manufacturer names.
    Manufacturer(Vec<String>),
    /// Tag bit mask: any of these tags.
    Tag(u16),
    /// Inclusive risk level ranges.
    RiskLevel(Vec<(u64, u64)>),
    /// Inclusive Armis id ranges.
    Id(Vec<(u64, u64)>),
}

impl Filter {
    fn matches(&self, id: u64, t: &Traits) -> bool {
        match self {
            Self::Type(types) => types.contains(&t.type_index),
            Self::Category(names) => names
                .iter()
                .any(|n| n.eq_ignore_ascii_case(t.device_type().category)),
            Self::Manufacturer(names) => {
                names.iter().any(|n| n.eq_ignore_ascii_case(t.manufacturer))
            }
            Self::Tag(mask) => t.tags & mask != 0,
            Self::RiskLevel(ranges) => in_ranges(ranges, u64::from(t.risk_level)),
            Self::Id(ranges) => in_ranges(ranges, id),
        }
    }
}

fn in_ranges(ranges: &[(u64, u64)], v: u64) -> bool {
    ranges.iter().any(|(a, b)| (*a..=*b).contains(&v))
}

/// A parsed query: every filter must pass.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Query {
    filters: Vec<Filter>,
}

impl Query {
    /// Parses `aql`.
    ///
    /// # Errors
    /// [`AqlError`] naming the first problem.
    pub fn parse(aql: &str) -> Result<Self, AqlError> {
        let terms = split_outside_quotes(aql, char::is_whitespace)?;
        if terms.is_empty() {
            return Err(AqlError::Empty);
        }
        let mut collection = false;
        let mut filters = Vec::new();
        for term in terms {
            if term.starts_with("orderBy=") {
                continue;
            }
            let Some((key, value)) = term.split_once(':') else {
                return Err(AqlError::Term(term));
            };
            let values: Vec<String> = split_outside_quotes(value, |c| c == ',')?
                .into_iter()
                .map(|v| unquote(&v))
                .filter(|v| !v.is_empty())
                .collect();
            let lower_key = key.to_ascii_lowercase();
            if lower_key == "timeframe" {
                continue;
            }
            if values.is_empty() {
                return Err(AqlError::EmptyValue(key.to_owned()));
            }
            let lower = || values.iter().map(|v| v.to_ascii_lowercase()).collect();
            let filter = match lower_key.as_str() {
                "in" => {
                    if values.len() == 1 && values[0].eq_ignore_ascii_case("devices") {
                        collection = true;
                        continue;
                    }
                    return Err(AqlError::Collection(value.to_owned()));
                }
                "type" => Filter::Type(
                    TYPES
                        .iter()
                        .enumerate()
                        .filter(|(_, ty)| values.iter().any(|v| v.eq_ignore_ascii_case(ty.name)))
                        .map(|(k, _)| k)
                        .collect(),
                ),
                "category" => Filter::Category(lower()),
                "manufacturer" => Filter::Manufacturer(lower()),
                "tag" | "tags" => Filter::Tag(
                    TAGS.iter()
                        .enumerate()
                        .filter(|(_, (name, _))| {
                            values.iter().any(|v| v.eq_ignore_ascii_case(name))
                        })
                        .fold(0, |mask, (k, _)| mask | (1 << k)),
                ),
                "risklevel" => Filter::RiskLevel(ranges(key, &values)?),
                "id" => Filter::Id(ranges(key, &values)?),
                _ => return Err(AqlError::Key(key.to_owned())),
            };
            filters.push(filter);
        }
        if !collection {
            return Err(AqlError::NoCollection);
        }
        // One canonical form per meaning, so equivalent queries share a cache entry.
        for f in &mut filters {
            match f {
                Filter::Type(v) => {
                    v.sort_unstable();
                    v.dedup();
                }
                Filter::Category(v) | Filter::Manufacturer(v) => {
                    v.sort_unstable();
                    v.dedup();
                }
                Filter::RiskLevel(v) | Filter::Id(v) => {
                    v.sort_unstable();
                    v.dedup();
                }
                Filter::Tag(_) => {}
            }
        }
        filters.sort();
        filters.dedup();
        Ok(Self { filters })
    }

    /// Whether the query selects every device.
    #[must_use]
    pub fn is_all(&self) -> bool {
        self.filters.is_empty()
    }

    /// Whether the device with Armis id `id` and traits `t` is selected.
    #[must_use]
    pub fn matches(&self, id: u64, t: &Traits) -> bool {
        self.filters.iter().all(|f| f.matches(id, t))
    }
}

fn ranges(key: &str, values: &[String]) -> Result<Vec<(u64, u64)>, AqlError> {
    let bad = |v: &str| AqlError::Number {
        key: key.to_owned(),
        value: v.to_owned(),
    };
    values
        .iter()
        .map(|v| {
            let (a, b) = v.split_once("..").unwrap_or((v, v));
            let a = a.trim().parse::<u64>().map_err(|_| bad(v))?;
            let b = b.trim().parse::<u64>().map_err(|_| bad(v))?;
            if a > b {
                return Err(bad(v));
            }
            Ok((a, b))
        })
        .collect()
}

fn unquote(v: &str) -> String {
    v.trim()
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v.trim())
        .to_owned()
}

/// Splits on `sep` where it is not inside double quotes; drops empty pieces.
fn split_outside_quotes(s: &str, sep: impl Fn(char) -> bool) -> Result<Vec<String>, AqlError> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in s.chars() {
        if c == '"' {
            quoted = !quoted;
            current.push(c);
        } else if !quoted && sep(c) {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
        } else {
            current.push(c);
        }
    }
    if quoted {
        return Err(AqlError::Quote);
    }
    if !current.is_empty() {
        out.push(current);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bare_in_devices_selects_everything_and_ignores_time_frame_and_order() {
        let q = Query::parse(r#"in:devices timeFrame:"7 Days" orderBy=id"#).unwrap();
        assert!(q.is_all());
    }

    #[test]
    fn quoted_names_with_spaces_and_or_lists_parse() {
        let q = Query::parse(r#"in:devices type:"Access Point",router"#).unwrap();
        assert_eq!(q.filters, vec![Filter::Type(vec![3, 5])]);
    }

    #[test]
    fn equivalent_queries_have_one_canonical_form() {
        let a = Query::parse("in:devices tag:Lab type:Camera,Printer").unwrap();
        let b = Query::parse("type:printer,camera,Camera   in:devices tags:lab").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn bad_queries_are_rejected_with_the_reason() {
        let cases = [
            ("", AqlError::Empty),
            ("type:Camera", AqlError::NoCollection),
            ("in:activity", AqlError::Collection("activity".into())),
            (
                "in:devices boundaries:Corp",
                AqlError::Key("boundaries".into()),
            ),
            ("in:devices Camera", AqlError::Term("Camera".into())),
            ("in:devices type:", AqlError::EmptyValue("type".into())),
            ("in:devices type:\"Access", AqlError::Quote),
            (
                "in:devices id:5..1",
                AqlError::Number {
                    key: "id".into(),
                    value: "5..1".into(),
                },
            ),
            (
                "in:devices riskLevel:high",
                AqlError::Number {
                    key: "riskLevel".into(),
                    value: "high".into(),
                },
            ),
        ];
        for (aql, want) in cases {
            assert_eq!(Query::parse(aql).unwrap_err(), want, "{aql:?}");
        }
    }

    #[test]
    fn an_unknown_type_name_selects_nothing_rather_than_failing() {
        let q = Query::parse("in:devices type:Toaster").unwrap();
        let g = crate::generator::Generator::new(1, 100, 0.0);
        assert!((0..100).all(|i| !q.matches(i + 1, &g.traits(i))));
    }
}
