// RAdam (torch.optim.RAdam): rectified Adam.
//   g ← ∇ (negated if maximize) + weight_decay·θ,  or with DECOUPLED: θ ← θ·(1 − lr·weight_decay)
//   m ← m + (1 − β₁)·(g − m)                           (state0 = exp_avg)
//   v ← β₂·v + (1 − β₂)·g²                             (state1 = exp_avg_sq)
//   θ ← θ − m·(c_plain + c_rect/(√v + eps))
// Host, f64: ρₜ > 5: c_rect = lr·r·√(1 − β₂ᵗ)/(1 − β₁ᵗ), c_plain = 0;
//            else    c_plain = lr/(1 − β₁ᵗ), c_rect = 0.

fn update(c: Coeffs, x: ptr<function, Lanes>) {
    let g = decayed_grad(x, c.weight_decay, c.decay);
    adam_moments(x, g, c.one_minus_beta1, c.beta2, c.one_minus_beta2);
    (*x).p = (*x).p - (*x).s0 * (c.c_plain + c.c_rect / (sqrt((*x).s1) + c.eps));
}
