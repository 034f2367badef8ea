// Schedule-free AdamW (schedulefree.AdamWScheduleFree 1.4.1); the params are y.
//   v ← β₂·v + (1 − β₂)·g²                         (state1 = exp_avg_sq)
//   u = g/(√v + eps) + weight_decay·y
//   y ← lerp(y, z, ckp1);  y ← y + y_lr·u           (y_lr = lr·(β₁·(1 − ckp1) − 1), host)
//   z ← z − lr·u                                   (state0 = z; set to y at the first step)
// A mode switch (eval()/train()) instead: θ ← lerp(θ, z, ckp1) with the
// host's weight 1 − 1/β₁ (to x) or 1 − β₁ (back to y).

// torch.lerp: start + w·(end − start) for |w| < 0.5, else end − (end − start)·(1 − w)
// (both formed and one selected: no branch in the step).
fn torch_lerp(a: vec4<f32>, b: vec4<f32>, w: f32) -> vec4<f32> {
    let d = b - a;
    return select(b - d * (1.0 - w), a + w * d, abs(w) < 0.5);
}

fn update(c: Coeffs, x: ptr<function, Lanes>) {
    if (mode_switch()) {
        (*x).p = torch_lerp((*x).p, (*x).s0, c.ckp1);
        return;
    }
    (*x).s0 = select((*x).s0, (*x).p, first_step());
    let g = effective_grad(*x, 0.0);
    (*x).s1 = c.beta2 * (*x).s1 + c.one_minus_beta2 * g * g;
    let u = g / (sqrt((*x).s1) + c.eps) + c.weight_decay * (*x).p;
    (*x).p = torch_lerp((*x).p, (*x).s0, c.ckp1);
    (*x).p = (*x).p + c.y_lr * u;
    (*x).s0 = (*x).s0 - c.lr * u;
}
