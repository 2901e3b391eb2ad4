//! From one JetStream message to either a row to store or a row to quarantine. Pure: no
//! I/O, so every rule has a table test.
//!
//! Rules, in order: the subject must name a tenant (`<prefix>.events.<tenant_id>.<kind>`);
//! the body must be JSON of an OCSF event; the event must pass
//! [`OcsfEventRef::validate_for`] (the rules of `OcsfEvent::validate_for`) with the
//! subject's tenant: class/category/activity/type consistency, severity, status, time,
//! metadata version and product, no U+0000, and the body's `tenant_id` equal to the
//! subject's.
//!
//! The row borrows from the message (the event is parsed once, without copying its
//! strings), so decoding stays a small part of the cost of storing an event.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use sha2::Digest as _;
use sr_core::ocsf::{OcsfError, OcsfEventRef};
use sr_core::{Subjects, TenantId};
use uuid::Uuid;

/// What arrived, borrowed from the message.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// NATS subject.
    pub subject: &'a str,
    /// `sr-origin` header, if any.
    pub origin: Option<&'a str>,
    /// Body.
    pub payload: &'a [u8],
    /// Stream the message was read from.
    pub stream: &'a str,
    /// Its stream sequence.
    pub stream_seq: u64,
}

/// A valid event, ready for `ocsf_events`; text borrows from the message where it can.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow<'a> {
    /// Owning tenant (subject and body agree).
    pub tenant_id: TenantId,
    /// `metadata.uid`.
    pub uid: Uuid,
    /// `sr-origin` header, else `metadata.product.name`.
    pub origin: Cow<'a, str>,
    /// Class.
    pub class_uid: i32,
    /// Category.
    pub category_uid: i32,
    /// Activity.
    pub activity_id: i32,
    /// Type.
    pub type_uid: i64,
    /// Severity.
    pub severity_id: i32,
    /// Status.
    pub status_id: i32,
    /// Event time.
    pub time: DateTime<Utc>,
    /// Message.
    pub message: Cow<'a, str>,
    /// `metadata.correlation_uid`.
    pub correlation_uid: Option<Cow<'a, str>>,
    /// Observables as JSON text.
    pub observables: Cow<'a, str>,
    /// `unmapped` as JSON text.
    pub unmapped: Cow<'a, str>,
    /// The body as published.
    pub raw: Cow<'a, str>,
    /// Subject it arrived on.
    pub subject: Cow<'a, str>,
    /// Stream sequence it arrived with (to quarantine it if Postgres refuses it).
    pub stream_seq: u64,
}

/// Why a message is quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    /// The subject names no tenant.
    Subject,
    /// Not JSON.
    Malformed,
    /// JSON, but not a valid OCSF event.
    Invalid,
    /// Subject and body name different tenants.
    TenantMismatch,
    /// Postgres refused the row.
    Rejected,
}

impl RejectKind {
    /// Stored and metric label.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subject => "subject",
            Self::Malformed => "malformed",
            Self::Invalid => "invalid",
            Self::TenantMismatch => "tenant_mismatch",
            Self::Rejected => "rejected",
        }
    }
}

/// A message that will be terminated, ready for `quarantined_events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineRow {
    /// Derived from the stream position and bytes: a redelivery gets the same id.
    pub id: Uuid,
    /// Tenant named by the subject, if any.
    pub tenant_id: Option<TenantId>,
    /// Subject.
    pub subject: String,
    /// Kind.
    pub kind: RejectKind,
    /// Human-readable reason.
    pub reason: String,
    /// The body as received.
    pub raw: Vec<u8>,
    /// Stream.
    pub stream: String,
    /// Stream sequence.
    pub stream_seq: i64,
}

/// The outcome for one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded<'a> {
    /// Store it.
    Event(Box<EventRow<'a>>),
    /// Quarantine it and terminate the message.
    Quarantine(QuarantineRow),
}

