// A weight EMA over many tensors (torch.optim.swa_utils.AveragedModel with
// get_ema_multi_avg_fn): the first update copies θ into the average, each
// later one is `torch._foreach_lerp_(ema, θ, 1 − decay)`. Workgroup b handles
// row b of the row table (src/matrix/rows.rs); one dispatch per param buffer.
//
// lerp is PyTorch's (ATen Lerp.h): w < 0.5 ? a + w·(b − a) : b − (b − a)·(1 − w).
// struct Scalars is generated from the Rust declaration (src/ema.rs).

struct Tensor {
    param: u32,          // element offset in the bound param buffer
    ema: u32,            // element offset in the average buffer
    pad0: u32,
    pad1: u32,
}

struct Row {
    tensor: u32,
    start: u32,
    len: u32,
    index: u32,
}

@group(0) @binding(0) var<uniform> s: Scalars;
@group(0) @binding(1) var<storage, read> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> ema: array<f32>;
@group(0) @binding(3) var<storage, read> tensors: array<Tensor>;
@group(0) @binding(4) var<storage, read> rows: array<Row>;

const PER_LANE: u32 = 4u;

fn lerp(a: f32, b: f32, w: f32) -> f32 {
    if (w < 0.5) {
        return a + w * (b - a);
    }
    return b - (b - a) * (1.0 - w);
}

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
