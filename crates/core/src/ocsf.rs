//! OCSF events as this product emits them: class 1008 (Event Log Activity) for lifecycle
//! changes of control-plane resources (CONTRACT §3), and their validation.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::TenantId;

/// OCSF schema version we emit.
pub const OCSF_VERSION: &str = "1.7.0";
/// Event Log Activity.
pub const CLASS_EVENT_LOG_ACTIVITY: i32 = 1008;
/// System Activity.
pub const CATEGORY_SYSTEM: i32 = 1;
/// Informational.
pub const SEVERITY_INFORMATIONAL: i32 = 1;
/// Success.
pub const STATUS_SUCCESS: i32 = 1;
/// Failure.
pub const STATUS_FAILURE: i32 = 2;
/// Medium severity.
pub const SEVERITY_MEDIUM: i32 = 3;
/// Authorize Session (Identity & Access Management).
pub const CLASS_AUTHORIZE_SESSION: i32 = 3003;
/// Product vendor.
pub const VENDOR_NAME: &str = "ServiceRadar";

/// `activity_id` values of class 1008.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    /// 1
    Create,
    /// 3
    Update,
    /// 4
    Delete,
}

impl Activity {
    /// The OCSF `activity_id`.
    #[must_use]
    pub fn id(self) -> i32 {
        match self {
            Self::Create => 1,
            Self::Update => 3,
            Self::Delete => 4,
        }
    }

    /// Past-tense verb for messages.
    #[must_use]
    pub fn verb(self) -> &'static str {
        match self {
            Self::Create => "created",
            Self::Update => "updated",
            Self::Delete => "deleted",
        }
    }
}

/// `metadata.product`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// Emitting component, e.g. `sr-identity`.
    pub name: String,
    /// Always [`VENDOR_NAME`].
    pub vendor_name: String,
}

/// `metadata`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// [`OCSF_VERSION`].
    pub version: String,
    /// Unique event id; the event store keeps one row per uid.
    pub uid: Uuid,
    /// Emitting product.
    pub product: Product,
    /// e.g. `integration_source:<id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_uid: Option<String>,
}

/// One observable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observable {
    /// Attribute path, e.g. `resource.uid`.
    pub name: String,
    /// OCSF observable type id (10 resource UID, 99 other).
    pub type_id: i32,
    /// The value.
    pub value: String,
}

/// An OCSF event with the fields we emit and the event store validates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OcsfEvent {
    /// Class.
    pub class_uid: i32,
    /// Category.
    pub category_uid: i32,
    /// Activity.
    pub activity_id: i32,
    /// `class_uid * 100 + activity_id`.
    pub type_uid: i64,
    /// Severity.
    pub severity_id: i32,
    /// Status.
    pub status_id: i32,
    /// Event time, milliseconds since the epoch (OCSF `timestamp_t`).
    pub time: i64,
    /// Human-readable summary.
    pub message: String,
    /// Metadata.
    pub metadata: Metadata,
    /// Observables.
    #[serde(default)]
    pub observables: Vec<Observable>,
    /// Product-specific fields.
    #[serde(default)]
    pub unmapped: serde_json::Value,
    /// Owning tenant.
    pub tenant_id: TenantId,
}

/// A control-plane resource whose lifecycle an event records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRef<'a> {
    /// e.g. `integration_source`, `sync_service`.
    pub resource_type: &'a str,
    /// Its id.
    pub id: String,
    /// Its display name.
    pub name: &'a str,
}

