// AdamW (torch.optim.AdamW): decoupled weight decay.
//   θ ← θ·decay, decay = 1 − lr·weight_decay (host, f64)
//   g ← ∇ (negated if maximize)            — no L2 term
//   m ← m + (1 − β₁)·(g − m)                           (state0 = exp_avg)
//   v ← β₂·v + (1 − β₂)·g²                             (state1 = exp_avg_sq)
//   amsgrad: v̂ ← max(v̂, v), use v̂ for v below         (state2 = max_exp_avg_sq)
//   θ ← θ − step_size·m/(√v/bc2_sqrt + eps) = θ − step_size_hat·m/(√v + eps_hat)
//   or, eps inside: θ ← θ − step_size·m/√(v·inv_bc2 + eps)

fn update(c: Coeffs, x: ptr<function, Lanes>) {
    let g = decayed_grad(x, c.weight_decay, c.decay);
    adam_moments(x, g, c.one_minus_beta1, c.beta2, c.one_minus_beta2);
    var v = (*x).s1;
    if (has(AMSGRAD)) {
        v = max((*x).s2, v);
        (*x).s2 = v;
    }
    if (has(EPS_INSIDE_SQRT)) {
        (*x).p = (*x).p - c.step_size * (*x).s0 / sqrt(v * c.inv_bc2 + c.eps);
    } else {
        // = step_size·m/(√v/√(1−β₂ᵗ) + eps): one division instead of two
        (*x).p = (*x).p - c.step_size_hat * (*x).s0 / (sqrt(v) + c.eps_hat);
    }
}
