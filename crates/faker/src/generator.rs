//! Devices computed from their index: nothing is stored, so a million devices cost no memory
//! and device `i` is the same on every start with the same seed.
//!
//! Fixed by the contract (CONTRACT.md §6): id `i + 1`; primary IP
//! `172.(16+(i/254)/256).((i/254)%256).((i%254)+1)`; name `FAKER-<MFR3>-<TYPE3>-<%05d i+1>`.
//! Chosen here: a primary MAC that is a bijection of the index (so it never repeats, unlike the
//! reference's formula beyond 65 536 devices), extra MACs and IPs for some devices, and
//! attributes picked by hashing `(seed, i)`. Only the primary IP depends on the churn epoch
//! (see [`crate::churn`]).

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::churn::Pairing;

/// Largest device count: beyond it the contract's IP formula leaves `172.255.x.x`
/// (`(i/254)/256` must stay ≤ 239).
pub const MAX_DEVICES: u64 = 240 * 256 * 254;

/// One device as the Armis search API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Armis id, `i + 1`.
    pub id: u64,
    /// Primary IP first, then extra IPs, comma-joined.
    pub ip_address: String,
    /// Primary MAC first, then extra MACs, comma-joined (lower-case, colon form).
    pub mac_address: String,
    /// `FAKER-<MFR3>-<TYPE3>-<%05d id>`.
    pub name: String,
    /// Device type, e.g. `Camera`.
    #[serde(rename = "type")]
    pub device_type: String,
    /// Category of the type, e.g. `IoT`.
    pub category: String,
    /// Manufacturer.
    pub manufacturer: String,
    /// Model.
    pub model: String,
    /// Operating system.
    pub operating_system: String,
    /// RFC 3339.
    pub first_seen: String,
    /// RFC 3339.
    pub last_seen: String,
    /// 1 (low) to 10 (critical).
    pub risk_level: u8,
    /// Tags, in [`TAGS`] order.
    pub tags: Vec<String>,
}

/// A device type with its category and the manufacturers and systems it comes with.
#[derive(Debug)]
pub struct DeviceType {
    /// Type name as shown in `type`.
    pub name: &'static str,
    /// Category name.
    pub category: &'static str,
    /// Manufacturers of this type.
    pub manufacturers: &'static [&'static str],
    /// Operating systems of this type.
    pub systems: &'static [&'static str],
}

/// Every device type, each equally likely.
pub const TYPES: &[DeviceType] = &[
    DeviceType {
        name: "Workstation",
        category: "Computers",
        manufacturers: &["Dell", "Lenovo", "Hewlett Packard"],
        systems: &["Windows 11", "Windows 10", "Ubuntu 22.04"],
    },
    DeviceType {
        name: "Laptop",
        category: "Computers",
        manufacturers: &["Dell", "Lenovo", "Apple"],
        systems: &["Windows 11", "macOS 14"],
    },
    DeviceType {
        name: "Server",
        category: "Computers",
        manufacturers: &["Dell", "Supermicro", "Hewlett Packard"],
        systems: &[
            "Windows Server 2022",
            "Red Hat Enterprise Linux 9",
            "Ubuntu 22.04",
        ],
    },
    DeviceType {
        name: "Router",
        category: "Network Equipment",
        manufacturers: &["Cisco", "Juniper"],
        systems: &["IOS XE", "Junos OS"],
    },
    DeviceType {
        name: "Switch",
        category: "Network Equipment",
        manufacturers: &["Cisco", "Aruba", "Juniper"],
        systems: &["IOS XE", "ArubaOS-CX", "Junos OS"],
    },
    DeviceType {
        name: "Access Point",
        category: "Network Equipment",
        manufacturers: &["Aruba", "Ubiquiti", "Cisco"],
        systems: &["ArubaOS", "UniFi OS", "IOS XE"],
    },
    DeviceType {
        name: "Camera",
        category: "IoT",
        manufacturers: &["Axis", "Hikvision", "Bosch"],
        systems: &["Embedded Linux"],
    },
    DeviceType {
        name: "Printer",
        category: "Imaging",
        manufacturers: &["Brother", "Xerox", "Canon"],
        systems: &["Embedded"],
    },
    DeviceType {
        name: "IP Phone",
        category: "Phones",
        manufacturers: &["Polycom", "Yealink", "Cisco"],
        systems: &["Embedded Linux"],
    },
    DeviceType {
        name: "PLC",
        category: "Industrial",
        manufacturers: &["Siemens", "Rockwell", "Schneider"],
        systems: &["VxWorks", "Embedded"],
    },
    DeviceType {
        name: "Infusion Pump",
        category: "Medical",
        manufacturers: &["Baxter", "Medtronic"],
        systems: &["QNX", "VxWorks"],
    },
    DeviceType {
        name: "Thermostat",
        category: "IoT",
        manufacturers: &["Honeywell", "Ecobee"],
        systems: &["FreeRTOS"],
    },
];

