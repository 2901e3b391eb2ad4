//! Conversions between the time types of chrono (our API), time (rcgen) and x509-parser.
//!
//! X.509 validity has whole-second precision, so every instant that goes into a certificate is
//! truncated to the second first; the values reported back then equal what the certificate says.

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use x509_parser::time::ASN1Time;

/// `at` without its sub-second part.
pub(crate) fn whole_seconds(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(0)
}

/// `at + days`, or `None` on overflow.
pub(crate) fn plus_days(at: DateTime<Utc>, days: u32) -> Option<DateTime<Utc>> {
    at.checked_add_signed(TimeDelta::try_days(i64::from(days))?)
}

/// `at - days`, or `None` on overflow.
pub(crate) fn minus_days(at: DateTime<Utc>, days: u32) -> Option<DateTime<Utc>> {
    at.checked_sub_signed(TimeDelta::try_days(i64::from(days))?)
}

/// The same instant for rcgen, or `None` outside the range `time` supports.
pub(crate) fn to_offset(at: DateTime<Utc>) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(at.timestamp()).ok()
}

/// An X.509 time as chrono, or `None` outside the range chrono supports.
pub(crate) fn from_asn1(at: &ASN1Time) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(at.timestamp(), 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn whole_seconds_drops_only_the_fraction() {
        let at = DateTime::from_timestamp(1_700_000_000, 999_999_999).unwrap();
        assert_eq!(whole_seconds(at).timestamp(), 1_700_000_000);
        assert_eq!(whole_seconds(at).timestamp_subsec_nanos(), 0);
    }

    #[test]
    fn conversions_agree_on_the_unix_timestamp() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(to_offset(at).unwrap().unix_timestamp(), 1_700_000_000);
        let asn1 = ASN1Time::from_timestamp(1_700_000_000).unwrap();
        assert_eq!(from_asn1(&asn1).unwrap(), at);
        assert_eq!(plus_days(at, 1).unwrap().timestamp(), 1_700_086_400);
        assert_eq!(minus_days(at, 1).unwrap().timestamp(), 1_699_913_600);
    }
}
