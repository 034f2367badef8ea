// bf16 optimizer state (StateFormat::Bf16): two bf16 per u32, one vec2<u32>
// per 4-element chunk. Updates compute in f32; stores round stochastically:
// add 16 random bits below the bf16 mantissa, then truncate, so a value is
// rounded up with probability equal to its distance from the lower bf16 —
// unbiased. The random bits are a counter-based hash of (seed, step, global
// state element), so runs are reproducible.

fn bf16x4_unpack(w: vec2<u32>) -> vec4<f32> {
    return vec4<f32>(
        bitcast<f32>(w.x << 16u),
        bitcast<f32>(w.x & 0xffff0000u),
        bitcast<f32>(w.y << 16u),
        bitcast<f32>(w.y & 0xffff0000u),
    );
}

// The step's hash of (seed, step), set once per invocation by `state_init`
// (called first thing in `main`) instead of once per store.
var<private> rounding_base: u32;

fn state_init() {
    rounding_base = mix32(mix32(u.head.seed) ^ u.head.step);
}

// A 32-bit integer hash with good avalanche (a bijection).
fn mix32(x: u32) -> u32 {
    var h = x;
    h = h ^ (h >> 16u);
    h = h * 0x7feb352du;
    h = h ^ (h >> 15u);
    h = h * 0x846ca68bu;
    h = h ^ (h >> 16u);
    return h;
}

// Four values at state element i (a multiple of 4), rounded stochastically:
// one hash per pair of elements, its two halves the random bits of each.
// The rounding adds the random bits and truncates. inf and NaN (exponent
// all ones) take no random bits and keep a sticky mantissa bit, so inf stays
// inf and NaN stays NaN; they are rare, so they are fixed up behind a
// branch rather than with a per-lane select on every value (which lavapipe
// runs slowly).
fn bf16x4_pack_stochastic(v: vec4<f32>, i: u32) -> vec2<u32> {
    let pair = (table.state_base + i) >> 1u;
    let r0 = mix32(rounding_base ^ pair);
    let r1 = mix32(rounding_base ^ (pair + 1u));
    let b = bitcast<vec4<u32>>(v);
    let r = vec4<u32>(r0 & 0xffffu, r0 >> 16u, r1 & 0xffffu, r1 >> 16u);
    var h = (b + r) >> vec4<u32>(16u);
    let special = (b & vec4<u32>(0x7f800000u)) == vec4<u32>(0x7f800000u);
    if (any(special)) {
        let sticky = min(b & vec4<u32>(0xffffu), vec4<u32>(1u));
        h = select(h, (b >> vec4<u32>(16u)) | sticky, special);
    }
    return vec2<u32>(h.x | (h.y << 16u), h.z | (h.w << 16u));
}
