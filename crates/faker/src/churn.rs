//! IP churn: in churn epoch `e` (> 0), a fixed number of device pairs swap their primary IPs.
//!
//! Each epoch is a pure function of `(seed, e)`, independent of the epochs before it: a keyed
//! pseudo-random permutation `π` of the device indices lines them up, positions `2k` and
//! `2k + 1` form pair `k`, and pairs `0 … S-1` swap. Asking for one device's partner costs
//! one permutation and, for swapped devices, one inverse; nothing is materialised, so paging
//! through a million devices stays cheap and every page of one epoch agrees with the others.
//! Epoch 0 swaps nobody.

use crate::generator::mix64;

const ROUNDS: u64 = 4;

/// Who swaps primary IPs with whom in one churn epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pairing {
    count: u64,
    swapped_pairs: u64,
    key: u64,
    half_bits: u32,
    mask: u64,
}

impl Pairing {
    /// The pairing of `count` devices in which `swapped_pairs` pairs (at most `count / 2`) swap.
    #[must_use]
    pub fn new(seed: u64, epoch: u64, count: u64, swapped_pairs: u64) -> Self {
        // A balanced Feistel network over the smallest even number of bits covering `count`
        // (at least 2); cycle-walking keeps it inside `0..count`.
        let bits = (u64::BITS - count.saturating_sub(1).leading_zeros()).max(2);
        let half_bits = bits.div_ceil(2);
        Self {
            count,
            swapped_pairs: swapped_pairs.min(count / 2),
            key: mix64(seed ^ mix64(epoch ^ 0xC0FF_EE00_D15E_A5E5)),
            half_bits,
            mask: (1u64 << half_bits) - 1,
        }
    }

    /// Number of swapped pairs.
    #[must_use]
    pub fn swapped_pairs(&self) -> u64 {
        self.swapped_pairs
    }

    /// The device whose primary IP device `i` shows in this epoch, when `i` is in a swapped pair.
    #[must_use]
    pub fn partner(&self, i: u64) -> Option<u64> {
        if self.swapped_pairs == 0 || i >= self.count {
            return None;
        }
        let position = self.permute(i);
        (position < 2 * self.swapped_pairs).then(|| self.unpermute(position ^ 1))
    }

    fn round(&self, r: u64, half: u64) -> u64 {
        mix64(self.key.wrapping_add(r.wrapping_mul(0x9E37_79B9_7F4A_7C15)) ^ half) & self.mask
    }

    fn encrypt(&self, x: u64) -> u64 {
        let (mut l, mut r) = (x >> self.half_bits, x & self.mask);
        for k in 0..ROUNDS {
            (l, r) = (r, l ^ self.round(k, r));
        }
        (l << self.half_bits) | r
    }

    fn decrypt(&self, x: u64) -> u64 {
        let (mut l, mut r) = (x >> self.half_bits, x & self.mask);
        for k in (0..ROUNDS).rev() {
            (l, r) = (r ^ self.round(k, l), l);
        }
        (l << self.half_bits) | r
    }

    /// `π(i)`: walks the Feistel cycle until it lands inside `0..count` (the domain is less
    /// than four times `count`, so a few steps on average; it always ends because the cycle
    /// through `i` comes back to `i`).
    fn permute(&self, i: u64) -> u64 {
        let mut x = self.encrypt(i);
        while x >= self.count {
            x = self.encrypt(x);
        }
        x
    }

    fn unpermute(&self, p: u64) -> u64 {
        let mut x = self.decrypt(p);
        while x >= self.count {
            x = self.decrypt(x);
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_permutation_is_a_bijection_for_awkward_sizes() {
        for count in [1u64, 2, 3, 5, 254, 255, 1000, 4097] {
            let p = Pairing::new(9, 3, count, count / 2);
            let mut seen = vec![false; usize::try_from(count).unwrap_or(0)];
            for i in 0..count {
                let x = p.permute(i);
                assert!(x < count);
                assert_eq!(p.unpermute(x), i);
                let slot = &mut seen[usize::try_from(x).unwrap_or(0)];
                assert!(!*slot, "count {count}: {x} hit twice");
                *slot = true;
            }
        }
    }

    #[test]
    fn partners_are_mutual_and_exactly_the_requested_number_of_pairs_swap() {
        for (count, pairs) in [(10u64, 5u64), (11, 3), (5003, 125), (1, 0)] {
            let p = Pairing::new(1, 1, count, pairs);
            let mut swapped = 0;
            for i in 0..count {
                if let Some(j) = p.partner(i) {
                    assert_ne!(i, j);
                    assert_eq!(p.partner(j), Some(i));
                    swapped += 1;
                }
            }
            assert_eq!(swapped, 2 * pairs, "count {count}");
        }
    }
}
