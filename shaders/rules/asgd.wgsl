// ASGD (torch.optim.ASGD).
//   g ← ∇ (negated if maximize) + weight_decay·θ
//   θ ← θ·(1 − lambd·η) − η·g              (decay = 1 − lambd·η on the host)
//   ax ← θ if μ = 1, else ax + μ·(θ − ax)  (state0 = ax)
// η and μ of step t are computed on the host (f64, rounded to f32 as PyTorch stores them).

fn update(c: Coeffs, x: ptr<function, Lanes>) {
    let g = effective_grad(*x, c.weight_decay);
    let p = (*x).p * c.decay - c.eta * g;
    (*x).p = p;
    if (c.mu == 1.0) {
        (*x).s0 = p;
    } else {
        (*x).s0 = (*x).s0 + c.mu * (p - (*x).s0);
    }
}
