//! Deterministic test data: a counter-based random number per (seed, a, b),
//! so every run, test and benchmark sees the same values without a
//! generator's state.

/// Counter-based uniform random number in [-1, 1): splitmix64 of the key.
pub fn uniform(seed: u64, a: u64, b: u64) -> f32 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(a.wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(b.wrapping_mul(0x94D0_49BB_1331_11EB))
        .wrapping_add(0x2545_F491_4F6C_DD1D);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ((z >> 40) as f32) * (1.0 / (1u64 << 23) as f32) - 1.0
}

/// Random initial params in ±[0.1, 1.1) (never zero).
pub fn random_params(seed: u64, n: usize) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let u = uniform(seed, u64::MAX, i);
            u.signum() * (0.1 + u.abs())
        })
        .collect()
}
