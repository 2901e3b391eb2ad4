//! How fast a scope memo answers a re-sync: `cargo bench -p sr-reconcile --bench memo`.
//!
//! A memo of 1 000 000 settled devices (loaded in the chunks DIRE loads it in), then
//! `Memo::covers_all` for 125 batches of 8 000 updates spread over the whole memo, as in a
//! re-sync of a million devices. Five passes; each prints the time per lookup.

#![allow(clippy::expect_used, missing_docs)]

use std::time::Instant;

use chrono::{DateTime, TimeDelta};
use sha2::{Digest as _, Sha256};
use sr_reconcile::{ContentDigest, DeviceUid, Key, Memo, ReconcileConfig, Settled};

const DEVICES: u64 = 1_000_000;
const BATCH: u64 = 8_000;

fn hash16(seed: u64) -> [u8; 16] {
    let h = Sha256::digest(seed.to_le_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&h[..16]);
    out
}

fn uid(i: u64) -> DeviceUid {
    DeviceUid::from_uuid(uuid::Uuid::from_bytes(hash16(i)))
}

fn digest(i: u64) -> ContentDigest {
    hash16(i.wrapping_mul(3).wrapping_add(DEVICES))
}

fn main() {
    let cfg = ReconcileConfig::default();
    let seen = DateTime::from_timestamp(1_700_000_000, 0).expect("a valid time");
    let mut memo = Memo::default();
    let mut chunk = Vec::new();
    for i in 0..DEVICES {
        let settled = Settled::new(digest(i), seen, seen, &cfg).expect("a window");
        chunk.push((uid(i), settled));
        if chunk.len() == 65_536 {
            memo.insert_many(chunk.drain(..));
        }
    }
    memo.insert_many(chunk);
    let at = seen + TimeDelta::minutes(1);
    for _ in 0..5 {
        let mut took = 0.0;
        let mut covered = 0;
        for batch in 0..DEVICES / BATCH {
            let keys: Vec<Key> = (batch * BATCH..(batch + 1) * BATCH)
                .map(|i| {
                    let j = i * 7_919 % DEVICES;
                    Key {
                        uid: uid(j),
                        digest: digest(j),
                    }
                })
                .collect();
            let times = vec![at; keys.len()];
            let started = Instant::now();
            let answers = memo.covers_all(&keys, &times);
            took += started.elapsed().as_secs_f64();
            covered += answers.iter().filter(|c| **c).count();
        }
        println!(
            "covers_all: {DEVICES} lookups in {took:.3} s ({:.0} ns each), {covered} covered",
            took * 1e9 / DEVICES as f64
        );
    }
}
