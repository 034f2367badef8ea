//! The unfused op vocabulary: how a rule describes PyTorch's single-tensor
//! (`foreach=False, fused=False`) step as a sequence of elementwise
//! operations, one kernel launch each ([`RuleConfig::unfused`](super::RuleConfig::unfused)).
//! The benchmark's baseline (`crate::bench::unfused`) executes it.

/// Elementwise operations of `shaders/bench/elementwise.wgsl` (the `OP` constant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `x ← x·a` (`x.mul_(a)`).
    MulScalar = 0,
    /// `x ← x + a·y` (`x.add_(y, alpha=a)`).
    AddScaled = 1,
    /// `x ← x + a·(y − x)` (`x.lerp_(y, a)`).
    Lerp = 2,
    /// `x ← x + a·y·z` (`x.addcmul_(y, z, value=a)`).
    Addcmul = 3,
    /// `x ← √y` (`x = y.sqrt()`).
    SqrtOf = 4,
    /// `x ← x/a` (`x.div_(a)`).
    DivScalar = 5,
    /// `x ← x + a` (`x.add_(a)`).
    AddScalar = 6,
    /// `x ← x + a·y/z` (`x.addcdiv_(y, z, value=a)`).
    Addcdiv = 7,
    /// `x ← x/y` (`x.div_(y)`).
    Div = 8,
    /// `x ← x·y` (`x.mul_(y)`).
    Mul = 9,
    /// `x ← y + a·z` (`x = y.add(z, alpha=a)`).
    AddOf = 10,
    /// `x ← √x` (`x.sqrt_()`).
    Sqrt = 11,
    /// `x ← y + a` (`x = y.add(a)`).
    AddScalarOf = 12,
}

/// Buffers an operation names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Buf {
    /// The parameter tensor.
    Param,
    /// The gradient, as given.
    Grad,
    /// The gradient with the L2 term added (a new tensor, as in PyTorch).
    GradWd,
    /// State slot 0 of the rule.
    State0,
    /// State slot 1 of the rule.
    State1,
    /// A scratch tensor.
    Tmp0,
    /// A second scratch tensor.
    Tmp1,
    /// No operand: a placeholder for one the op does not read.
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
