// The dynamic maps (quant::dynamic_map) by arithmetic over their structure:
// the entries of codes (decode) and the codes of values (encode), with no
// search and no table reads (on a CPU adapter every table read is a gather
// of one scalar load per SIMD lane).
//
// Structure: 7 decades d = 0..6 of scale s = 10^(d−6); decade d holds
// n = 2^(d+e) positive entries s·(0.1 + 0.9·(k + ½)/n), k = 0..n−1
// (e = 1 unsigned, 0 signed), increasing in k and from decade to decade.
// Numbering the positive entries p_0 < p_1 < … in that order, decade d
// starts at q = 2^e·(2^d − 1). Unsigned map: 0, p_0 … p_253, 1 (p_q at code
// q + 1). Signed map: −1, −p_126 … −p_1, 0, p_0 … p_126, 1 (p_q at code
// q + 128, −p_q at 127 − q; −p_0 gives way to −1, so that ±absmax is exact).
//
// Encoding gives the code of the nearest entry (ties to the lower), as
// quant::nearest finds it, except for values within a few ulps of the
// midpoint of two entries, where the entries computed here in f32 (not
// read from the table) may round the other way: either neighbour is then
// nearest to within 1e-6 relative. Decoding gives the table's entries to
// within a few ulps.

// y's decade d (y in [10^(d−7), 10^(d−6)), 0 below, 6 above), its scale
// 10^(d−6) (rounded to f32, as the map's scale is) and 10^(6−d) (exact).
struct Q8Decade {
    d: u32,
    s: f32,
    inv_s: f32,
}

fn q8_decade(y: f32) -> Q8Decade {
    var r = Q8Decade(0u, 1e-6, 1e6);
    let bounds = array<f32, 6>(1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1);
    let scales = array<f32, 6>(1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0);
    let inverses = array<f32, 6>(1e5, 1e4, 1e3, 1e2, 1e1, 1.0);
    for (var i = 0u; i < 6u; i++) {
        let above = y >= bounds[i];
        r.d = select(r.d, i + 1u, above);
        r.s = select(r.s, scales[i], above);
        r.inv_s = select(r.inv_s, inverses[i], above);
    }
    return r;
}

// The nearest of 0, p_0, p_1, …, 1 to y ≥ 0 as q: −1 for 0, q for p_q,
// 2^e·127 for 1. k is the entry of y's decade at or below y (−1: the last
// entry of the decade below, or 0), so y lies between entries q and q + 1.
// Above the last entry of decades 0–5 (y < s) the lower entry is always the
// nearer one (the next decade's first entry is past s·(1 + 0.9/n)), so 1
// stands in for the upper one there.
fn q8_positive_nearest(y: f32, e: u32) -> i32 {
    let r = q8_decade(y);
    let d = r.d;
    let s = r.s;
    let n = f32(1u << (d + e));
    let inv_n = bitcast<f32>((127u - d - e) << 23u);   // 1/n, exact (no division)
    let k = clamp(floor((y * r.inv_s - 0.1) * (n * 1.1111112) - 0.5), -1.0, n - 1.0);
    let below = select((0.1 * s) * (1.0 - 0.9 * inv_n), 0.0, d == 0u);
    let lo = select(s * (0.1 + 0.9 * (k + 0.5) * inv_n), below, k < 0.0);
    let hi = select(s * (0.1 + 0.9 * (k + 1.5) * inv_n), 1.0, k + 1.0 >= n);
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
    // −p_0 is not in the map: 0 or −p_1 (p_1 = 3.25e-6), ties to −p_1.
    let near_zero = select(126u, 127u, y < 3.25e-6 - y);
    let negative = select(u32(127 - q), near_zero, q == 0);
    return select(negative, u32(q + 128), x >= 0.0 || q < 0);
}

// 10^(d−6) for four decades (the map's scales, rounded to f32).
fn q8_scales_of(d: vec4<u32>) -> vec4<f32> {
    var s = vec4<f32>(1e-6);
    s = select(s, vec4<f32>(1e-5), d >= vec4<u32>(1u));
    s = select(s, vec4<f32>(1e-4), d >= vec4<u32>(2u));
    s = select(s, vec4<f32>(1e-3), d >= vec4<u32>(3u));
    s = select(s, vec4<f32>(1e-2), d >= vec4<u32>(4u));
    s = select(s, vec4<f32>(1e-1), d >= vec4<u32>(5u));
    return select(s, vec4<f32>(1.0), d >= vec4<u32>(6u));
}

// The map entries of the four codes of w (low byte first): the entry of
// positive-list index q is 10^(d−6)·(0.1 + 0.9·(k + ½)/n), decade d from
// the leading bit of q/2^e + 1.
fn q8_values(w: u32, signed: bool) -> vec4<f32> {
    let c = (vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu);
    let e = select(1u, 0u, signed);
    var neg = vec4<bool>(false);
    var q = c - vec4<u32>(1u);
    if (signed) {
        neg = c < vec4<u32>(127u);
        q = select(c - vec4<u32>(128u), vec4<u32>(127u) - c, neg);
    }
    let d = firstLeadingBit((q >> vec4<u32>(e)) + vec4<u32>(1u));
    let inv_n = bitcast<vec4<f32>>((vec4<u32>(127u - e) - d) << vec4<u32>(23u));   // 1/n, exact
    let k = q - vec4<u32>(1u << e) * ((vec4<u32>(1u) << d) - vec4<u32>(1u));
    var v = q8_scales_of(d) * (0.1 + 0.9 * (vec4<f32>(k) + 0.5) * inv_n);
    v = select(v, -v, neg);
    let zero = select(c == vec4<u32>(0u), c == vec4<u32>(127u), signed);
    v = select(v, vec4<f32>(0.0), zero);
    v = select(v, vec4<f32>(1.0), c == vec4<u32>(255u));
    if (signed) {
        v = select(v, vec4<f32>(-1.0), c == vec4<u32>(0u));
    }
    return v;
}