/// Every tag, with the chance (in 64ths) that a device carries it.
pub const TAGS: &[(&str, u64)] = &[
    ("Corporate", 24),
    ("Guest", 6),
    ("IoT", 12),
    ("OT", 6),
    ("Critical", 8),
    ("PCI", 5),
    ("Lab", 4),
    ("Managed", 32),
    ("Unmanaged", 10),
    ("Remote", 7),
];

/// 2025-01-01T00:00:00Z: `firstSeen` lies up to a year before it, `lastSeen` up to 30 days after.
const REFERENCE_TIME: i64 = 1_735_689_600;
const DAY: u64 = 86_400;

/// The attributes of a device that do not need formatting: what AQL filters look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traits {
    /// Index into [`TYPES`].
    pub type_index: usize,
    /// The manufacturer.
    pub manufacturer: &'static str,
    /// The operating system.
    pub system: &'static str,
    /// Bit `k` set when the device carries `TAGS[k]`.
    pub tags: u16,
    /// 1 to 10.
    pub risk_level: u8,
    /// 0, 1 or 2 MACs beyond the primary one.
    pub extra_macs: u8,
    /// Whether a second IP is listed.
    pub extra_ip: bool,
    model_number: u64,
    first_seen_ago: u64,
    last_seen_after: u64,
}

impl Traits {
    /// The device type.
    #[must_use]
    pub fn device_type(&self) -> &'static DeviceType {
        &TYPES[self.type_index]
    }

    /// Whether the device carries `TAGS[k]`.
    #[must_use]
    pub fn has_tag(&self, k: usize) -> bool {
        self.tags & (1 << k) != 0
    }
}

/// The device generator of one faker: a seed, a device count and how many pairs churn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Generator {
    seed: u64,
    count: u64,
    swapped_pairs: u64,
}