/// Decides what to do with `msg`.
#[must_use]
pub fn decode<'a>(subjects: &Subjects, msg: &Incoming<'a>) -> Decoded<'a> {
    let Some(tenant) = subjects.tenant_of(msg.subject) else {
        return quarantine(
            msg,
            None,
            RejectKind::Subject,
            format!(
                "subject {} does not name a tenant (expected {}.events.<tenant_id>.<kind>)",
                msg.subject,
                subjects.prefix()
            ),
        );
    };
    let Ok(raw) = std::str::from_utf8(msg.payload) else {
        return quarantine(
            msg,
            Some(tenant),
            RejectKind::Malformed,
            "malformed JSON: not UTF-8".to_owned(),
        );
    };
    let event = match OcsfEventRef::parse(raw) {
        Ok(e) => e,
        Err(e) => {
            let (kind, what) = match e.classify() {
                serde_json::error::Category::Data => {
                    (RejectKind::Invalid, "not a valid OCSF event")
                }
                _ => (RejectKind::Malformed, "malformed JSON"),
            };
            return quarantine(msg, Some(tenant), kind, format!("{what}: {e}"));
        }
    };
    if let Err(e) = event.validate_for(tenant) {
        let kind = match e {
            OcsfError::TenantMismatch { .. } => RejectKind::TenantMismatch,
            OcsfError::Field(_) => RejectKind::Invalid,
        };
        return quarantine(msg, Some(tenant), kind, e.to_string());
    }
    // validate() bounds `time`, so this cannot fail; quarantine rather than panic anyway.
    let Some(time) = DateTime::<Utc>::from_timestamp_millis(event.time) else {
        return quarantine(
            msg,
            Some(tenant),
            RejectKind::Invalid,
            "invalid OCSF event: time out of range".to_owned(),
        );
    };
    let origin = match msg.origin.map(str::trim).filter(|o| !o.is_empty()) {
        Some(o) => Cow::Borrowed(o),
        None => event.metadata.product.name,
    };
    Decoded::Event(Box::new(EventRow {
        tenant_id: tenant,
        uid: event.metadata.uid,
        origin,
        class_uid: event.class_uid,
        category_uid: event.category_uid,
        activity_id: event.activity_id,
        type_uid: event.type_uid,
        severity_id: event.severity_id,
        status_id: event.status_id,
        time,
        message: event.message,
        correlation_uid: event.metadata.correlation_uid,
        observables: Cow::Borrowed(event.observables.map_or("[]", |r| r.get())),
        unmapped: Cow::Borrowed(event.unmapped.map_or("null", |r| r.get())),
        raw: Cow::Borrowed(raw),
        subject: Cow::Borrowed(msg.subject),
        stream_seq: msg.stream_seq,
    }))
}

