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

// No step-dependent scalar (see common.wgsl, `at_step`).
fn at_step(c: Coeffs, f: vec4<f32>) -> Coeffs {
    return c;
}

fn state_used(slot: u32) -> bool {
    return false;
}

fn update(c: Coeffs, x: ptr<function, Lanes>) {
    let g = effective_grad(*x, c.weight_decay);
    (*x).p = (*x).p - c.lr * g;
}
