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

// No step-dependent scalar (see common.wgsl, `at_step`).
fn at_step(c: Coeffs, f: vec4<f32>) -> Coeffs {
    return c;
}

fn state_used(slot: u32) -> bool {
    return slot < 2u;
}

fn update(c: Coeffs, x: ptr<function, Lanes>) {
    let g = effective_grad(*x, c.weight_decay);
    let v = c.rho * (*x).s0 + c.one_minus_rho * g * g;
    (*x).s0 = v;
    let acc = (*x).s1;
    let delta = sqrt(acc + c.eps) / sqrt(v + c.eps) * g;
    (*x).s1 = c.rho * acc + c.one_minus_rho * delta * delta;
    (*x).p = (*x).p - c.lr * delta;
}
