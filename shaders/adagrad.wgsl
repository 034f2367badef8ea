// Adagrad (torch.optim.Adagrad).
//   g ← ∇ (negated if maximize) + weight_decay·θ
//   sum ← sum + g²                                   (state0 = sum)
//   θ ← θ − clr·g/(√sum + eps)     or  θ ← θ − clr·g/√(sum + eps) with EPS_INSIDE_SQRT
// clr = lr/(1 + (t−1)·lr_decay) is computed on the host.
struct Coeffs {
    clr: f32,
    weight_decay: f32,
    eps: f32,
    _r0: f32,
    _r: array<vec4<f32>, 2>,
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = locate(wid, lid);
    if (!e.valid) { return; }
    let c = u.groups[e.group];
    let g = effective_grad(e, c.weight_decay);
    let s = state0[e.s] + g * g;
    state0[e.s] = s;
    var denom: f32;
    if (has(EPS_INSIDE_SQRT)) {
        denom = sqrt(s + c.eps);
    } else {
        denom = sqrt(s) + c.eps;
    }
    param[e.p] = param[e.p] - c.clr * g / denom;
}
