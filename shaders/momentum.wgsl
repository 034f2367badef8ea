// Heavy-ball momentum (torch.optim.SGD with momentum > 0, nesterov = false).
//   g ← ∇ (negated if maximize) + weight_decay·θ
//   b ← g at step 1, else b ← momentum·b + (1 − dampening)·g      (state0 = momentum_buffer)
//   θ ← θ − lr·b
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
    var b = g;
    if (!has(FIRST_STEP)) {
        b = c.momentum * state0[e.s] + c.one_minus_dampening * g;
    }
    state0[e.s] = b;
    param[e.p] = param[e.p] - c.lr * b;
}
