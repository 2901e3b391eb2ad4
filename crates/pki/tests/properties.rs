#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property tests: valid names round-trip exactly; arbitrary input never panics and anything
//! accepted is canonical.

use proptest::prelude::*;
use sr_pki::names::{self, parse_cn};
use sr_pki::{ComponentName, ComponentType, PeerCertificate, SpiffeId};

fn part() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,63}"
}

fn slug() -> impl Strategy<Value = String> {
    "[a-z0-9-]{1,63}"
}

fn trust_domain() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{1,40}"
}

fn component_name() -> impl Strategy<Value = ComponentName> {
    (part(), part(), slug()).prop_map(|(component_id, partition, tenant_slug)| ComponentName {
        component_id,
        partition,
        tenant_slug,
    })
}

fn component_type() -> impl Strategy<Value = ComponentType> {
    proptest::sample::select(ComponentType::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_valid_name_survives_a_round_trip_through_its_common_name(name in component_name()) {
        let cn = name.to_cn();
        prop_assert_eq!(parse_cn(&cn), Ok(name.clone()));
        prop_assert!(cn.ends_with(".serviceradar"));
        prop_assert_eq!(cn.split('.').count(), 4);
    }

    #[test]
    fn every_valid_spiffe_id_survives_a_round_trip_through_its_uri(
        td in trust_domain(),
        ty in component_type(),
        name in component_name(),
    ) {
        let id = SpiffeId::for_component(td, ty, &name).unwrap();
        prop_assert_eq!(SpiffeId::parse(&id.to_uri()), Ok(id.clone()));
        prop_assert_eq!(id.component_name(), name);
    }

    #[test]
    fn arbitrary_common_names_never_panic_and_accepted_ones_are_canonical(cn in any::<String>()) {
        if let Ok(name) = parse_cn(&cn) {
            prop_assert_eq!(name.to_cn(), cn);
        }
    }

    #[test]
    fn near_miss_common_names_never_panic_and_accepted_ones_are_canonical(
        cn in "[A-Za-z0-9_.\\- ]{0,80}(\\.serviceradar)?",
    ) {
        if let Ok(name) = parse_cn(&cn) {
            prop_assert_eq!(name.to_cn(), cn);
        }
    }

    #[test]
    fn one_character_edits_of_a_valid_common_name_are_accepted_only_in_canonical_form(
        name in component_name(),
        position in any::<proptest::sample::Index>(),
        replacement in proptest::char::any(),
    ) {
        let cn = name.to_cn();
        let at = position.index(cn.len());
        let mut edited: String = cn[..at].to_owned();
        edited.push(replacement);
        edited.push_str(&cn[at + 1..]);
        match parse_cn(&edited) {
            Ok(parsed) => prop_assert_eq!(parsed.to_cn(), edited),
            // Every dot the edit adds or removes changes the part count.
            Err(e) if (replacement == '.') != (cn.as_bytes()[at] == b'.') => {
                prop_assert!(
                    matches!(e, sr_pki::NameError::WrongPartCount { .. }),
                    "dot edit gave {:?}", e
                );
            }
            Err(_) => {}
        }
    }

    #[test]
    fn arbitrary_spiffe_uris_never_panic_and_accepted_ones_are_canonical(
        uri in "(spiffe://)?[a-zA-Z0-9./%?#_-]{0,80}",
    ) {
        if let Ok(id) = SpiffeId::parse(&uri) {
            prop_assert_eq!(id.to_uri(), uri);
        }
    }

    #[test]
    fn slug_validation_agrees_with_the_contract_pattern(slug in any::<String>()) {
        let by_pattern = !slug.is_empty()
            && slug.len() <= 63
            && slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        prop_assert_eq!(names::validate_slug(&slug).is_ok(), by_pattern);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_peer_certificate_reader(
        der in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        prop_assert!(PeerCertificate::from_der(&der).is_err());
    }
}