impl Generator {
    /// `count` devices (at most [`MAX_DEVICES`]; larger counts are cut to it); in every churn
    /// epoch after 0, `churn_fraction` of the `count / 2` device pairs swap primary IPs
    /// (rounded to the nearest pair).
    #[must_use]
    pub fn new(seed: u64, count: u64, churn_fraction: f64) -> Self {
        let count = count.min(MAX_DEVICES);
        let pairs = count / 2;
        let fraction = if churn_fraction.is_finite() {
            churn_fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        // Exact for any count below MAX_DEVICES (< 2^24 pairs fit an f64 mantissa).
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let swapped_pairs = ((pairs as f64) * fraction).round() as u64;
        Self {
            seed,
            count,
            swapped_pairs: swapped_pairs.min(pairs),
        }
    }

    /// Number of devices.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The seed.
    #[must_use]
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// How many device pairs have swapped primary IPs in every churn epoch after 0.
    #[must_use]
    pub fn swapped_pairs(&self) -> u64 {
        self.swapped_pairs
    }

    /// The pairing of churn epoch `epoch` (epoch 0: nobody swaps).
    #[must_use]
    pub fn pairing(&self, epoch: u64) -> Pairing {
        let pairs = if epoch == 0 { 0 } else { self.swapped_pairs };
        Pairing::new(self.seed, epoch, self.count, pairs)
    }

    /// Device `i` (0-based) as seen in churn epoch `epoch`; `None` past the end.
    #[must_use]
    pub fn device(&self, i: u64, epoch: u64) -> Option<Device> {
        (i < self.count).then(|| self.device_with(i, &self.pairing(epoch)))
    }

    /// Device `i` under an already computed pairing (paging builds the pairing once per page).
    /// `i` must be below [`Generator::count`].
    #[must_use]
    pub fn device_with(&self, i: u64, pairing: &Pairing) -> Device {
        let t = self.traits(i);
        let ty = t.device_type();
        let mfr3 = code3(t.manufacturer);
        let type3 = code3(ty.name);

        let primary = contract_ip(pairing.partner(i).unwrap_or(i));
        let mut ip_address = primary.to_string();
        if t.extra_ip {
            let _ = write!(ip_address, ",{}", extra_ip(i));
        }
        let mut mac_address = format_mac(self.primary_mac(i));
        for k in 1..=t.extra_macs {
            mac_address.push(',');
            mac_address.push_str(&format_mac(self.extra_mac(i, k)));
        }
        let tags = TAGS
            .iter()
            .enumerate()
            .filter(|(k, _)| t.has_tag(*k))
            .map(|(_, (name, _))| (*name).to_owned())
            .collect();
        #[allow(clippy::cast_possible_wrap)] // both offsets are below 2^26
        let (first, last) = (
            REFERENCE_TIME - t.first_seen_ago as i64,
            REFERENCE_TIME + t.last_seen_after as i64,
        );
        Device {
            id: i + 1,
            ip_address,
            mac_address,
            name: format!("FAKER-{mfr3}-{type3}-{:05}", i + 1),
            device_type: ty.name.to_owned(),
            category: ty.category.to_owned(),
            manufacturer: t.manufacturer.to_owned(),
            model: format!("{type3}-{}", t.model_number),
            operating_system: t.system.to_owned(),
            first_seen: rfc3339(first),
            last_seen: rfc3339(last),
            risk_level: t.risk_level,
            tags,
        }
    }

    /// The attributes of device `i` (no churn involved).
    #[must_use]
    pub fn traits(&self, i: u64) -> Traits {
        let h1 = self.hash(i, 1);
        let h2 = self.hash(i, 2);
        let h3 = self.hash(i, 3);
        let type_index = pick(h1, TYPES.len());
        let ty = &TYPES[type_index];
        let mut tags = 0u16;
        for (k, (_, chance)) in TAGS.iter().enumerate() {
            if (h2 >> (k * 6)) & 63 < *chance {
                tags |= 1 << k;
            }
        }
        let extra_macs = match (h1 >> 32) % 20 {
            0..=14 => 0,
            15..=18 => 1,
            _ => 2,
        };
        Traits {
            type_index,
            manufacturer: ty.manufacturers[pick(h1 >> 8, ty.manufacturers.len())],
            system: ty.systems[pick(h1 >> 16, ty.systems.len())],
            tags,
            // (h1 >> 24) % 10 < 10, so the cast is exact.
            #[allow(clippy::cast_possible_truncation)]
            risk_level: ((h1 >> 24) % 10) as u8 + 1,
            extra_macs,
            extra_ip: (h1 >> 40).is_multiple_of(8),
            model_number: 1000 + (h1 >> 44) % 9000,
            first_seen_ago: h3 % (365 * DAY),
            last_seen_after: (h3 >> 32) % (30 * DAY),
        }
    }

    /// The primary MAC of device `i`: `02:<seed byte>:` (locally administered, unicast) and a
    /// 32-bit bijection of `i`, so no two indices below 2^32 share it.
    #[must_use]
    pub fn primary_mac(&self, i: u64) -> [u8; 6] {
        self.mac(0x02, i)
    }

    /// Extra MAC number `k` (1 or 2) of device `i`: like the primary one with first octet
    /// `06` or `0a`, so extras never equal any primary MAC either.
    #[must_use]
    pub fn extra_mac(&self, i: u64, k: u8) -> [u8; 6] {
        self.mac(0x02 | (k << 2), i)
    }

    fn mac(&self, first: u8, i: u64) -> [u8; 6] {
        // Indices are below MAX_DEVICES < 2^32, so truncation never merges two of them.
        #[allow(clippy::cast_possible_truncation)]
        let x = scramble32(i as u32, self.seed as u32);
        let b = x.to_be_bytes();
        [first, self.seed.to_be_bytes()[7], b[0], b[1], b[2], b[3]]
    }

    fn hash(&self, i: u64, salt: u64) -> u64 {
        mix64(self.seed ^ mix64(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt))
    }
}

/// The contract's IPv4 address of index `i`:
/// `172.(16+(i/254)/256).((i/254)%256).((i%254)+1)` (valid for `i < MAX_DEVICES`).
#[must_use]
pub fn contract_ip(i: u64) -> Ipv4Addr {
    let block = i / 254;
    octets(172, 16 + block / 256, block % 256, i % 254 + 1)
}

/// The extra IP of index `i`: the same layout in `10.0.0.0/8`, so it never collides with a
/// primary IP or another device's extra IP.
#[must_use]
pub fn extra_ip(i: u64) -> Ipv4Addr {
    let block = i / 254;
    octets(10, block / 256, block % 256, i % 254 + 1)
}

#[allow(clippy::cast_possible_truncation)] // callers keep every part below 256
fn octets(a: u64, b: u64, c: u64, d: u64) -> Ipv4Addr {
    Ipv4Addr::new(a as u8, b as u8, c as u8, d as u8)
}

/// Lower-case colon form.
#[must_use]
pub fn format_mac(mac: [u8; 6]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(17);
    for (k, b) in mac.iter().enumerate() {
        if k > 0 {
            s.push(':');
        }
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s
}

/// The first three letters of `name`, upper-cased (`Access Point` → `ACC`, `IP Phone` → `IPP`).
#[must_use]
pub fn code3(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphabetic)
        .take(3)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SS+00:00` without going through a general formatter (this runs twice
/// per device served). Days to civil date after H. Hinnant's `civil_from_days`.
fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = String::with_capacity(25);
    for (v, width, sep) in [
        (year, 4, '-'),
        (month, 2, '-'),
        (day, 2, 'T'),
        (rem / 3600, 2, ':'),
        (rem / 60 % 60, 2, ':'),
        (rem % 60, 2, '+'),
    ] {
        for k in (0..width).rev() {
            let digit = (v / 10i64.pow(k)).rem_euclid(10);
            out.push(char::from(b'0' + u8::try_from(digit).unwrap_or(0)));
        }
        out.push(sep);
    }
    out.push_str("00:00");
    out
}

#[allow(clippy::cast_possible_truncation)] // the remainder is below `n`, a usize
fn pick(h: u64, n: usize) -> usize {
    (h % n as u64) as usize
}

/// SplitMix64's finaliser: a good 64-bit mixer.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A bijection of `u32` keyed by `key`: every step (xor, odd multiply, xor-shift) is invertible.
fn scramble32(x: u32, key: u32) -> u32 {
    let mut x = x ^ key;
    x = x.wrapping_mul(0x9E37_79B1);
    x ^= x >> 15;
    x = x.wrapping_mul(0x85EB_CA77);
    x ^= x >> 13;
    x = x.wrapping_mul(0xC2B2_AE3D);
    x ^ (x >> 16)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn three_letter_codes_skip_spaces_and_upper_case() {
        assert_eq!(code3("Access Point"), "ACC");
        assert_eq!(code3("IP Phone"), "IPP");
        assert_eq!(code3("Hewlett Packard"), "HEW");
        for ty in TYPES {
            assert_eq!(code3(ty.name).len(), 3, "{}", ty.name);
            for m in ty.manufacturers {
                assert_eq!(code3(m).len(), 3, "{m}");
            }
        }
    }

    #[test]
    fn scramble_is_a_bijection_on_a_sample_of_its_domain() {
        let mut seen = std::collections::HashSet::new();
        for x in 0..200_000u32 {
            assert!(seen.insert(scramble32(x, 7)));
        }
        assert!(seen.insert(scramble32(u32::MAX, 7)));
    }

    #[test]
    fn the_last_allowed_index_still_has_a_valid_contract_ip() {
        assert_eq!(
            contract_ip(MAX_DEVICES - 1),
            Ipv4Addr::new(172, 255, 255, 254)
        );
    }

    #[test]
    fn timestamps_match_chrono_across_leap_years_and_month_ends() {
        let mut t = REFERENCE_TIME - 4 * 366 * 86_400;
        while t < REFERENCE_TIME + 366 * 86_400 {
            let want = chrono::DateTime::from_timestamp(t, 0)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
            assert_eq!(rfc3339(t), want);
            t += 86_400 / 2 + 3_607;
        }
    }

    #[test]
    fn macs_format_as_lower_case_colon_hex() {
        assert_eq!(
            format_mac([0x02, 0xab, 0x00, 0x0f, 0xf0, 0xff]),
            "02:ab:00:0f:f0:ff"
        );
    }

    #[test]
    fn counts_beyond_the_ip_space_are_cut() {
        assert_eq!(Generator::new(1, u64::MAX, 0.0).count(), MAX_DEVICES);
    }

    #[test]
    fn churn_fraction_is_rounded_to_whole_pairs_and_clamped() {
        assert_eq!(Generator::new(1, 5003, 0.05).swapped_pairs(), 125); // 2501 * 0.05 = 125.05
        assert_eq!(Generator::new(1, 10, 2.0).swapped_pairs(), 5);
        assert_eq!(Generator::new(1, 10, f64::NAN).swapped_pairs(), 0);
        assert_eq!(Generator::new(1, 1, 1.0).swapped_pairs(), 0);
    }
}
