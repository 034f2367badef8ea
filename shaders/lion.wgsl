// Lion (Chen et al., 2023): the sign of an interpolated momentum.
//   g ← ∇ (negated if maximize)
//   c = β₁·m + (1 − β₁)·g
//   θ ← θ·(1 − lr·weight_decay) − lr·sign(c)        (decay on the host, f64; sign(0) = 0)
//   m ← β₂·m + (1 − β₂)·g                           (state0 = exp_avg)
struct Coeffs {
    lr: f32,
    weight_decay: f32,
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    decay: f32,
    _r0: f32,
    _r: vec4<f32>,
}

// No step-dependent scalar (see common.wgsl, `at_step`).
fn at_step(c: Coeffs, f: vec4<f32>) -> Coeffs {
    return c;
}

fn state_used(slot: u32) -> bool {
    return slot == 0u;
}

fn update(c: Coeffs, x: ptr<function, Lanes>) {
    let g = decayed_grad(x, c.weight_decay, c.decay);
    let u = sign(c.beta1 * (*x).s0 + c.one_minus_beta1 * g);
    (*x).p = (*x).p - c.lr * u;
    (*x).s0 = c.beta2 * (*x).s0 + c.one_minus_beta2 * g;
}
