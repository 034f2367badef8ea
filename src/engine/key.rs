//! What a pipeline is: the kernel, entry point, access form and options
//! that key the [`PipelineCache`](super::PipelineCache), from which the
//! shader source ([`super::shader`]) is assembled.

use super::state::StateKind;
use crate::rules::Rule;

/// What a pipeline computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// A fused update rule.
    Rule(Rule),
    /// The engine-overhead ceiling: moves a rule's bytes through the same
    /// table-driven main with no arithmetic. Benchmarks only; see
    /// `shaders/bench/ceiling.wgsl`.
    Ceiling,
}

/// Entry points of the step module (`shaders/prelude/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Entry {
    /// The fused update (`main`, or `main_q8` with 8-bit state).
    Update,
    /// Per-workgroup partial sums of squares and non-finite flags.
    ReduceGrads,
    /// Norms, grad multipliers, skip and loss-scale update (one workgroup).
    FinalizeGrads,
}

/// How a pipeline binds and moves the f32 operands (params, grads, f32 and
/// bf16 state); results are bitwise the same in every form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `array<f32>`, four scalar loads per operand: tensors at any offset.
    Scalar,
    /// `array<vec4<f32>>`: every tensor starts on a whole vec4.
    Vec4,
    /// `array<vec4<u64>>`, two f32 per u64, 8 elements per access: every
    /// tensor starts on a multiple of 8 elements, and the device has
    /// `SHADER_INT64` (a naga extension, not standard WGSL). It halves the
    /// memory instructions per element, which is what a CPU adapter
    /// (lavapipe) pays for; see `shaders/prelude/wide.wgsl`.
    Wide,
}

impl Access {
    /// Elements one invocation moves per access unit (the shader's `UNIT`):
    /// 4, or 8 wide (f32 and bf16 state; 8-bit state never runs wide).
    pub fn unit(self, state: StateKind) -> u64 {
        match (self, state) {
            (Access::Scalar | Access::Vec4, _) | (Access::Wide, StateKind::Int8) => 4,
            (Access::Wide, StateKind::F32 | StateKind::Bf16) => 8,
        }
    }

    /// Element alignment every tensor start (and bound range) needs.
    pub fn alignment(self) -> u64 {
        match self {
            Access::Scalar => 1,
            Access::Vec4 => 4,
            Access::Wide => 8,
        }
    }
}

/// Which pipeline: a kernel, an entry point, a workgroup size, the memory
/// access form, and the state slots it reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    /// What the pipeline computes.
    pub kernel: Kernel,
    /// Which entry point of the step module.
    pub entry: Entry,
    /// Invocations per workgroup (the shader's `override WG`).
    pub workgroup_size: u32,
    /// Access units per invocation (the shader's `override CHUNKS`; a table
    /// row is `access.unit(state)`·WG·CHUNKS elements).
    pub chunks: u32,
    /// The option flags (`rules::flags`; the shader's `override FLAGS`), so
    /// that a disabled option's code compiles away.
    pub flags: u32,
    /// How the f32 operands are bound and accessed.
    pub access: Access,
    /// How the state slots are stored.
    pub state: StateKind,
    /// Bit i: state slot i is used (the shader's `override STATE_MASK`).
    pub state_mask: u32,
    /// 8-bit state: the slots' codings (`state::q8_mask`; the shader's
    /// `override Q8_CODING`); 0 otherwise.
    pub q8_coding: u32,
}

impl PipelineKey {
    pub(crate) fn entry_point(&self) -> &'static str {
        match (self.entry, self.state) {
            (Entry::Update, StateKind::Int8) => "main_q8",
            (Entry::Update, _) => "main",
            (Entry::ReduceGrads, _) => "reduce_grads",
            (Entry::FinalizeGrads, _) => "finalize_grads",
        }
    }

    pub(crate) fn label(&self) -> &'static str {
        match self.kernel {
            Kernel::Rule(rule) => rule.name(),
            Kernel::Ceiling => "ceiling",
        }
    }
}

/// The binding of each state slot (`shaders/prelude/common.wgsl`): the
/// fourth came after the others were numbered.
pub(crate) const STATE_BINDINGS: [u32; crate::rules::MAX_SLOTS] = [3, 4, 5, 9];
