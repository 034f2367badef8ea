// Nesterov momentum (torch.optim.SGD with nesterov = true), in PyTorch's
// "look-ahead point is the iterate" form.
//   g ← ∇ (negated if maximize) + weight_decay·θ
//   b ← g at step 1, else b ← momentum·b + (1 − dampening)·g      (state0 = momentum_buffer)
//   θ ← θ − lr·(g + momentum·b)

fn update(c: Coeffs, x: ptr<function, Lanes>) {
    let g = effective_grad(*x, c.weight_decay);
    var b = g;
    if (!first_step()) {
        b = c.momentum * (*x).s0 + c.one_minus_dampening * g;
    }
    (*x).s0 = b;
    (*x).p = (*x).p - c.lr * (g + c.momentum * b);
}
