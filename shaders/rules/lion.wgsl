// Lion (Chen et al., 2023): the sign of an interpolated momentum.
//   g ← ∇ (negated if maximize)
//   c = β₁·m + (1 − β₁)·g
//   θ ← θ·(1 − lr·weight_decay) − lr·sign(c)        (decay on the host, f64; sign(0) = 0)
//   m ← β₂·m + (1 − β₂)·g                           (state0 = exp_avg)

fn update(c: Coeffs, x: ptr<function, Lanes>) {
    let g = decayed_grad(x, c.weight_decay, c.decay);
    let u = sign(c.beta1 * (*x).s0 + c.one_minus_beta1 * g);
    (*x).p = (*x).p - c.lr * u;
    (*x).s0 = c.beta2 * (*x).s0 + c.one_minus_beta2 * g;
}
