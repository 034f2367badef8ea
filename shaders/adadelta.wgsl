// Adadelta (torch.optim.Adadelta); lr = 1 is Zeiler's learning-rate-free form.
//   g ← ∇ (negated if maximize) + weight_decay·θ
//   v ← rho·v + (1 − rho)·g²                          (state0 = square_avg)
//   Δ ← √(u + eps)/√(v + eps)·g
//   u ← rho·u + (1 − rho)·Δ²                          (state1 = acc_delta)
//   θ ← θ − lr·Δ
struct Coeffs {
    lr: f32,
    weight_decay: f32,
    rho: f32,
    one_minus_rho: f32,
    eps: f32,
    _r0: f32,
    _r1: f32,
    _r2: f32,
    _r: vec4<f32>,
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = locate(wid, lid);
    if (!e.valid) { return; }
    let c = u.groups[e.group];
    let g = effective_grad(e, c.weight_decay);
    let v = c.rho * state0[e.s] + c.one_minus_rho * g * g;
    state0[e.s] = v;
    let acc = state1[e.s];
    let delta = sqrt(acc + c.eps) / sqrt(v + c.eps) * g;
    state1[e.s] = c.rho * acc + c.one_minus_rho * delta * delta;
    param[e.p] = param[e.p] - c.lr * delta;
}