impl OcsfEvent {
    /// A class 1008 event for `activity` on `resource`; `label` is the message's noun phrase
    /// (`Integration source`), `action` the product action (`create`, `enable`, `status_change`…).
    #[must_use]
    #[allow(clippy::too_many_arguments)] // each argument is a distinct OCSF field; a builder would only rename them
    pub fn lifecycle(
        tenant_id: TenantId,
        product: &str,
        activity: Activity,
        resource: &ResourceRef<'_>,
        label: &str,
        action: &str,
        details: serde_json::Value,
        time: DateTime<Utc>,
    ) -> Self {
        let message = match action {
            "create" | "update" | "delete" => {
                format!("{label} '{}' {}", resource.name, activity.verb())
            }
            other => format!("{label} '{}' {}", resource.name, other.replace('_', " ")),
        };
        Self {
            class_uid: CLASS_EVENT_LOG_ACTIVITY,
            category_uid: CATEGORY_SYSTEM,
            activity_id: activity.id(),
            type_uid: i64::from(CLASS_EVENT_LOG_ACTIVITY) * 100 + i64::from(activity.id()),
            severity_id: SEVERITY_INFORMATIONAL,
            status_id: STATUS_SUCCESS,
            time: time.timestamp_millis(),
            message,
            metadata: Metadata {
                version: OCSF_VERSION.to_owned(),
                uid: Uuid::now_v7(),
                product: Product {
                    name: product.to_owned(),
                    vendor_name: VENDOR_NAME.to_owned(),
                },
                correlation_uid: Some(format!("{}:{}", resource.resource_type, resource.id)),
            },
            observables: vec![
                Observable {
                    name: "resource.type".into(),
                    type_id: 99,
                    value: resource.resource_type.to_owned(),
                },
                Observable {
                    name: "resource.name".into(),
                    type_id: 99,
                    value: resource.name.to_owned(),
                },
                Observable {
                    name: "resource.uid".into(),
                    type_id: 10,
                    value: resource.id.clone(),
                },
            ],
            unmapped: serde_json::json!({
                "resource_type": resource.resource_type,
                "resource_id": resource.id,
                "action": action,
                "details": details,
            }),
            tenant_id,
        }
    }

    /// A class 3003 (Authorize Session) failure: a caller was refused. `identity` names the
    /// certificate subject (never secrets), `operation` the RPC.
    #[must_use]
    pub fn authorization_denied(
        tenant_id: TenantId,
        product: &str,
        identity: &str,
        operation: &str,
        reason: &str,
        time: DateTime<Utc>,
    ) -> Self {
        Self {
            class_uid: CLASS_AUTHORIZE_SESSION,
            category_uid: CLASS_AUTHORIZE_SESSION / 1000,
            activity_id: 1,
            type_uid: i64::from(CLASS_AUTHORIZE_SESSION) * 100 + 1,
            severity_id: SEVERITY_MEDIUM,
            status_id: STATUS_FAILURE,
            time: time.timestamp_millis(),
            message: format!("{operation} refused for {identity}: {reason}"),
            metadata: Metadata {
                version: OCSF_VERSION.to_owned(),
                uid: Uuid::now_v7(),
                product: Product {
                    name: product.to_owned(),
                    vendor_name: VENDOR_NAME.to_owned(),
                },
                correlation_uid: Some(format!("identity:{identity}")),
            },
            observables: vec![Observable {
                name: "actor.user.name".into(),
                type_id: 4,
                value: identity.to_owned(),
            }],
            unmapped: serde_json::json!({ "operation": operation, "reason": reason, "identity": identity }),
            tenant_id,
        }
    }

    /// Checks the invariants the event store relies on.
    ///
    /// # Errors
    /// The first violated rule.
    pub fn validate(&self) -> Result<(), OcsfError> {
        let m = &self.metadata;
        Facts {
            class_uid: self.class_uid,
            category_uid: self.category_uid,
            activity_id: self.activity_id,
            type_uid: self.type_uid,
            severity_id: self.severity_id,
            status_id: self.status_id,
            time: self.time,
            version: &m.version,
            product_name: &m.product.name,
            vendor_name: &m.product.vendor_name,
            uid: m.uid,
        }
        .check()?;
        if self.has_nul() {
            return Err(NUL_ERROR);
        }
        Ok(())
    }

