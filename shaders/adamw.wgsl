// AdamW (torch.optim.AdamW): decoupled weight decay.
//   θ ← θ·decay, decay = 1 − lr·weight_decay (host, f64)
//   g ← ∇ (negated if maximize)            — no L2 term
//   m ← m + (1 − β₁)·(g − m)                           (state0 = exp_avg)
//   v ← β₂·v + (1 − β₂)·g²                             (state1 = exp_avg_sq)
//   amsgrad: v̂ ← max(v̂, v), use v̂ for v below         (state2 = max_exp_avg_sq)
//   θ ← θ − step_size·m/(√v/bc2_sqrt + eps)   or  θ ← θ − step_size·m/√(v/bc2 + eps)
struct Coeffs {
    lr: f32,
    weight_decay: f32,
    beta1: f32,
    beta2: f32,
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    eps: f32,
    step_size: f32,
    bc2_sqrt: f32,
    decay: f32,
    inv_bc2: f32,
    _r0: f32,
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = locate(wid, lid);
    if (!e.valid) { return; }
    let c = u.groups[e.group];
    let g = effective_grad(e, 0.0);
    let p = param[e.p] * c.decay;
    let m_old = state0[e.s];
    let m = m_old + c.one_minus_beta1 * (g - m_old);
    state0[e.s] = m;
    var v = c.beta2 * state1[e.s] + c.one_minus_beta2 * g * g;
    state1[e.s] = v;
    if (has(AMSGRAD)) {
        v = max(state2[e.s], v);
        state2[e.s] = v;
    }
    var denom: f32;
    if (has(EPS_INSIDE_SQRT)) {
        denom = sqrt(v * c.inv_bc2 + c.eps);
    } else {
        denom = sqrt(v) / c.bc2_sqrt + c.eps;
    }
    param[e.p] = p - c.step_size * m / denom;
}
