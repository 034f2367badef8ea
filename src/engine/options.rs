//! The engine's knobs ([`EngineOptions`]) and when it takes the wide
//! access path ([`WideAccess`]).

use std::sync::Arc;

use super::{GradControl, PipelineCache, StateFormat};

/// Engine knobs. Defaults suit every adapter.
#[derive(Clone)]
pub struct EngineOptions {
    /// Workgroup size (the shader's `override WG`). Default 256.
    pub workgroup_size: u32,
    /// Chunks of 4 elements each invocation updates (the shader's `override
    /// CHUNKS`; a table row is 4·WG·CHUNKS elements). Default 4: on lavapipe
    /// a step at 2^20 elements is about twice as fast as with 1, because an
    /// invocation's fixed costs are shared by more elements. 8-bit state
    /// uses at most 4 (its blocks are table rows of 4·WG·chunks values). The
    /// wide access path moves 8 elements per unit and runs half as many
    /// units (at least 1), so its rows match the vec4 path's.
    pub chunks_per_invocation: u32,
    /// Caps the bytes bound per storage binding below the device limit, to
    /// force chunking (testing). `None`: use the device limits.
    pub max_binding_bytes: Option<u64>,
    /// Shared pipeline cache; `None` makes a private one.
    pub cache: Option<Arc<PipelineCache>>,
    /// Use 16-byte vector loads where every tensor starts at a multiple of
    /// 4 elements (and the bound ranges can be rounded up to whole vec4s).
    /// Default `true`; `false` forces the scalar-access kernel. Both give
    /// bitwise-identical results.
    pub vec4: bool,
    /// When to use the wide access path ([`Access::Wide`](super::Access::Wide): 64-bit packed
    /// loads and stores, 8 elements each) over vec4. Default
    /// [`WideAccess::Auto`].
    pub wide: WideAccess,
    /// Benchmarks only: run the engine-overhead ceiling kernel (same bytes,
    /// no arithmetic) instead of the rule. Params and state become garbage.
    pub ceiling: bool,
    /// Clipping and loss scaling on the GPU (default: none).
    pub grad_control: GradControl,
    /// Precision of the optimizer state (default f32).
    pub state_format: StateFormat,
    /// Let tensor pieces shorter than a table row share workgroup rows
    /// (see [`super::table`]). Default `true`; results are bitwise the same
    /// either way, except the grad norm of clipping and loss scaling, whose
    /// per-workgroup partials are summed in another order. 8-bit state never
    /// packs: its rows are its quantisation blocks.
    pub pack_rows: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { workgroup_size: 256, chunks_per_invocation: 4, max_binding_bytes: None, cache: None, vec4: true, wide: WideAccess::Auto, ceiling: false, grad_control: GradControl::default(), state_format: StateFormat::F32, pack_rows: true }
    }
}

impl EngineOptions {
    /// Whether short pieces share rows under these options.
    pub(crate) fn packs_rows(&self) -> bool {
        self.pack_rows && self.state_format != StateFormat::Int8Blockwise
    }
}

/// When the engine uses [`Access::Wide`](super::Access::Wide). It needs the device feature
/// `SHADER_INT64` (request it when creating the device; [`crate::device::headless`]
/// does), f32 or bf16 state, vec4 access allowed, and every tensor on a
/// multiple of 8 elements; otherwise the engine uses vec4 (or scalar)
/// access. Results are bitwise the same either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WideAccess {
    /// Only on a CPU adapter (lavapipe, SwiftShader), where the number of
    /// memory instructions is the cost and the wide path was measured
    /// faster. GPUs coalesce vec4 loads already.
    #[default]
    Auto,
    /// Wherever the device allows it.
    Always,
    /// Never.
    Never,
}

impl WideAccess {
    pub(crate) fn wanted(self, device: &wgpu::Device) -> bool {
        let allowed = device.features().contains(wgpu::Features::SHADER_INT64);
        allowed
            && match self {
                WideAccess::Auto => device.adapter_info().device_type == wgpu::DeviceType::Cpu,
                WideAccess::Always => true,
                WideAccess::Never => false,
            }
    }
}