    /// [`Self::validate`], and that the event belongs to `expected`, the tenant named by the
    /// subject it travelled on.
    ///
    /// # Errors
    /// The first violated rule, or [`OcsfError::TenantMismatch`].
    pub fn validate_for(&self, expected: TenantId) -> Result<(), OcsfError> {
        self.validate()?;
        same_tenant(expected, self.tenant_id)
    }

    fn has_nul(&self) -> bool {
        fn in_value(v: &serde_json::Value) -> bool {
            match v {
                serde_json::Value::String(s) => s.contains('\0'),
                serde_json::Value::Array(a) => a.iter().any(in_value),
                serde_json::Value::Object(o) => {
                    o.iter().any(|(k, v)| k.contains('\0') || in_value(v))
                }
                _ => false,
            }
        }
        let m = &self.metadata;
        [
            self.message.as_str(),
            m.version.as_str(),
            m.product.name.as_str(),
            m.product.vendor_name.as_str(),
            m.correlation_uid.as_deref().unwrap_or_default(),
        ]
        .iter()
        .any(|s| s.contains('\0'))
            || self
                .observables
                .iter()
                .any(|o| o.name.contains('\0') || o.value.contains('\0'))
            || in_value(&self.unmapped)
    }
}

// Postgres text and jsonb cannot hold U+0000; such an event could never be stored.
const NUL_ERROR: OcsfError = OcsfError::Field("strings must not contain U+0000");

fn same_tenant(subject: TenantId, body: TenantId) -> Result<(), OcsfError> {
    if subject == body {
        Ok(())
    } else {
        Err(OcsfError::TenantMismatch { subject, body })
    }
}

/// The scalar facts every validation checks, whichever representation they come from.
struct Facts<'a> {
    class_uid: i32,
    category_uid: i32,
    activity_id: i32,
    type_uid: i64,
    severity_id: i32,
    status_id: i32,
    time: i64,
    version: &'a str,
    product_name: &'a str,
    vendor_name: &'a str,
    uid: Uuid,
}

impl Facts<'_> {
    fn check(&self) -> Result<(), OcsfError> {
        if self.class_uid <= 0 {
            return Err(OcsfError::Field("class_uid must be positive"));
        }
        if self.category_uid != self.class_uid / 1000 {
            return Err(OcsfError::Field("category_uid does not match class_uid"));
        }
        if !(0..=99).contains(&self.activity_id) {
            return Err(OcsfError::Field("activity_id out of range"));
        }
        if self.type_uid != i64::from(self.class_uid) * 100 + i64::from(self.activity_id) {
            return Err(OcsfError::Field(
                "type_uid must equal class_uid * 100 + activity_id",
            ));
        }
        if !(0..=6).contains(&self.severity_id) && self.severity_id != 99 {
            return Err(OcsfError::Field("severity_id out of range"));
        }
        if !(0..=2).contains(&self.status_id) && self.status_id != 99 {
            return Err(OcsfError::Field("status_id out of range"));
        }
        if self.time <= 0 || self.time > MAX_TIME_MS {
            return Err(OcsfError::Field(
                "time must be epoch milliseconds between 1970 and 9999",
            ));
        }
        if self.version.is_empty() {
            return Err(OcsfError::Field("metadata.version is required"));
        }
        if self.product_name.is_empty() || self.vendor_name.is_empty() {
            return Err(OcsfError::Field(
                "metadata.product name and vendor_name are required",
            ));
        }
        if self.uid.is_nil() {
            return Err(OcsfError::Field("metadata.uid must not be nil"));
        }
        Ok(())
    }
}

/// Whether JSON text holds an escaped U+0000 (`\u0000`) anywhere, keys included. JSON
/// strings can carry U+0000 only as that escape, so this is exact for valid JSON; an escaped
/// backslash followed by `u0000` (the literal text `\\u0000`) does not count.
#[must_use]
pub fn json_has_nul(json: &str) -> bool {
    json.match_indices("\\u0000").any(|(at, _)| {
        // The backslash starts an escape only if the run of backslashes it ends is odd.
        let run = json.as_bytes()[..=at]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        run % 2 == 1
    })
}

