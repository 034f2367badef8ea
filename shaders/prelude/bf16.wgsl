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

fn bf16_stochastic(x: f32, key: u32) -> u32 {
    let b = bitcast<u32>(x);
    if ((b & 0x7f800000u) == 0x7f800000u) {
        // inf stays inf, NaN stays NaN (keep a mantissa bit)
        return (b >> 16u) | select(0u, 0x40u, (b & 0x7fffffu) != 0u);
    }
    return (b + (mix32(key) & 0xffffu)) >> 16u;
}

fn bf16x4_pack_stochastic(v: vec4<f32>, i: u32) -> vec2<u32> {
    let base = mix32(mix32(u.head.seed) ^ u.head.step);
    let e = table.state_base + i;
    return vec2<u32>(
        bf16_stochastic(v.x, base ^ e) | (bf16_stochastic(v.y, base ^ (e + 1u)) << 16u),
        bf16_stochastic(v.z, base ^ (e + 2u)) | (bf16_stochastic(v.w, base ^ (e + 3u)) << 16u),
    );
}
