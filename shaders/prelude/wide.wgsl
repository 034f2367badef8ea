// The wide access path (devices with SHADER_INT64): f32 operands are bound
// as array<vec4<u64>>, two f32 per u64, so one load or store moves 8
// elements (32 bytes). On a CPU adapter, where every buffer access becomes a
// loop over SIMD lanes and vector components, that halves the accesses per
// element. The arithmetic is the same f32 update on the two 4-lane halves:
// results are bitwise those of the vec4 path. The unit step is in
// wide_f32.wgsl; bf16 state moves as vec2<u64> (8 bf16) per unit.

// The two u32 of a u64, low first (naga has no bitcast between u64 and
// vec2<u32>).
fn wide_split(x: u64) -> vec2<u32> {
    return vec2<u32>(u32(x & 0xfffffffflu), u32(x >> 32u));
}

fn wide_half(x: u64) -> vec2<f32> {
    return bitcast<vec2<f32>>(wide_split(x));
}

fn wide_join(a: f32, b: f32) -> u64 {
    return u64(bitcast<u32>(a)) | (u64(bitcast<u32>(b)) << 32u);
}

fn wide_lo(w: vec4<u64>) -> vec4<f32> {
    return vec4<f32>(wide_half(w.x), wide_half(w.y));
}

fn wide_hi(w: vec4<u64>) -> vec4<f32> {
    return vec4<f32>(wide_half(w.z), wide_half(w.w));
}

fn wide_pack(a: vec4<f32>, b: vec4<f32>) -> vec4<u64> {
    return vec4<u64>(wide_join(a.x, a.y), wide_join(a.z, a.w), wide_join(b.x, b.y), wide_join(b.z, b.w));
}
