// Adagrad (torch.optim.Adagrad).
//   g ← ∇ (negated if maximize) + weight_decay·θ
//   sum ← sum + g²                                   (state0 = sum)
//   θ ← θ − clr·g/(√sum + eps)     or  θ ← θ − clr·g/√(sum + eps) with EPS_INSIDE_SQRT
// clr = lr/(1 + (t−1)·lr_decay) is computed on the host.
struct Coeffs {
    clr: f32,
    weight_decay: f32,
    eps: f32,
    lr: f32,
    _r: array<vec4<f32>, 2>,
}

// With a GradScaler the step t is the device's: clr = lr·(1/(1 + (t−1)·lr_decay)),
// the factor computed on the host in f64 (OptimizerConfig::step_factors).
fn at_step(c: Coeffs, f: vec4<f32>) -> Coeffs {
    var d = c;
    d.clr = c.lr * f.x;
    return d;
}

fn state_used(slot: u32) -> bool {
    return slot == 0u;
}

fn update(c: Coeffs, x: ptr<function, Lanes>) {
    let g = effective_grad(*x, c.weight_decay);
    let s = (*x).s0 + g * g;
    (*x).s0 = s;
    var denom: vec4<f32>;
    if (has(EPS_INSIDE_SQRT)) {
        denom = sqrt(s + c.eps);
    } else {
        denom = sqrt(s) + c.eps;
    }
    (*x).p = (*x).p - c.clr * g / denom;
}