/// A zero-copy view of an event's JSON: accepts exactly what deserialising an [`OcsfEvent`]
/// accepts and validates the same rules, without building one (strings borrow from the
/// input; `observables` and `unmapped` stay JSON text). For consumers that store events as
/// they arrive.
#[derive(Debug, Clone, Deserialize)]
pub struct OcsfEventRef<'a> {
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
    /// Event time, milliseconds since the epoch.
    pub time: i64,
    /// Message.
    #[serde(borrow)]
    pub message: Cow<'a, str>,
    /// Metadata.
    #[serde(borrow)]
    pub metadata: MetadataRef<'a>,
    /// Observables as JSON text (`None` when absent).
    #[serde(default, borrow, deserialize_with = "present")]
    pub observables: Option<&'a RawValue>,
    /// `unmapped` as JSON text (`None` when absent).
    #[serde(default, borrow, deserialize_with = "present")]
    pub unmapped: Option<&'a RawValue>,
    /// Owning tenant.
    pub tenant_id: TenantId,
    #[serde(skip)]
    source: &'a str,
}

/// `metadata`, borrowed.
#[derive(Debug, Clone, Deserialize)]
pub struct MetadataRef<'a> {
    /// Version.
    #[serde(borrow)]
    pub version: Cow<'a, str>,
    /// Unique event id.
    pub uid: Uuid,
    /// Emitting product.
    #[serde(borrow)]
    pub product: ProductRef<'a>,
    /// Correlation uid.
    #[serde(default, borrow)]
    pub correlation_uid: Option<Cow<'a, str>>,
}

/// `metadata.product`, borrowed.
#[derive(Debug, Clone, Deserialize)]
pub struct ProductRef<'a> {
    /// Emitting component.
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// Vendor.
    #[serde(borrow)]
    pub vendor_name: Cow<'a, str>,
}

/// Shape check of one observable (mirrors [`Observable`]).
#[derive(Deserialize)]
#[allow(dead_code)] // read only to check the shape
struct ObservableRef<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    type_id: i32,
    #[serde(borrow)]
    value: Cow<'a, str>,
}

/// A present field, even `null`, is `Some` (so `"observables": null` is rejected as it is
/// for [`OcsfEvent`]); only an absent one is `None`.
fn present<'de, D>(d: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    <&RawValue>::deserialize(d).map(Some)
}

impl<'a> OcsfEventRef<'a> {
    /// Parses `json`.
    ///
    /// # Errors
    /// What deserialising an [`OcsfEvent`] from the same bytes would report: malformed JSON,
    /// a missing field or a value of the wrong type.
    pub fn parse(json: &'a str) -> Result<Self, serde_json::Error> {
        let mut event: Self = serde_json::from_str(json)?;
        if let Some(raw) = event.observables {
            serde_json::from_str::<Vec<ObservableRef<'_>>>(raw.get())?;
        }
        event.source = json;
        Ok(event)
    }

    /// The same rules as [`OcsfEvent::validate`].
    ///
    /// # Errors
    /// The first violated rule.
    pub fn validate(&self) -> Result<(), OcsfError> {
        let m = &self.metadata;
        Facts {
            class_uid: self.class_uid,
            category_uid: self.category_uid,
            activity_id: self.activity_id,
            type_uid: self.type_uid,
            severity_id: self.severity_id,
            status_id: self.status_id,
            time: self.time,
            version: &m.version,
            product_name: &m.product.name,
            vendor_name: &m.product.vendor_name,
            uid: m.uid,
        }
        .check()?;
        if json_has_nul(self.source) {
            return Err(NUL_ERROR);
        }
        Ok(())
    }

    /// The same rules as [`OcsfEvent::validate_for`].
    ///
    /// # Errors
    /// The first violated rule, or [`OcsfError::TenantMismatch`].
    pub fn validate_for(&self, expected: TenantId) -> Result<(), OcsfError> {
        self.validate()?;
        same_tenant(expected, self.tenant_id)
    }
}

