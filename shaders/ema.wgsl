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
@group(0) @binding(1) var<storage, read> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> ema: array<f32>;
@group(0) @binding(3) var<storage, read> tensors: array<Tensor>;
@group(0) @binding(4) var<storage, read> rows: array<Row>;

@compute @workgroup_size(WG)
fn update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = rows[wid.x];
    let t = tensors[row.tensor];
    for (var k = 0u; k < PER_LANE; k++) {
        let i = k * WG + lid;
        if (i < row.len) {
            let e = row.start + i;
            let theta = param[t.param + e];
            var v = theta;
            if (s.copy == 0u) {
                v = lerp(ema[t.ema + e], theta, s.weight);
            }
            ema[t.ema + e] = v;
        }
    }
}
