//! The per-step uniform (binding 0): a header of flags, the step counter and
//! the grad-control settings, then each param group's scalars. Uploaded by
//! a copy recorded into the step's own encoder ([`record_upload`]), so any
//! number of steps can be recorded before a submit and each reads its own
//! scalars. The WGSL `StepHead` is generated from the Rust declaration below.

use super::MAX_GROUPS;
use crate::error::{OptimError, Result};
use crate::rules::Packed;

/// Declares a `#[repr(C)]` struct of 4-byte scalars and its WGSL twin.
macro_rules! gpu_struct {
    ($(#[$doc:meta])* pub struct $name:ident { $($(#[$fdoc:meta])* pub $field:ident: $ty:ident,)+ }) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: $ty,)+
        }

        impl $name {
            /// The WGSL declaration of this struct.
            pub fn wgsl() -> String {
                let mut s = format!("struct {} {{\n", stringify!($name));
                $(s += &format!("    {}: {},\n", stringify!($field), stringify!($ty));)+
                s + "}\n"
            }
        }
    };
}
pub(crate) use gpu_struct;

gpu_struct! {
    /// Header of the per-step uniform.
    pub struct StepHead {
        /// Flag bits (`rules::flags`): the rule's options, grad control's, and `FIRST_STEP` on step 1.
        pub flags: u32,
        /// Host step count, 1-based (this step).
        pub step: u32,
        /// Workgroups over all windows (number of GradControl partial sums).
        pub partials: u32,
        /// GradScaler's clean steps before the scale grows.
        pub growth_interval: u32,
        /// Clipping threshold of the grad norm (0 without clipping).
        pub max_norm: f32,
        /// GradScaler's growth factor.
        pub growth_factor: f32,
        /// GradScaler's backoff factor.
        pub backoff_factor: f32,
        /// Number of param groups.
        pub n_groups: u32,
        /// Seed of the stochastic rounding of bf16 state.
        pub seed: u32,
        /// What the clip factor adds to the norm ([`GradControl::norm_eps`](super::GradControl::norm_eps)).
        pub norm_eps: f32,
        /// Padding to three vec4s.
        pub pad1: u32,
        /// Padding to three vec4s.
        pub pad2: u32,
    }
}

/// The per-step uniform (binding 0): the header and, for each param group,
/// the rule's scalars computed on the host in f64.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepScalars {
    /// Flags, step counter and grad-control settings.
    pub head: StepHead,
    /// Each param group's rule scalars (`Coeffs` in WGSL); unused groups are zero.
    pub groups: [Packed; MAX_GROUPS],
}

/// The WGSL declarations of the uniform's types.
pub fn wgsl() -> String {
    format!("{}\nstruct StepScalars {{\n    head: StepHead,\n    groups: array<Coeffs, {MAX_GROUPS}>,\n}}\n", StepHead::wgsl())
}

/// Records into `encoder` a copy of `bytes` to `dst` at byte `offset`, from
/// a fresh staging buffer that holds them, so the write lands in the
/// encoder's own order: between the passes recorded before and after it.
/// (`Queue::write_buffer` lands before the whole next submission, so two
/// writes to one place recorded before a submit would both precede every
/// pass.) `bytes.len()` and `offset` must be multiples of 4.
///
/// **Errors:** [`OptimError::InvalidOptions`] for a length or offset that
/// is not a multiple of 4 (nothing is recorded); [`OptimError::Wgpu`] if
/// the staging buffer cannot be mapped (the device is lost or out of
/// memory).
pub fn record_upload(device: &wgpu::Device, encoder: &mut wgpu::CommandEncoder, dst: &wgpu::Buffer, offset: u64, bytes: &[u8]) -> Result<()> {
    if !bytes.len().is_multiple_of(4) || !offset.is_multiple_of(4) {
        return Err(OptimError::InvalidOptions("an upload's length and offset must be multiples of 4 bytes"));
    }
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("wgpu-optim upload"),
        size: bytes.len() as u64,
        usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: true,
    });
    staging.get_mapped_range_mut(..).map_err(|e| OptimError::Wgpu(format!("staging upload: {e}")))?.copy_from_slice(bytes);
    staging.unmap();
    encoder.copy_buffer_to_buffer(&staging, 0, dst, offset, bytes.len() as u64);
    Ok(())
}

/// A uniform holding one `T` per step: each recorded step uploads its own
/// value in encoder order ([`record_upload`]), so steps recorded before one
/// submit see bitwise what one submit per step would.
pub struct StepUniform<T = StepScalars> {
    /// The uniform buffer, `size_of::<T>()` rounded up to the copy alignment (bytes).
    pub buffer: wgpu::Buffer,
    kind: std::marker::PhantomData<T>,
}

impl<T: bytemuck::Pod> StepUniform<T> {
    /// An uninitialised uniform of one `T`.
    pub fn new(device: &wgpu::Device) -> Self {
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgpu-optim step scalars"),
            size: (std::mem::size_of::<T>() as u64).next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        StepUniform { buffer, kind: std::marker::PhantomData }
    }

    /// Records the upload of this step's `value` into `encoder`, to be
    /// followed by the step's passes.
    ///
    /// **Errors:** as [`record_upload`].
    pub fn record(&self, device: &wgpu::Device, encoder: &mut wgpu::CommandEncoder, value: &T) -> Result<()> {
        record_upload(device, encoder, &self.buffer, 0, bytemuck::bytes_of(value))
    }

    /// The binding of the uniform.
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        self.buffer.as_entire_binding()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_is_three_vec4s_and_its_wgsl_names_every_field() {
        assert_eq!(std::mem::size_of::<StepHead>(), 48);
        let w = StepHead::wgsl();
        for field in ["flags: u32", "step: u32", "max_norm: f32", "seed: u32"] {
            assert!(w.contains(field), "{w}");
        }
        assert_eq!(std::mem::size_of::<StepScalars>(), 48 + 48 * MAX_GROUPS);
    }
}
