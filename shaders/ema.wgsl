// A weight EMA over many tensors (torch.optim.swa_utils.AveragedModel with
// get_ema_multi_avg_fn): the first update copies θ into the average, each
// later one is `torch._foreach_lerp_(ema, θ, 1 − decay)`. Workgroup b handles
// row b of the row table (src/matrix/rows.rs); one dispatch per param buffer.
//
// struct Scalars is generated from the Rust declaration (src/ema.rs); Row,
// PER_LANE and lerp (PyTorch's) come from shaders/matrix/rows.wgsl.

struct Tensor {
    param: u32,          // element offset in the bound param buffer
    ema: u32,            // element offset in the average buffer
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> s: Scalars;
// Bindings 1 (param) and 2 (the averages) and their accessors ld_X / st_X
// are generated (rows::operands): vec4 or scalar access.
@group(0) @binding(3) var<storage, read> tensors: array<Tensor>;
@group(0) @binding(4) var<storage, read> rows: array<Row>;

// Units of 4 consecutive elements: unit c of invocation lid at (c·WG + lid)·4
// of the row.
@compute @workgroup_size(WG)
fn update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = rows[wid.x];
    let t = tensors[row.tensor];
    for (var c = 0u; c < PER_LANE / 4u; c++) {
        let i = (c * WG + lid) * 4u;
        if (i >= row.len) { break; }
        let n = min(4u, row.len - i);
        let e = row.start + i;
        let theta = ld_param(t.param + e, n);
        var v = theta;
        if (s.copy == 0u) {
            let a = ld_ema(t.ema + e, n);
            v = vec4<f32>(lerp(a.x, theta.x, s.weight), lerp(a.y, theta.y, s.weight), lerp(a.z, theta.z, s.weight), lerp(a.w, theta.w, s.weight));
        }
        st_ema(t.ema + e, v, n);
    }
}
