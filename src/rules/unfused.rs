//! The unfused op vocabulary: how a rule describes PyTorch's single-tensor
//! (`foreach=False, fused=False`) step as a sequence of elementwise
//! operations, one kernel launch each ([`RuleConfig::unfused`](super::RuleConfig::unfused)).
//! The benchmark's baseline (`crate::bench::unfused`) executes it.

/// Elementwise operations of `shaders/bench/elementwise.wgsl` (the `OP` constant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    MulScalar = 0,
    AddScaled = 1,
    Lerp = 2,
    Addcmul = 3,
    SqrtOf = 4,
    DivScalar = 5,
    AddScalar = 6,
    Addcdiv = 7,
    Div = 8,
    Mul = 9,
    AddOf = 10,
    Sqrt = 11,
    AddScalarOf = 12,
}

/// Buffers an operation names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Buf {
    Param,
    Grad,
    /// The gradient with the L2 term added (a new tensor, as in PyTorch).
    GradWd,
    State0,
    State1,
    Tmp0,
    Tmp1,
    Unused,
}

/// One launch: `x ← op(x, y, z, a)`.
pub type Instr = (Op, Buf, Buf, Buf, f64);

/// The gradient a rule's ops read: with an L2 weight decay, PyTorch's
/// `grad = grad.add(param, alpha=weight_decay)` (a new tensor) first.
pub fn l2_grad(weight_decay: f64) -> (Vec<Instr>, Buf) {
    if weight_decay != 0.0 {
        (vec![(Op::AddOf, Buf::GradWd, Buf::Grad, Buf::Param, weight_decay)], Buf::GradWd)
    } else {
        (Vec::new(), Buf::Grad)
    }
}
