// Plain SGD (torch.optim.SGD with momentum = 0).
//   g ← ∇ (negated if maximize) + weight_decay·θ
//   θ ← θ − lr·g
struct Coeffs {
    lr: f32,
    weight_decay: f32,
    momentum: f32,
    one_minus_dampening: f32,
    _r: array<vec4<f32>, 2>,
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = locate(wid, lid);
    if (!e.valid) { return; }
    let c = u.groups[e.group];
    let g = effective_grad(e, c.weight_decay);
    param[e.p] = param[e.p] - c.lr * g;
}
