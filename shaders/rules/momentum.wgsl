// Heavy-ball momentum (torch.optim.SGD with momentum > 0, nesterov = false).
//   g ← ∇ (negated if maximize) + weight_decay·θ
//   b ← g at step 1, else b ← momentum·b + (1 − dampening)·g      (state0 = momentum_buffer)
//   θ ← θ − lr·b

fn update(c: Coeffs, x: ptr<function, Lanes>) {
    let g = effective_grad(*x, c.weight_decay);
    var b = g;
    if (!first_step()) {
        b = c.momentum * (*x).s0 + c.one_minus_dampening * g;
    }
    (*x).s0 = b;
    (*x).p = (*x).p - c.lr * b;
}
