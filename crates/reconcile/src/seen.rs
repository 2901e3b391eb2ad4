//! What a scope's stored rows can hold: a filter over every key (identifier, IP, device uid)
//! ever written to the scope, kept by the one writer that has seen every write since the scope
//! was empty. A key the filter has never seen is held by no stored device, so the stored state a
//! batch needs ([`crate::required_lookups`]) can leave it out, and a batch of devices nobody
//! has seen yet needs no lookup at all.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;

use crate::identifier::Identifier;
use crate::outcome::Outcome;
use crate::state::Lookups;
use crate::uid::DeviceUid;

/// Keys of the first filter level; each next one, started when the last is full, holds four
/// times as many (few levels: an absent key is probed in every one).
const FIRST_LEVEL: usize = 4_096;
const GROWTH: usize = 4;
/// Filter bits per key: about one false positive per thousand absent keys and level.
const BITS_PER_KEY: usize = 16;
/// Bits set per key, all in one 512-bit block (one cache line).
const PROBES: u32 = 7;

/// Every key (identifier, IP, device uid) that the stored devices of one (tenant, partition)
/// may hold: a key it has not seen is held by none of them.
///
/// It answers "maybe held" for every key it was given (never a false negative) and for a
/// small fraction of the others (under 0.1 % per level), which only costs a lookup that finds
/// nothing. Keys are never removed: a key whose holder changed or was merged away stays "maybe
/// held". A chain of blocked Bloom filters, each four times as large as the one before, 16
/// bits a key: a million devices with two identifiers each (four million keys) take 11 MB.
///
/// It is only correct while its owner has recorded ([`KeyFilter::record`]) every write to the
/// scope since the scope was empty: the DIRE service keeps one only for scopes that were empty
/// when it first used them, and drops it when another writer was seen.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    levels: Vec<Level>,
}

#[derive(Debug, Clone)]
struct Level {
    blocks: Vec<[u64; 8]>,
    capacity: usize,
    keys: usize,
}

impl Level {
    fn new(capacity: usize) -> Level {
        let blocks = (capacity * BITS_PER_KEY).div_ceil(512);
        Level {
            blocks: vec![[0; 8]; blocks],
            capacity,
            keys: 0,
        }
    }

    /// The block of `hash` and the bits it sets there.
    fn probe(&self, hash: u64) -> (usize, [u64; 8]) {
        let block = ((u128::from(hash) * self.blocks.len() as u128) >> 64) as usize;
        let mut bits = [0u64; 8];
        let mut x = splitmix(hash);
        for _ in 0..PROBES {
            let bit = (x & 511) as usize;
            bits[bit / 64] |= 1 << (bit % 64);
            x >>= 9;
        }
        (block, bits)
    }

    fn contains(&self, hash: u64) -> bool {
        let (block, bits) = self.probe(hash);
        self.blocks[block]
            .iter()
            .zip(bits)
            .all(|(have, want)| have & want == want)
    }

    fn insert(&mut self, hash: u64) {
        let (block, bits) = self.probe(hash);
        for (have, set) in self.blocks[block].iter_mut().zip(bits) {
            *have |= set;
        }
        self.keys += 1;
    }
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Which kind of key a hash is of (so that equal bytes of two kinds never collide by design).
#[derive(Hash)]
enum Kind {
    Identifier,
    Ip,
    Uid,
}

fn hash_of(kind: Kind, key: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    kind.hash(&mut h);
    key.hash(&mut h);
    h.finish()
}

fn identifier_hash(id: &Identifier) -> u64 {
    hash_of(Kind::Identifier, (id.kind().as_str(), id.value()))
}

fn ip_hash(ip: &IpAddr) -> u64 {
    hash_of(Kind::Ip, ip)
}

fn uid_hash(uid: &DeviceUid) -> u64 {
    hash_of(Kind::Uid, uid.as_uuid().as_bytes())
}

impl KeyFilter {
    /// Keys recorded (a key that already looked held when recorded is not counted).
    #[must_use]
    pub fn len(&self) -> usize {
        self.levels.iter().map(|l| l.keys).sum()
    }

    /// True when no key was recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by the filter.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.levels.iter().map(|l| l.blocks.len() * 64).sum()
    }

    fn maybe(&self, hash: u64) -> bool {
        self.levels.iter().any(|l| l.contains(hash))
    }

    fn add(&mut self, hash: u64) {
        if self.maybe(hash) {
            return;
        }
        let full = self.levels.last().is_none_or(|l| l.keys >= l.capacity);
        if full {
            let capacity = self
                .levels
                .last()
                .map_or(FIRST_LEVEL, |l| l.capacity * GROWTH);
            self.levels.push(Level::new(capacity));
        }
        if let Some(level) = self.levels.last_mut() {
            level.insert(hash);
        }
    }

    /// True unless no stored device of the scope holds `id`.
    #[must_use]
    pub fn may_hold_identifier(&self, id: &Identifier) -> bool {
        self.maybe(identifier_hash(id))
    }

    /// True unless no stored device of the scope is at `ip`.
    #[must_use]
    pub fn may_hold_ip(&self, ip: &IpAddr) -> bool {
        self.maybe(ip_hash(ip))
    }

    /// True unless the scope has no stored device `uid`.
    #[must_use]
    pub fn may_hold_uid(&self, uid: &DeviceUid) -> bool {
        self.maybe(uid_hash(uid))
    }