/// Latest accepted event time: 9999-12-31T23:59:59.999Z in epoch milliseconds.
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// A rule an event breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcsfError {
    /// A field is missing or inconsistent.
    #[error("invalid OCSF event: {0}")]
    Field(&'static str),
    /// The body names another tenant than the subject it was published on.
    #[error(
        "tenant mismatch: the subject names tenant {subject} but the event's tenant_id is {body}"
    )]
    TenantMismatch {
        /// Tenant in the subject.
        subject: TenantId,
        /// `tenant_id` in the body.
        body: TenantId,
    },
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn event(activity: Activity) -> OcsfEvent {
        OcsfEvent::lifecycle(
            TenantId::random(),
            "sr-identity",
            activity,
            &ResourceRef {
                resource_type: "integration_source",
                id: "abc".into(),
                name: "Armis",
            },
            "Integration source",
            match activity {
                Activity::Create => "create",
                Activity::Update => "update",
                Activity::Delete => "delete",
            },
            serde_json::json!({}),
            Utc::now(),
        )
    }

    #[test]
    fn lifecycle_events_have_consistent_class_and_type() {
        for (activity, id) in [
            (Activity::Create, 1),
            (Activity::Update, 3),
            (Activity::Delete, 4),
        ] {
            let e = event(activity);
            assert_eq!(e.activity_id, id);
            assert_eq!(e.type_uid, 100_800 + i64::from(id));
            assert_eq!(e.category_uid, 1);
            assert_eq!(
                e.metadata.correlation_uid.as_deref(),
                Some("integration_source:abc")
            );
            e.validate().unwrap();
        }
        assert_eq!(
            event(Activity::Create).message,
            "Integration source 'Armis' created"
        );
    }

    #[test]
    fn authorization_failures_are_valid_iam_events() {
        let e = OcsfEvent::authorization_denied(
            TenantId::random(),
            "sr-gateway",
            "a.b.c.serviceradar",
            "StreamStatus",
            "tenant_id mismatch",
            Utc::now(),
        );
        e.validate().unwrap();
        assert_eq!(
            (e.class_uid, e.category_uid, e.type_uid, e.status_id),
            (3003, 3, 300_301, 2)
        );
    }

    #[test]
    fn inconsistent_events_fail_validation() {
        let mut e = event(Activity::Create);
        e.type_uid = 100_803;
        assert!(e.validate().is_err());
        let mut e = event(Activity::Create);
        e.category_uid = 2;
        assert!(e.validate().is_err());
        let mut e = event(Activity::Create);
        e.metadata.product.name.clear();
        assert!(e.validate().is_err());
        let mut e = event(Activity::Create);
        e.time = 0;
        assert!(e.validate().is_err());
        let mut e = event(Activity::Create);
        e.time = MAX_TIME_MS + 1;
        assert!(e.validate().is_err());
        let mut e = event(Activity::Create);
        e.status_id = 3;
        assert!(e.validate().is_err());
        let mut e = event(Activity::Create);
        e.severity_id = 98;
        assert!(e.validate().is_err());
        let mut e = event(Activity::Create);
        e.activity_id = 100;
        e.type_uid = 100_900;
        assert!(e.validate().is_err());
        let mut e = event(Activity::Create);
        e.unmapped = serde_json::json!({ "details": ["a\u{0}b"] });
        assert_eq!(
            e.validate(),
            Err(OcsfError::Field("strings must not contain U+0000"))
        );
        let mut e = event(Activity::Create);
        e.message.push('\0');
        assert!(e.validate().is_err());
    }

    #[test]
    fn the_borrowed_view_accepts_and_rejects_exactly_what_the_owned_event_does() {
        let t = TenantId::random();
        let good = serde_json::to_value(event(Activity::Update)).unwrap();
        let edit = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = good.clone();
            f(&mut v);
            serde_json::to_string(&v).unwrap()
        };
        let remove =
            |key: &'static str| edit(&move |v| drop(v.as_object_mut().unwrap().remove(key)));
        let set = |ptr: &'static str, x: serde_json::Value| {
            edit(&move |v| *v.pointer_mut(ptr).unwrap() = x.clone())
        };
        let corpus: Vec<String> = vec![
            serde_json::to_string(&good).unwrap(),
            remove("observables"),
            remove("unmapped"),
            remove("message"),
            remove("tenant_id"),
            set("/observables", serde_json::Value::Null),
            set("/observables", serde_json::json!([{ "name": "x" }])),
            set("/observables", serde_json::json!({ "name": "x" })),
            set("/unmapped", serde_json::Value::Null),
            set("/unmapped", serde_json::json!([1, "two"])),
            set("/unmapped", serde_json::json!({ "k": "a\u{0}b" })),
            set(
                "/unmapped",
                serde_json::json!({ "k": "literal \\u0000 text" }),
            ),
            set("/unmapped", serde_json::json!({ "a\u{0}": 1 })),
            set(
                "/message",
                serde_json::json!("tab\tquote\" unicode é \u{1F600}"),
            ),
            set("/message", serde_json::json!(7)),
            set(
                "/metadata/uid",
                serde_json::json!("00000000-0000-0000-0000-000000000000"),
            ),
            set("/metadata/uid", serde_json::json!("nope")),
            set("/metadata/correlation_uid", serde_json::Value::Null),
            set("/metadata/product/name", serde_json::json!("")),
            set(
                "/tenant_id",
                serde_json::json!("00000000-0000-0000-0000-000000000000"),
            ),
            set("/tenant_id", serde_json::json!(t.to_string())),
            set("/time", serde_json::json!(1.5)),
            set("/type_uid", serde_json::json!(100_809)),
            set("/severity_id", serde_json::json!(99)),
            r#"{"class_uid":1008,"class_uid":1008}"#.to_owned(),
            "[]".to_owned(),
            "{".to_owned(),
            String::new(),
        ];
        for json in &corpus {
            let owned =
                serde_json::from_str::<OcsfEvent>(json).map(|e| (e.validate(), e.tenant_id));
            let view = OcsfEventRef::parse(json).map(|e| (e.validate(), e.tenant_id));
            match (&owned, &view) {
                (Ok((a, ta)), Ok((b, tb))) => {
                    assert_eq!(a, b, "{json}");
                    assert_eq!(ta, tb, "{json}");
                }
                (Err(_), Err(_)) => {}
                _ => panic!("disagree on {json}: {owned:?} vs {view:?}"),
            }
        }
        let view = OcsfEventRef::parse(&corpus[0]).unwrap();
        assert_eq!(view.message, good["message"].as_str().unwrap());
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(view.observables.unwrap().get()).unwrap(),
            good["observables"]
        );
    }

    #[test]
    fn escaped_nul_is_found_anywhere_but_an_escaped_backslash_is_not_one() {
        assert!(json_has_nul(r#"{"a":"x\u0000"}"#));
        assert!(json_has_nul(r#"{"\u0000":1}"#));
        assert!(json_has_nul(r#"{"a":"\\\u0000"}"#));
        assert!(!json_has_nul(r#"{"a":"\\u0000"}"#));
        assert!(json_has_nul(r#"{"a":"\u00001"}"#));
        assert!(!json_has_nul(r#"{"a":"\u0001"}"#));
        assert!(!json_has_nul(""));
    }

    #[test]
    fn an_event_is_valid_only_for_its_own_tenant() {
        let e = event(Activity::Delete);
        e.validate_for(e.tenant_id).unwrap();
        let other = TenantId::random();
        let err = e.validate_for(other).unwrap_err();
        assert_eq!(
            err,
            OcsfError::TenantMismatch {
                subject: other,
                body: e.tenant_id
            }
        );
        let text = err.to_string();
        assert!(
            text.contains(&other.to_string()) && text.contains(&e.tenant_id.to_string()),
            "{text}"
        );
    }
}
