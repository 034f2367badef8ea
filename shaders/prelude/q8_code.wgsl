// The 8-bit codes of values in the dynamic maps (quant::dynamic_map), by
// arithmetic over the maps' structure: no search, no table reads (on a CPU
// adapter every table read is a gather of one scalar load per SIMD lane).
//
// Structure: 7 decades d = 0..6 of scale s = 10^(d−6); decade d holds
// n = 2^(d+e) positive entries s·(0.1 + 0.9·(k + ½)/n), k = 0..n−1
// (e = 1 unsigned, 0 signed), increasing in k and from decade to decade.
// Numbering the positive entries p_0 < p_1 < … in that order, decade d
// starts at q = 2^e·(2^d − 1). Unsigned map: 0, p_0 … p_253, 1 (p_q at code
// q + 1). Signed map: −1, −p_126 … −p_1, 0, p_0 … p_126, 1 (p_q at code
// q + 128, −p_q at 127 − q; −p_0 gives way to −1, so that ±absmax is exact).
//
// The code is that of the nearest entry (ties to the lower), as
// quant::nearest finds it, except for values within a few ulps of the
// midpoint of two entries, where the entries computed here in f32 (not
// read from the table) may round the other way: either neighbour is then
// nearest to within 1e-6 relative.

// The decade of y ≥ 0: y in [10^(d−7), 10^(d−6)), 0 below, 6 above.
fn q8_decade(y: f32) -> u32 {
    return u32(y >= 1e-6) + u32(y >= 1e-5) + u32(y >= 1e-4) + u32(y >= 1e-3) + u32(y >= 1e-2) + u32(y >= 1e-1);
}

// 10^(d−6) (rounded to f32, as the map's scale is).
fn q8_scale_of(d: u32) -> f32 {
    var s = 1e-6;
    s = select(s, 1e-5, d >= 1u);
    s = select(s, 1e-4, d >= 2u);
    s = select(s, 1e-3, d >= 3u);
    s = select(s, 1e-2, d >= 4u);
    s = select(s, 1e-1, d >= 5u);
    return select(s, 1.0, d >= 6u);
}

// 10^(6−d), exact in f32.
fn q8_inverse_scale_of(d: u32) -> f32 {
    var s = 1e6;
    s = select(s, 1e5, d >= 1u);
    s = select(s, 1e4, d >= 2u);
    s = select(s, 1e3, d >= 3u);
    s = select(s, 1e2, d >= 4u);
    s = select(s, 1e1, d >= 5u);
    return select(s, 1.0, d >= 6u);
}

// The nearest of 0, p_0, p_1, …, 1 to y ≥ 0 as q: −1 for 0, q for p_q,
// 2^e·127 for 1. k is the entry of y's decade at or below y (−1: the last
// entry of the decade below, or 0), so y lies between entries q and q + 1.
fn q8_positive_nearest(y: f32, e: u32) -> i32 {
    let d = q8_decade(y);
    let s = q8_scale_of(d);
    let n = f32(1u << (d + e));
    let k = clamp(floor((y * q8_inverse_scale_of(d) - 0.1) * (n / 0.9) - 0.5), -1.0, n - 1.0);
    let below = select((0.1 * s) * (1.0 - 0.9 / n), 0.0, d == 0u);
    let above = select(s * (1.0 + 2.25 / n), 1.0, d == 6u);
    let lo = select(s * (0.1 + 0.9 * (k + 0.5) / n), below, k < 0.0);
    let hi = select(s * (0.1 + 0.9 * (k + 1.5) / n), above, k + 1.0 >= n);
    let q = i32(1u << e) * ((1 << d) - 1) + i32(k);
    return select(q, q + 1, hi - y < y - lo);
}

// The code of the map entry nearest to x (x = value / block absmax,
// |x| ≤ 1) in the signed map (base 0) or the unsigned one (base 256).
fn q8_code(x: f32, base: u32) -> u32 {
    let y = min(abs(x), 1.0);
    if (base != 0u) {
        return u32(q8_positive_nearest(y, 1u) + 1);
    }
    let q = q8_positive_nearest(y, 0u);
    if (x >= 0.0 || q < 0) {
        return u32(q + 128);
    }
    if (q == 0) {
        // −p_0 is not in the map: 0 or −p_1 (p_1 = 3.25e-6), ties to −p_1.
        return select(126u, 127u, y < 3.25e-6 - y);
    }
    return u32(127 - q);
}
