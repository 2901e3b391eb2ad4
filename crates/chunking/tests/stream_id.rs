//! Stream ids and batch message ids for deduplication.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use proptest::prelude::*;
use sr_chunking::{batch_msg_id, fallback_stream_id};

fn stream_id(identity: &str, tenant: &str, payloads: &[&str]) -> String {
    fallback_stream_id(identity, tenant, payloads.iter().map(|p| p.as_bytes()))
}

fn is_short_lower_hex(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[test]
fn the_fallback_stream_id_is_deterministic_lower_hex() {
    let first = stream_id("spiffe://sr/sync", "tenant-a", &["[1]", "[2]"]);
    let second = stream_id("spiffe://sr/sync", "tenant-a", &["[1]", "[2]"]);
    assert_eq!(first, second);
    assert!(is_short_lower_hex(&first), "{first}");
}

#[test]
fn the_fallback_stream_id_changes_when_any_field_changes() {
    let variants = [
        stream_id("sync-1", "tenant-a", &["[1]", "[2]"]),
        stream_id("sync-2", "tenant-a", &["[1]", "[2]"]),
        stream_id("sync-1", "tenant-b", &["[1]", "[2]"]),
        stream_id("sync-1", "tenant-a", &["[1]", "[3]"]),
        stream_id("sync-1", "tenant-a", &["[2]", "[1]"]),
        stream_id("sync-1", "tenant-a", &["[1]"]),
        stream_id("sync-1", "tenant-a", &["[1]", "[2]", "[]"]),
        stream_id("sync-1", "tenant-a", &[]),
        stream_id("", "", &[]),
    ];
    let distinct: HashSet<&String> = variants.iter().collect();
    assert_eq!(distinct.len(), variants.len());
}

#[test]
fn field_boundaries_are_unambiguous() {
    let pairs = [
        (stream_id("ab", "c", &[]), stream_id("a", "bc", &[])),
        (
            stream_id("i", "t", &["ab", "c"]),
            stream_id("i", "t", &["a", "bc"]),
        ),
        (stream_id("a", "", &["b"]), stream_id("a", "b", &[])),
        (stream_id("i", "t", &[""]), stream_id("i", "t", &[])),
        (stream_id("i", "t", &["", ""]), stream_id("i", "t", &[""])),
        (stream_id("", "ab", &[]), stream_id("ab", "", &[])),
    ];
    for (left, right) in pairs {
        assert_ne!(left, right);
    }
}

#[test]
fn the_batch_msg_id_is_deterministic_short_and_free_of_spaces() {
    let long_stream_id = "x y ".repeat(5000);
    for stream in [
        "0190f5c2-7d1e-7a8b-9c3d-2e4f6a8b0c1d",
        long_stream_id.as_str(),
        "",
    ] {
        let id = batch_msg_id("spiffe://sr/sync", stream, 3);
        assert_eq!(id, batch_msg_id("spiffe://sr/sync", stream, 3));
        assert!(is_short_lower_hex(&id), "{id}");
        assert!(id.len() < 128 && !id.contains(' '));
    }
}

#[test]
fn the_batch_msg_id_changes_when_any_field_changes() {
    let variants = [
        batch_msg_id("sync-1", "stream-1", 0),
        batch_msg_id("sync-2", "stream-1", 0),
        batch_msg_id("sync-1", "stream-2", 0),
        batch_msg_id("sync-1", "stream-1", 1),
        batch_msg_id("sync-1", "stream-1", usize::MAX),
        // Field boundaries: ("ab", "c") against ("a", "bc").
        batch_msg_id("sync-1a", "bstream", 0),
        batch_msg_id("sync-1", "abstream", 0),
        batch_msg_id("sync-1ab", "stream", 0),
    ];
    let distinct: HashSet<&String> = variants.iter().collect();
    assert_eq!(distinct.len(), variants.len());
}

#[test]
fn stream_ids_and_batch_msg_ids_never_share_a_value() {
    // Different domain tags: the same field bytes give different digests.
    assert_ne!(stream_id("a", "b", &[]), batch_msg_id("a", "b", 0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn moving_a_split_point_between_fields_changes_the_stream_id(
        text in "[a-z]{2,12}",
        split in 1usize..11,
    ) {
        let split = split.min(text.len() - 1);
        let (left, right) = text.split_at(split);
        let joined = stream_id("i", "t", &[left, right]);
        prop_assert_ne!(&joined, &stream_id("i", "t", &[&text]));
        prop_assert_ne!(stream_id(left, right, &[]), stream_id(&text, "", &[]));
        if split + 1 < text.len() {
            let (left2, right2) = text.split_at(split + 1);
            prop_assert_ne!(&joined, &stream_id("i", "t", &[left2, right2]));
            prop_assert_ne!(batch_msg_id(left, right, 0), batch_msg_id(left2, right2, 0));
        }
    }
}
