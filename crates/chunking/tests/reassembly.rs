//! Stream reassembly and the stream rules on the receiver side.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use sr_chunking::{
    ChunkBuilder, ChunkLimits, DEFAULT_MAX_CHUNKS, DEFAULT_MAX_ELEMENTS, DEFAULT_MAX_SERVICES,
    DEFAULT_MAX_TOTAL_BYTES, IncomingChunk, LimitsError, Reassembler, ReassemblyLimits,
    StreamError,
};

fn chunk(agent: &str, index: i32, total: i32, is_final: bool, payloads: &[&str]) -> IncomingChunk {
    IncomingChunk {
        agent_id: agent.to_owned(),
        chunk_index: index,
        total_chunks: total,
        is_final,
        payloads: payloads.iter().map(|p| p.as_bytes().to_vec()).collect(),
    }
}

fn c(index: i32, total: i32, is_final: bool, payload: &str) -> IncomingChunk {
    chunk("agent-1", index, total, is_final, &[payload])
}

fn raw_elements(reassembler: Reassembler) -> Vec<String> {
    reassembler
        .finish()
        .unwrap()
        .elements()
        .iter()
        .map(|element| std::str::from_utf8(element).unwrap().to_owned())
        .collect()
}

#[test]
fn a_well_formed_stream_yields_its_elements_in_order_with_counts() {
    let mut reassembler = Reassembler::new(ReassemblyLimits::default());
    let chunks = [
        c(0, 3, false, r#"[{"ip":"10.0.0.1"},{"ip":"10.0.0.2"}]"#),
        chunk("agent-1", 1, 3, false, &[r#"[{"ip":"10.0.0.3"}]"#, "[]"]),
        c(2, 3, true, r#"[{"ip":"10.0.0.4"}]"#),
    ];
    let expected_bytes: usize = chunks
        .iter()
        .flat_map(|chunk| chunk.payloads.iter())
        .map(Vec::len)
        .sum();
    for chunk in chunks {
        assert!(!reassembler.is_complete());
        reassembler.accept(chunk).unwrap();
    }
    assert!(reassembler.is_complete());
    assert_eq!(reassembler.chunks_received(), 3);

    let reassembled = reassembler.finish().unwrap();
    assert_eq!(reassembled.agent_id(), "agent-1");
    assert_eq!(reassembled.chunk_count(), 3);
    assert_eq!(reassembled.service_count(), 4);
    assert_eq!(reassembled.element_count(), 4);
    assert_eq!(reassembled.total_bytes(), expected_bytes);
    assert!(!reassembled.is_empty());
    let ips: Vec<&str> = reassembled
        .elements()
        .iter()
        .map(|element| std::str::from_utf8(element).unwrap())
        .collect();
    assert_eq!(
        ips,
        vec![
            r#"{"ip":"10.0.0.1"}"#,
            r#"{"ip":"10.0.0.2"}"#,
            r#"{"ip":"10.0.0.3"}"#,
            r#"{"ip":"10.0.0.4"}"#,
        ]
    );
}

#[test]
fn an_empty_result_is_one_final_empty_array_with_zero_elements() {
    let mut reassembler = Reassembler::new(ReassemblyLimits::default());
    reassembler.accept(c(0, 1, true, "[]")).unwrap();
    let reassembled = reassembler.finish().unwrap();
    assert!(reassembled.is_empty());
    assert_eq!(reassembled.element_count(), 0);
    assert_eq!(reassembled.total_bytes(), 2);
    assert_eq!(reassembled.chunk_count(), 1);
}

#[test]
fn elements_keep_their_exact_bytes_and_surrounding_whitespace_is_allowed() {
    let mut reassembler = Reassembler::new(ReassemblyLimits::default());
    reassembler
        .accept(c(0, 1, true, " \n[ {\"a\" : 1} ,\t2 , \"x\" ]\r\n"))
        .unwrap();
    assert_eq!(raw_elements(reassembler), vec!["{\"a\" : 1}", "2", "\"x\""]);
}

enum Expect {
    Message(&'static str),
    Prefix(&'static str),
}

struct Case {
    name: &'static str,
    limits: ReassemblyLimits,
    chunks: Vec<IncomingChunk>,
    expect: Expect,
    resource_exhausted: bool,
}

fn limits(bytes: usize, services: usize, chunks: usize, elements: usize) -> ReassemblyLimits {
    ReassemblyLimits::new(bytes, services, chunks, elements).unwrap()
}

fn rejected_cases() -> Vec<Case> {
    let default = ReassemblyLimits::default();
    let case = |name, chunks, expect| Case {
        name,
        limits: default,
        chunks,
        expect,
        resource_exhausted: false,
    };
    vec![
        case(
            "gap",
            vec![c(0, 5, false, "[]"), c(2, 5, false, "[]")],
            Expect::Message("chunk index gap: expected 1, got 2"),
        ),
        case(
            "first chunk not zero",
            vec![c(3, 5, false, "[]")],
            Expect::Message("chunk index gap: expected 0, got 3"),
        ),
        case(
            "repeated index",
            vec![
                c(0, 3, false, "[1]"),
                c(1, 3, false, "[2]"),
                c(1, 3, false, "[2]"),
            ],
            Expect::Message("chunk index 1 repeated: expected 2"),
        ),
        case(
            "changed totals",
            vec![c(0, 3, false, "[]"), c(1, 4, false, "[]")],
            Expect::Message("total_chunks changed mid-stream: expected 3, got 4"),
        ),
        case(
            "changed agent id",
            vec![
                chunk("agent-a", 0, 2, false, &["[]"]),
                chunk("agent-b", 1, 2, true, &["[]"]),
            ],
            Expect::Message(r#"agent_id changed mid-stream: expected "agent-a", got "agent-b""#),
        ),
        case(
            "final flag on a non-last index",
            vec![c(0, 3, false, "[]"), c(1, 3, true, "[]")],
            Expect::Message("is_final set on chunk 1, but the final chunk is 2"),
        ),
        case(
            "last index without final flag",
            vec![c(0, 2, false, "[]"), c(1, 2, false, "[]")],
            Expect::Message("chunk 1 is the last of the stream but is_final is not set"),
        ),
        case(
            "chunk after final",
            vec![c(0, 1, true, "[]"), c(1, 1, true, "[]")],
            Expect::Message("chunk 1 arrived after the final chunk"),
        ),
        case(
            "total zero",
            vec![c(0, 0, true, "[]")],
            Expect::Message("total_chunks must be greater than 0, got 0"),
        ),
        case(
            "total negative",
            vec![c(0, -1, true, "[]")],
            Expect::Message("total_chunks must be greater than 0, got -1"),
        ),
        case(
            "negative index",
            vec![c(-1, 2, false, "[]")],
            Expect::Message("chunk_index must not be negative, got -1"),
        ),
        case(
            "invalid json",
            vec![c(0, 1, true, r#"[{"a":1},"#)],
            Expect::Prefix("chunk 0 payload 0 is not valid JSON: "),
        ),
        case(
            "trailing bytes after the array",
            vec![c(0, 1, true, "[1] x")],
            Expect::Prefix("chunk 0 payload 0 is not valid JSON: "),
        ),
        case(
            "empty payload",
            vec![c(0, 1, true, "")],
            Expect::Prefix("chunk 0 payload 0 is not valid JSON: "),
        ),
        case(
            "invalid json that does not start like an array",
            vec![c(0, 1, true, "{oops")],
            Expect::Prefix("chunk 0 payload 0 is not valid JSON: "),
        ),
        case(
            "invalid second payload of a later chunk",
            vec![
                c(0, 2, false, "[]"),
                chunk("agent-1", 1, 2, true, &["[1]", "[1"]),
            ],
            Expect::Prefix("chunk 1 payload 1 is not valid JSON: "),
        ),
        case(
            "object instead of array",
            vec![c(0, 1, true, r#" {"devices":[]}"#)],
            Expect::Message("chunk 0 payload 0 must be a JSON array, found an object"),
        ),
        case(
            "string instead of array",
            vec![c(0, 1, true, r#""[]""#)],
            Expect::Message("chunk 0 payload 0 must be a JSON array, found a string"),
        ),
        case(
            "number instead of array",
            vec![c(0, 1, true, "-1.5")],
            Expect::Message("chunk 0 payload 0 must be a JSON array, found a number"),
        ),
        case(
            "null instead of array",
            vec![c(0, 1, true, "null")],
            Expect::Message("chunk 0 payload 0 must be a JSON array, found null"),
        ),
        Case {
            name: "oversize single chunk",
            limits: limits(10, 10, 10, 10),
            chunks: vec![c(0, 1, true, "[1,2,3,456]")],
            expect: Expect::Message(
                "stream payload exceeds the limit of 10 bytes (11 bytes received)",
            ),
            resource_exhausted: true,
        },
        Case {
            name: "oversize across chunks",
            limits: limits(10, 10, 10, 10),
            chunks: vec![c(0, 2, false, "[1,2]"), c(1, 2, true, "[3,45]")],
            expect: Expect::Message(
                "stream payload exceeds the limit of 10 bytes (11 bytes received)",
            ),
            resource_exhausted: true,
        },
        Case {
            name: "too many elements",
            limits: limits(1000, 10, 10, 3),
            chunks: vec![c(0, 2, false, "[1,2]"), c(1, 2, true, "[3,4]")],
            expect: Expect::Message("stream carries more than 3 devices"),
            resource_exhausted: true,
        },
        Case {
            name: "too many services",
            limits: limits(1000, 2, 10, 10),
            chunks: vec![chunk("agent-1", 0, 1, true, &["[]", "[]", "[]"])],
            expect: Expect::Message("stream carries more than 2 services"),
            resource_exhausted: false,
        },
        Case {
            name: "too many chunks announced",
            limits: limits(1000, 10, 5, 10),
            chunks: vec![c(0, 6, false, "[]")],
            expect: Expect::Message("total_chunks 6 exceeds the limit of 5 chunks per stream"),
            resource_exhausted: false,
        },
    ]
}

#[test]
fn streams_breaking_a_rule_are_rejected_with_a_precise_message() {
    for case in rejected_cases() {
        let mut reassembler = Reassembler::new(case.limits);
        let mut chunks = case.chunks;
        let last = chunks.pop().unwrap();
        for chunk in chunks {
            reassembler
                .accept(chunk)
                .unwrap_or_else(|error| panic!("{}: early chunk rejected: {error}", case.name));
        }
        let error = reassembler
            .accept(last)
            .err()
            .unwrap_or_else(|| panic!("{}: last chunk accepted", case.name));
        let message = error.to_string();
        match case.expect {
            Expect::Message(expected) => assert_eq!(message, expected, "{}", case.name),
            Expect::Prefix(prefix) => assert!(
                message.starts_with(prefix) && message.len() > prefix.len(),
                "{}: {message}",
                case.name
            ),
        }
        assert_eq!(
            error.is_resource_exhausted(),
            case.resource_exhausted,
            "{}",
            case.name
        );
    }
}

#[test]
fn a_stream_that_ends_without_its_final_chunk_is_rejected() {
    let mut reassembler = Reassembler::new(ReassemblyLimits::default());
    reassembler.accept(c(0, 3, false, "[1]")).unwrap();
    reassembler.accept(c(1, 3, false, "[2]")).unwrap();
    let error = reassembler.finish().unwrap_err();
    assert!(matches!(
        error,
        StreamError::MissingFinal {
            received: 2,
            total: 3
        }
    ));
    assert_eq!(
        error.to_string(),
        "stream ended after 2 of 3 chunks without the final chunk"
    );
    assert!(!error.is_resource_exhausted());
}

#[test]
fn a_stream_with_no_chunk_at_all_is_rejected() {
    let error = Reassembler::new(ReassemblyLimits::default())
        .finish()
        .unwrap_err();
    assert!(matches!(error, StreamError::EmptyStream));
    assert_eq!(error.to_string(), "stream ended before any chunk arrived");
}

#[test]
fn error_variants_carry_the_numbers_of_the_message() {
    let mut reassembler = Reassembler::new(ReassemblyLimits::default());
    reassembler.accept(c(0, 9, false, "[]")).unwrap();
    let error = reassembler.accept(c(5, 9, false, "[]")).unwrap_err();
    assert!(matches!(
        error,
        StreamError::ChunkIndexGap {
            expected: 1,
            got: 5
        }
    ));
}

#[test]
fn a_rejected_chunk_leaves_the_reassembler_unchanged() {
    let mut reassembler = Reassembler::new(limits(1000, 10, 10, 100));
    reassembler.accept(c(0, 2, false, "[1,2]")).unwrap();
    // First payload parses, second does not: none of the chunk's elements may stay.
    let error = reassembler
        .accept(chunk("agent-1", 1, 2, true, &["[3,4]", "[5,"]))
        .unwrap_err();
    assert!(matches!(
        error,
        StreamError::InvalidJson {
            chunk_index: 1,
            payload_index: 1,
            ..
        }
    ));
    assert_eq!(reassembler.chunks_received(), 1);
    assert!(!reassembler.is_complete());
    reassembler.accept(c(1, 2, true, "[6]")).unwrap();
    let reassembled = reassembler.finish().unwrap();
    assert_eq!(reassembled.service_count(), 2);
    assert_eq!(reassembled.total_bytes(), "[1,2]".len() + "[6]".len());
    let elements: Vec<&str> = reassembled
        .elements()
        .iter()
        .map(|e| std::str::from_utf8(e).unwrap())
        .collect();
    assert_eq!(elements, vec!["1", "2", "6"]);
}

#[test]
fn the_element_limit_counts_across_chunks_and_allows_exactly_the_limit() {
    let mut reassembler = Reassembler::new(limits(1000, 10, 10, 4));
    reassembler.accept(c(0, 2, false, "[1,2]")).unwrap();
    reassembler.accept(c(1, 2, true, "[3,4]")).unwrap();
    assert_eq!(reassembler.finish().unwrap().element_count(), 4);
}

#[test]
fn the_byte_limit_allows_exactly_the_limit() {
    let mut reassembler = Reassembler::new(limits(10, 10, 10, 10));
    reassembler.accept(c(0, 2, false, "[1,2]")).unwrap();
    reassembler.accept(c(1, 2, true, "[3,4]")).unwrap();
    assert_eq!(reassembler.finish().unwrap().total_bytes(), 10);
}

#[test]
fn a_long_agent_id_is_clipped_in_the_error_message() {
    let long_a = "a".repeat(10_000);
    let long_b = format!("{}é", "b".repeat(63));
    let mut reassembler = Reassembler::new(ReassemblyLimits::default());
    reassembler
        .accept(chunk(&long_a, 0, 2, false, &["[]"]))
        .unwrap();
    let error = reassembler
        .accept(chunk(&long_b, 1, 2, true, &["[]"]))
        .unwrap_err();
    let message = error.to_string();
    assert_eq!(
        message,
        format!(
            "agent_id changed mid-stream: expected \"{}\", got \"{}\"",
            "a".repeat(64),
            "b".repeat(63)
        )
    );
}

#[test]
fn reassembly_limits_are_validated() {
    assert_eq!(
        ReassemblyLimits::default(),
        ReassemblyLimits::new(64 * 1024 * 1024, 5000, 5000, 1_000_000).unwrap()
    );
    let defaults = ReassemblyLimits::default();
    assert_eq!(defaults.max_total_bytes(), DEFAULT_MAX_TOTAL_BYTES);
    assert_eq!(defaults.max_services(), DEFAULT_MAX_SERVICES);
    assert_eq!(defaults.max_chunks(), DEFAULT_MAX_CHUNKS);
    assert_eq!(defaults.max_elements(), DEFAULT_MAX_ELEMENTS);

    let cases = [
        ((1, 1, 1, 1), "max_total_bytes", 1, 2),
        ((2, 0, 1, 1), "max_services", 0, 1),
        ((2, 1, 0, 1), "max_chunks", 0, 1),
        ((2, 1, 1, 0), "max_elements", 0, 1),
    ];
    for ((bytes, services, chunks, elements), name, value, min) in cases {
        assert_eq!(
            ReassemblyLimits::new(bytes, services, chunks, elements),
            Err(LimitsError::BelowMinimum { name, value, min }),
            "{name}"
        );
    }
    assert!(ReassemblyLimits::new(2, 1, 1, 1).is_ok());
}

#[test]
fn the_content_stream_id_ignores_chunking_but_not_devices() {
    let devices: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"ip":"10.0.0.{i}"}}"#))
        .collect();
    let id_for = |devices: &[String], limits: ChunkLimits| {
        let mut builder = ChunkBuilder::new(limits);
        for device in devices {
            builder.push_serialized(device.as_bytes()).unwrap();
        }
        let mut reassembler = Reassembler::new(ReassemblyLimits::default());
        for chunk in builder.finish_chunks() {
            reassembler
                .accept(IncomingChunk {
                    agent_id: "agent-1".to_owned(),
                    chunk_index: chunk.index,
                    total_chunks: chunk.total,
                    is_final: chunk.is_final,
                    payloads: vec![chunk.payload],
                })
                .unwrap();
        }
        reassembler
            .finish()
            .unwrap()
            .content_stream_id("spiffe://sr/sync", "tenant-a")
    };
    let one_chunk = id_for(&devices, ChunkLimits::default());
    let many_chunks = id_for(&devices, ChunkLimits::new(64, 3).unwrap());
    assert_eq!(one_chunk, many_chunks);
    assert_ne!(one_chunk, id_for(&devices[1..], ChunkLimits::default()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn builder_output_fed_to_the_reassembler_reproduces_the_input_elements(
        devices in prop::collection::vec(
            prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                "[a-z0-9 ]{0,40}".prop_map(|s| serde_json::to_string(&s).unwrap()),
                ("[a-z]{1,8}", any::<u32>())
                    .prop_map(|(k, v)| format!(r#"{{"{k}":{v},"ip":"10.0.0.1"}}"#)),
            ],
            0..150,
        ),
        max_bytes in 2usize..600,
        max_devices in 1usize..20,
    ) {
        let mut builder = ChunkBuilder::new(ChunkLimits::new(max_bytes, max_devices).unwrap());
        for device in &devices {
            builder.push_serialized(device.as_bytes()).unwrap();
        }
        let mut reassembler = Reassembler::new(ReassemblyLimits::default());
        for chunk in builder.finish_chunks() {
            reassembler.accept(IncomingChunk {
                agent_id: "agent-1".to_owned(),
                chunk_index: chunk.index,
                total_chunks: chunk.total,
                is_final: chunk.is_final,
                payloads: vec![chunk.payload],
            }).unwrap();
        }
        prop_assert!(reassembler.is_complete());
        let reassembled = reassembler.finish().unwrap();
        prop_assert_eq!(reassembled.element_count(), devices.len());
        let elements: Vec<String> = reassembled
            .into_elements()
            .into_iter()
            .map(|element| element.get().to_owned())
            .collect();
        prop_assert_eq!(elements, devices);
    }

    #[test]
    fn swapping_two_adjacent_chunks_of_a_valid_stream_is_rejected(
        total in 2i32..7,
        swap in 0usize..6,
    ) {
        let swap = swap % usize::try_from(total - 1).unwrap();
        let mut chunks: Vec<IncomingChunk> =
            (0..total).map(|i| c(i, total, i == total - 1, "[1]")).collect();
        chunks.swap(swap, swap + 1);
        let mut reassembler = Reassembler::new(ReassemblyLimits::default());
        let outcome = chunks
            .into_iter()
            .try_for_each(|chunk| reassembler.accept(chunk))
            .and_then(|()| reassembler.finish().map(|_| ()));
        prop_assert!(outcome.is_err());
    }
}

#[test]
fn deeply_nested_elements_are_kept_raw_without_overflowing_the_stack() {
    // Raw capture skips over nested values iteratively; a 100 000-level element neither
    // crashes the receiver nor gets parsed into anything.
    let element = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let mut reassembler = Reassembler::new(ReassemblyLimits::default());
    reassembler
        .accept(c(0, 1, true, &format!("[{element},1]")))
        .unwrap();
    assert_eq!(raw_elements(reassembler), vec![element, "1".to_owned()]);
}

#[test]
fn a_chunk_without_results_payloads_still_takes_its_place_in_the_sequence() {
    let mut reassembler = Reassembler::new(ReassemblyLimits::default());
    reassembler.accept(c(0, 3, false, "[1]")).unwrap();
    reassembler
        .accept(chunk("agent-1", 1, 3, false, &[]))
        .unwrap();
    reassembler.accept(c(2, 3, true, "[2]")).unwrap();
    let reassembled = reassembler.finish().unwrap();
    assert_eq!(reassembled.service_count(), 2);
    assert_eq!(reassembled.element_count(), 2);
}
