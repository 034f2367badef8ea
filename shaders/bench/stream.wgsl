// The honest ceiling (benchmarks only): the simplest kernel that moves a
// rule's bytes. Plain vec4 loads and stores over whole contiguous buffers,
// a 1-D index (2-D grid only past 65,535 workgroups), no table, no flags,
// no uniform scalars beyond the size: each invocation reads param, grad and
// SLOTS state vec4s and writes param and the state, EPI consecutive vec4s.
// Values rotate through the outputs (s0 ← θ, s1 ← s0, …, θ ← g), the last
// one kept alive by a store under a (uniform) condition the compiler cannot
// fold.
// src/bench/stream.rs also runs it with every `vec4<f32>` replaced by
// `vec4<u64>` (8 elements per unit) where the device has SHADER_INT64, the
// access the engine's wide path uses.
override WG: u32 = 256u;
override EPI: u32 = 1u;
override SLOTS: u32 = 2u;
// 0: an invocation's EPI units are consecutive; 1: they are WG units apart
// (consecutive lanes touch consecutive units at each k).
override INTERLEAVED: u32 = 0u;

struct Size {
    n4: u32,        // units (vec4s) per buffer
    groups_x: u32,  // workgroups along x
    never: u32,     // 0: never true at run time
    _r: u32,
}

@group(0) @binding(0) var<uniform> size: Size;
@group(0) @binding(1) var<storage, read_write> p: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> s0: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> s1: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> s2: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> s3: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let group = wid.y * size.groups_x + wid.x;
    for (var k = 0u; k < EPI; k++) {
        var i = (group * WG + lid) * EPI + k;
        if (INTERLEAVED != 0u) { i = (group * EPI + k) * WG + lid; }
        if (i < size.n4) {
            var carry = p[i];
            let grad = g[i];
            if (SLOTS > 0u) { let a = s0[i]; s0[i] = carry; carry = a; }
            if (SLOTS > 1u) { let a = s1[i]; s1[i] = carry; carry = a; }
            if (SLOTS > 2u) { let a = s2[i]; s2[i] = carry; carry = a; }
            if (SLOTS > 3u) { let a = s3[i]; s3[i] = carry; carry = a; }
            p[i] = grad;
            if (size.never != 0u) { p[i] = carry; }
        }
    }
}
