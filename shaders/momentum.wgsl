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

// No step-dependent scalar (see common.wgsl, `at_step`).
fn at_step(c: Coeffs, f: vec4<f32>) -> Coeffs {
    return c;
}

fn state_used(slot: u32) -> bool {
    return slot == 0u;
}

fn update(c: Coeffs, x: ptr<function, Lanes>) {
    let g = effective_grad(*x, c.weight_decay);
    var b = g;
    if (!first_step()) {
        b = c.momentum * (*x).s0 + c.one_minus_dampening * g;
    }
    (*x).s0 = b;
    (*x).p = (*x).p - c.lr * b;
}