/// Id of the quarantine row for a message: the same for every delivery of it.
#[must_use]
pub fn quarantine_id(msg: &Incoming<'_>) -> Uuid {
    let mut h = sha2::Sha256::new();
    h.update(msg.stream.as_bytes());
    h.update([0]);
    h.update(msg.stream_seq.to_be_bytes());
    h.update(msg.subject.as_bytes());
    h.update([0]);
    h.update(msg.payload);
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// A quarantine row for `msg`.
#[must_use]
pub fn quarantine<'a>(
    msg: &Incoming<'_>,
    tenant_id: Option<TenantId>,
    kind: RejectKind,
    reason: String,
) -> Decoded<'a> {
    Decoded::Quarantine(QuarantineRow {
        id: quarantine_id(msg),
        tenant_id,
        subject: msg.subject.to_owned(),
        kind,
        reason,
        raw: msg.payload.to_vec(),
        stream: msg.stream.to_owned(),
        stream_seq: i64::try_from(msg.stream_seq).unwrap_or(i64::MAX),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use sr_core::ocsf::{Activity, OcsfEvent, ResourceRef};

    fn event(tenant: TenantId) -> OcsfEvent {
        OcsfEvent::lifecycle(
            tenant,
            "sr-identity",
            Activity::Update,
            &ResourceRef {
                resource_type: "integration_source",
                id: "s-1".into(),
                name: "Armis",
            },
            "Integration source",
            "update",
            serde_json::json!({ "changed": ["endpoint"] }),
            Utc::now(),
        )
    }

    fn run<'a>(subject: &'a str, origin: Option<&'a str>, payload: &'a [u8]) -> Decoded<'a> {
        decode(
            &Subjects::new("sr"),
            &Incoming {
                subject,
                origin,
                payload,
                stream: "SR_EVENTS",
                stream_seq: 7,
            },
        )
    }

    fn rejected(d: Decoded<'_>) -> QuarantineRow {
        match d {
            Decoded::Quarantine(q) => q,
            Decoded::Event(e) => panic!("expected quarantine, stored {e:?}"),
        }
    }

    #[test]
    fn a_valid_event_becomes_a_row_with_every_column() {
        let t = TenantId::random();
        let e = event(t);
        let body = serde_json::to_vec(&e).unwrap();
        let subject = format!("sr.events.{t}.integration_source");
        let Decoded::Event(row) = run(&subject, None, &body) else {
            panic!("not stored")
        };
        assert_eq!(row.tenant_id, t);
        assert_eq!(row.uid, e.metadata.uid);
        assert_eq!(row.origin, "sr-identity");
        assert_eq!(
            (
                row.class_uid,
                row.category_uid,
                row.activity_id,
                row.type_uid
            ),
            (1008, 1, 3, 100_803)
        );
        assert_eq!((row.severity_id, row.status_id), (1, 1));
        assert_eq!(row.time.timestamp_millis(), e.time);
        assert_eq!(row.message, "Integration source 'Armis' updated");
        assert_eq!(
            row.correlation_uid.as_deref(),
            Some("integration_source:s-1")
        );
        let obs: serde_json::Value = serde_json::from_str(&row.observables).unwrap();
        assert_eq!(obs[2]["value"], "s-1");
        let unmapped: serde_json::Value = serde_json::from_str(&row.unmapped).unwrap();
        assert_eq!(unmapped["action"], "update");
        assert_eq!(row.raw.as_bytes(), body.as_slice());
        assert_eq!(row.subject, subject);
    }

    #[test]
    fn the_origin_header_wins_over_the_product_name() {
        let t = TenantId::random();
        let body = serde_json::to_vec(&event(t)).unwrap();
        let subject = format!("sr.events.{t}.x");
        for (header, expected) in [
            (Some("sr-gateway"), "sr-gateway"),
            (Some("  "), "sr-identity"),
            (None, "sr-identity"),
        ] {
            let Decoded::Event(row) = run(&subject, header, &body) else {
                panic!("not stored")
            };
            assert_eq!(row.origin, expected);
        }
    }

    #[test]
    fn bad_messages_are_quarantined_with_a_reason_naming_the_problem() {
        let t = TenantId::random();
        let other = TenantId::random();
        let subject = format!("sr.events.{t}.x");
        let good = serde_json::to_value(event(t)).unwrap();
        let with = |path: &str, v: serde_json::Value| {
            let mut e = good.clone();
            *e.pointer_mut(path).unwrap() = v;
            serde_json::to_vec(&e).unwrap()
        };
        let cases: Vec<(String, Vec<u8>, RejectKind, Vec<String>)> = vec![
            (
                subject.clone(),
                b"{not json".to_vec(),
                RejectKind::Malformed,
                vec!["malformed JSON".into()],
            ),
            (
                subject.clone(),
                vec![0xff, 0xfe],
                RejectKind::Malformed,
                vec!["malformed JSON".into()],
            ),
            (
                subject.clone(),
                b"[1,2]".to_vec(),
                RejectKind::Invalid,
                vec!["not a valid OCSF event".into()],
            ),
            (
                subject.clone(),
                with("/type_uid", 100_801.into()),
                RejectKind::Invalid,
                vec!["type_uid".into()],
            ),
            (
                subject.clone(),
                with("/category_uid", 2.into()),
                RejectKind::Invalid,
                vec!["category_uid".into()],
            ),
            (
                subject.clone(),
                with("/severity_id", 42.into()),
                RejectKind::Invalid,
                vec!["severity_id".into()],
            ),
            (
                subject.clone(),
                with("/time", (-5).into()),
                RejectKind::Invalid,
                vec!["time".into()],
            ),
            (
                subject.clone(),
                with("/metadata/version", "".into()),
                RejectKind::Invalid,
                vec!["metadata.version".into()],
            ),
            (
                subject.clone(),
                with("/metadata/product/name", "".into()),
                RejectKind::Invalid,
                vec!["metadata.product".into()],
            ),
            (
                subject.clone(),
                with("/tenant_id", "00000000-0000-0000-0000-000000000000".into()),
                RejectKind::Invalid,
                vec!["nil".into()],
            ),
            (
                subject.clone(),
                with("/tenant_id", other.to_string().into()),
                RejectKind::TenantMismatch,
                vec![t.to_string(), other.to_string()],
            ),
            (
                "sr.events.not-a-tenant.x".into(),
                serde_json::to_vec(&good).unwrap(),
                RejectKind::Subject,
                vec!["does not name a tenant".into()],
            ),
        ];
        for (subject, body, kind, needles) in cases {
            let q = rejected(run(&subject, None, &body));
            assert_eq!(q.kind, kind, "{}", q.reason);
            for n in &needles {
                assert!(q.reason.contains(n.as_str()), "{n:?} not in {:?}", q.reason);
            }
            assert_eq!(q.raw, body);
            assert_eq!(q.subject, subject);
            assert_eq!(q.stream_seq, 7);
            if kind != RejectKind::Subject {
                assert_eq!(q.tenant_id, Some(t));
            }
        }
    }

    #[test]
    fn a_redelivered_message_gets_the_same_quarantine_id_and_another_message_does_not() {
        let msg = |seq, payload: &'static [u8]| Incoming {
            subject: "sr.events.x",
            origin: None,
            payload,
            stream: "SR_EVENTS",
            stream_seq: seq,
        };
        assert_eq!(quarantine_id(&msg(1, b"x")), quarantine_id(&msg(1, b"x")));
        assert_ne!(quarantine_id(&msg(1, b"x")), quarantine_id(&msg(2, b"x")));
        assert_ne!(quarantine_id(&msg(1, b"x")), quarantine_id(&msg(1, b"y")));
    }
}
