//! Normalisation of the wire DeviceUpdate into an Observation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{at, ip};
use sr_reconcile::{
    DeviceUid, DeviceUpdateFields, Identifier, IdentifierKind, Observation, RejectReason,
    decode_updates,
};

fn parse_one(json: &str) -> Result<Observation, RejectReason> {
    let fields: DeviceUpdateFields = serde_json::from_str(json).unwrap();
    Observation::from_update(&fields)
}

#[test]
fn unknown_fields_are_ignored_and_missing_fields_default() {
    let o = parse_one(r#"{"ip":"10.0.0.1","timestamp":"2026-01-01T00:00:00Z","surprise":{"a":1}}"#)
        .unwrap();
    assert_eq!(o.ip, ip("10.0.0.1"));
    assert_eq!(o.partition, "default");
    assert_eq!(o.source, None);
    assert_eq!(o.is_available, None);
    assert!(o.metadata.is_empty());
}

#[test]
fn null_fields_are_treated_as_absent() {
    let o = parse_one(
        r#"{"ip":"10.0.0.1","timestamp":"2026-01-01T00:00:00Z","metadata":null,
            "hostname":null,"is_available":null,"mac":null}"#,
    )
    .unwrap();
    assert!(o.metadata.is_empty());
    assert_eq!(o.hostname, None);
    assert_eq!(o.is_available, None);
    assert_eq!(o.mac, None);
}

#[test]
fn rejected_updates_say_why() {
    let table = [
        (
            r#"{"timestamp":"2026-01-01T00:00:00Z"}"#,
            RejectReason::MissingIp,
        ),
        (
            r#"{"ip":"10.0.0.300","timestamp":"2026-01-01T00:00:00Z"}"#,
            RejectReason::InvalidIp("10.0.0.300".into()),
        ),
        (r#"{"ip":"10.0.0.1"}"#, RejectReason::MissingTimestamp),
        (
            r#"{"ip":"10.0.0.1","timestamp":"0001-01-01T00:00:00Z"}"#,
            RejectReason::MissingTimestamp,
        ),
        (
            r#"{"ip":"10.0.0.1","timestamp":"yesterday"}"#,
            RejectReason::InvalidTimestamp("yesterday".into()),
        ),
    ];
    for (json, want) in table {
        assert_eq!(parse_one(json).unwrap_err(), want, "{json}");
    }
}

#[test]
fn a_missing_timestamp_can_fall_back_to_the_receive_time() {
    let fields: DeviceUpdateFields = serde_json::from_str(r#"{"ip":"10.0.0.1"}"#).unwrap();
    let o = Observation::from_update_at(&fields, at(7)).unwrap();
    assert_eq!(o.timestamp, at(7));
}

#[test]
fn fields_are_normalised() {
    let o = parse_one(
        r#"{"device_id":" sr:8C1AB81A-BDF0-4417-AE9A-6678756238B7 ","ip":" ::ffff:10.0.0.1 ",
            "source":" armis ","agent_id":"","partition":"  ","hostname":"",
            "timestamp":"2026-01-01T01:00:00+01:00","mac":"aa-bb-cc-dd-ee-f0",
            "metadata":{"armis_device_id":" 12 ","netbox_device_id":"","query_label":"cams"},
            "is_available":false}"#,
    )
    .unwrap();
    assert_eq!(o.ip, ip("10.0.0.1"), "IPv4-mapped IPv6 becomes IPv4");
    assert_eq!(o.timestamp, at(0));
    assert_eq!(
        o.device_id,
        Some(DeviceUid::parse("sr:8c1ab81a-bdf0-4417-ae9a-6678756238b7").unwrap())
    );
    assert_eq!(o.source.as_deref(), Some("armis"));
    assert_eq!(o.agent_id, None);
    assert_eq!(o.partition, "default");
    assert_eq!(o.hostname, None);
    assert_eq!(o.is_available, Some(false));
    assert_eq!(
        o.identifiers(),
        vec![
            Identifier::new(IdentifierKind::ArmisDeviceId, "12").unwrap(),
            Identifier::new(IdentifierKind::Mac, "AABBCCDDEEF0").unwrap(),
        ]
    );
}

#[test]
fn legacy_device_ids_that_are_not_sr_uids_are_ignored() {
    let o = parse_one(
        r#"{"device_id":"default:10.0.0.1","ip":"10.0.0.1","timestamp":"2026-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    assert_eq!(o.device_id, None);
}

#[test]
fn integration_ids_need_a_type_other_than_armis_or_netbox() {
    let table = [
        (
            r#"{"integration_type":"jamf","integration_id":"5"}"#,
            Some("jamf:5"),
        ),
        (r#"{"integration_id":"5"}"#, None),
        (r#"{"integration_type":"armis","integration_id":"5"}"#, None),
        (
            r#"{"integration_type":"NetBox","integration_id":"5"}"#,
            None,
        ),
    ];
    for (meta, want) in table {
        let o = parse_one(&format!(
            r#"{{"ip":"10.0.0.1","timestamp":"2026-01-01T00:00:00Z","metadata":{meta}}}"#
        ))
        .unwrap();
        let got: Vec<String> = o
            .identifiers()
            .iter()
            .filter(|i| i.kind() == IdentifierKind::IntegrationId)
            .map(|i| i.value().to_owned())
            .collect();
        assert_eq!(
            got,
            want.into_iter().map(str::to_owned).collect::<Vec<_>>(),
            "{meta}"
        );
    }
}

#[test]
fn a_payload_decodes_element_by_element() {
    let payload = br#"[{"ip":"10.0.0.1"}, 42, {"ip":"10.0.0.2","metadata":{"a":"b"}}]"#;
    let decoded = decode_updates(payload).unwrap();
    assert_eq!(decoded.len(), 3);
    assert!(decoded[0].is_ok());
    assert!(matches!(decoded[1], Err(RejectReason::Malformed(_))));
    assert_eq!(
        decoded[2]
            .as_ref()
            .unwrap()
            .metadata
            .get("a")
            .map(String::as_str),
        Some("b")
    );
    assert!(decode_updates(b"{}").is_err());
    assert!(decode_updates(b"[]").unwrap().is_empty());
}

#[test]
fn taking_the_update_normalises_exactly_as_borrowing_it() {
    for json in [
        r#"{"ip":" 10.0.0.1 ","source":" armis ","agent_id":"a1","gateway_id":"  ",
            "hostname":"cam-1 ","partition":" p1","timestamp":"2026-01-01T00:00:00Z",
            "mac":"AA:BB:CC:DD:EE:F0","metadata":{"armis_device_id":" 12 ","x":""},
            "is_available":true}"#,
        r#"{"ip":"10.0.0.2","source":"sweep","hostname":"h","timestamp":""}"#,
        r#"{"ip":"10.0.0.300","timestamp":"2026-01-01T00:00:00Z"}"#,
    ] {
        let fields: DeviceUpdateFields = serde_json::from_str(json).unwrap();
        assert_eq!(
            Observation::from_owned_update_at(fields.clone(), at(3)),
            Observation::from_update_at(&fields, at(3)),
            "{json}"
        );
    }
    let fields: DeviceUpdateFields =
        serde_json::from_str(r#"{"ip":"10.0.0.1","hostname":" cam ","source":"armis"}"#).unwrap();
    let o = Observation::from_owned_update_at(fields, at(3)).unwrap();
    assert_eq!(o.hostname.as_deref(), Some("cam"));
    assert_eq!(o.source.as_deref(), Some("armis"));
    assert_eq!(o.timestamp, at(3));
}