    /// Leaves out of `lookups` every key no stored device holds; returns how many. The devices
    /// a lookup of what remains finds are exactly those the full lookup finds.
    pub fn narrow(&self, lookups: &mut Lookups) -> usize {
        let before = lookups.len();
        lookups
            .identifiers
            .retain(|id| self.may_hold_identifier(id));
        lookups.ips.retain(|ip| self.may_hold_ip(ip));
        lookups.uids.retain(|uid| self.may_hold_uid(uid));
        before - lookups.len()
    }

    /// Records every key an outcome writes: the uid and IP of each inserted or updated device,
    /// and each identifier row inserted or re-pointed.
    pub fn record(&mut self, outcome: &Outcome) {
        let records = outcome
            .inserts
            .iter()
            .chain(outcome.updates.iter().map(|w| &w.record));
        for r in records {
            self.add(uid_hash(&r.uid));
            if let Some(ip) = &r.ip {
                self.add(ip_hash(ip));
            }
        }
        let ids = outcome
            .identifier_inserts
            .keys()
            .chain(outcome.identifier_repoints.keys());
        for id in ids {
            self.add(identifier_hash(id));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::net::Ipv4Addr;

    use super::*;
    use crate::identifier::IdentifierKind;
    use crate::state::DeviceRecord;

    fn uid(i: u32) -> DeviceUid {
        crate::uid::uid_from_seed(&format!("test:{i}"))
    }

    fn ip(i: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i))
    }

    fn armis(i: u32) -> Identifier {
        Identifier::new(IdentifierKind::ArmisDeviceId, &i.to_string()).unwrap()
    }

    #[test]
    fn every_recorded_key_stays_maybe_held_across_levels() {
        let mut f = KeyFilter::default();
        let n = 100_000;
        let mut outcome = Outcome::default();
        for i in 0..n {
            let mut r = DeviceRecord::new(uid(i), chrono::DateTime::UNIX_EPOCH);
            r.ip = Some(ip(i));
            outcome.inserts.push(r);
            outcome.identifier_inserts.insert(armis(i), uid(i));
        }
        f.record(&outcome);
        // A key that already looked held is not added again (nor counted).
        let recorded = f.len();
        assert!(recorded <= 3 * n as usize && recorded > 3 * n as usize * 98 / 100);
        assert!(f.levels.len() > 1, "grew past its first level");
        for i in 0..n {
            assert!(f.may_hold_uid(&uid(i)));
            assert!(f.may_hold_ip(&ip(i)));
            assert!(f.may_hold_identifier(&armis(i)));
        }
        // Recording the same keys again adds nothing.
        f.record(&outcome);
        assert_eq!(f.len(), recorded);
        // Keys never recorded: few false positives (a lookup that finds nothing).
        let absent = (n..n + 100_000)
            .filter(|&i| f.may_hold_uid(&uid(i)) || f.may_hold_ip(&ip(i)))
            .count();
        assert!(absent < 2_000, "{absent} of 100 000 absent keys look held");
        assert!(f.bytes() < 3 * n as usize * 4, "{} bytes", f.bytes());
    }

    #[test]
    fn an_identifier_of_another_kind_or_an_ip_of_another_family_is_another_key() {
        let mut f = KeyFilter::default();
        let mut outcome = Outcome::default();
        outcome.identifier_inserts.insert(armis(42), uid(1));
        let mut r = DeviceRecord::new(uid(1), chrono::DateTime::UNIX_EPOCH);
        r.ip = Some(ip(7));
        outcome.inserts.push(r);
        f.record(&outcome);
        let netbox = Identifier::new(IdentifierKind::NetboxDeviceId, "42").unwrap();
        assert!(f.may_hold_identifier(&armis(42)));
        assert!(!f.may_hold_identifier(&netbox));
        let IpAddr::V4(v4) = ip(7) else {
            unreachable!()
        };
        assert!(!f.may_hold_ip(&IpAddr::V6(v4.to_ipv6_mapped())));
    }

    #[test]
    fn narrowing_keeps_exactly_the_keys_that_may_be_held() {
        let mut f = KeyFilter::default();
        let mut outcome = Outcome::default();
        let mut updated = DeviceRecord::new(uid(2), chrono::DateTime::UNIX_EPOCH);
        updated.ip = Some(ip(2));
        outcome.updates.push(crate::outcome::DeviceWrite {
            record: updated,
            changed: [crate::state::DeviceField::Ip].into(),
        });
        outcome.identifier_repoints.insert(
            armis(3),
            crate::outcome::IdentifierRepoint {
                from: uid(4),
                to: uid(2),
            },
        );
        f.record(&outcome);
        let mut lookups = Lookups::default();
        lookups.uids.extend([uid(2), uid(5)]);
        lookups.ips.extend([ip(2), ip(5)]);
        lookups.identifiers.extend([armis(3), armis(5)]);
        assert_eq!(f.narrow(&mut lookups), 3);
        assert_eq!(lookups.uids.into_iter().collect::<Vec<_>>(), [uid(2)]);
        assert_eq!(lookups.ips.into_iter().collect::<Vec<_>>(), [ip(2)]);
        assert_eq!(
            lookups.identifiers.into_iter().collect::<Vec<_>>(),
            [armis(3)]
        );
        assert!(KeyFilter::default().is_empty());
    }
}
