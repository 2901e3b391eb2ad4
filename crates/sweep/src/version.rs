//! `config_version`: sha256 over a canonical, unambiguous binary serialisation.
//!
//! Layout (integers little-endian, every string and list prefixed by its `u64` length):
//!
//! ```text
//! target   = "sr-sweep/target/v1\n" network modes[] ports[](i32) query_label source
//!            metadata[](key value)
//! config   = "sr-sweep/config/v1\n" u64 target_count sha256(target_digest*) networks[]
//!            modes[] i32 interval ports[](i32)
//! ```
//!
//! Targets enter the config hash through their own digests (in address order), so an index can
//! keep each target's digest and recompute a version without re-serialising every target. Every
//! field of every target still determines the version; warnings and the version itself do not.

use sha2::{Digest, Sha256};

use crate::model::Target;

const TARGET_DOMAIN: &[u8] = b"sr-sweep/target/v1\n";
const CONFIG_DOMAIN: &[u8] = b"sr-sweep/config/v1\n";

/// sha256 of one target's canonical serialisation.
pub(crate) fn target_digest(target: &Target) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(TARGET_DOMAIN);
    put_str(&mut h, &target.network);
    put_strs(&mut h, &target.sweep_modes);
    put_i32s(&mut h, &target.ports);
    put_str(&mut h, &target.query_label);
    put_str(&mut h, &target.source);
    put_len(&mut h, target.metadata.len());
    for (key, value) in &target.metadata {
        put_str(&mut h, key);
        put_str(&mut h, value);
    }
    h.finalize().into()
}

/// Accumulates target digests in output order, then hashes the whole config.
pub(crate) struct ConfigHasher {
    targets: Sha256,
    count: usize,
}

impl ConfigHasher {
    pub(crate) fn new() -> Self {
        Self {
            targets: Sha256::new(),
            count: 0,
        }
    }

    pub(crate) fn add_target(&mut self, digest: &[u8; 32]) {
        self.targets.update(digest);
        self.count += 1;
    }

    pub(crate) fn finish(
        self,
        networks: &[String],
        modes: &[String],
        interval: i32,
        ports: &[i32],
    ) -> String {
        let mut h = Sha256::new();
        h.update(CONFIG_DOMAIN);
        put_len(&mut h, self.count);
        h.update(self.targets.finalize());
        put_strs(&mut h, networks);
        put_strs(&mut h, modes);
        h.update(interval.to_le_bytes());
        put_i32s(&mut h, ports);
        hex::encode(h.finalize())
    }
}

fn put_len(h: &mut Sha256, len: usize) {
    // usize -> u64 is lossless on every supported target.
    h.update((len as u64).to_le_bytes());
}

fn put_str(h: &mut Sha256, s: &str) {
    put_len(h, s.len());
    h.update(s.as_bytes());
}

fn put_strs(h: &mut Sha256, values: &[String]) {
    put_len(h, values.len());
    for v in values {
        put_str(h, v);
    }
}

fn put_i32s(h: &mut Sha256, values: &[i32]) {
    put_len(h, values.len());
    for v in values {
        h.update(v.to_le_bytes());
    }
}
