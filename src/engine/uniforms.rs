//! The per-step uniform (binding 0): a header of flags, the step counter and
//! the grad-control settings, then each param group's scalars. Written once
//! per recorded step into the next slot of a ring, so up to `ring_slots`
//! steps can be recorded before a submit. The WGSL `StepHead` is generated
//! from the Rust declaration below.

use super::MAX_GROUPS;
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
        pub flags: u32,
        /// Host step count, 1-based (this step).
        pub step: u32,
        /// Workgroups over all windows (number of GradControl partial sums).
        pub partials: u32,
        pub growth_interval: u32,
        pub max_norm: f32,
        pub growth_factor: f32,
        pub backoff_factor: f32,
        pub n_groups: u32,
        /// Seed of the stochastic rounding of bf16 state.
        pub seed: u32,
        pub pad0: u32,
        pub pad1: u32,
        pub pad2: u32,
    }
}

/// The per-step uniform (binding 0): the header and, for each param group,
/// the rule's scalars computed on the host in f64.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepScalars {
    pub head: StepHead,
    pub groups: [Packed; MAX_GROUPS],
}

/// The WGSL declarations of the uniform's types.
pub fn wgsl() -> String {
    format!("{}\nstruct StepScalars {{\n    head: StepHead,\n    groups: array<Coeffs, {MAX_GROUPS}>,\n}}\n", StepHead::wgsl())
}

/// The ring of per-step uniform slots, each holding a `T`.
pub struct Ring<T = StepScalars> {
    pub buffer: wgpu::Buffer,
    /// Bytes between slots (the device's uniform offset alignment).
    pub stride: u64,
    pub slots: u32,
    next: u32,
    kind: std::marker::PhantomData<T>,
}

impl<T: bytemuck::Pod> Ring<T> {
    /// A ring of `slots` uniform slots.
    pub fn new(device: &wgpu::Device, slots: u32) -> Self {
        let stride = (std::mem::size_of::<T>() as u64).next_multiple_of(device.limits().min_uniform_buffer_offset_alignment as u64);
        let slots = slots.max(1);
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgpu-optim step scalars"),
            size: stride * slots as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ring { buffer, stride, slots, next: 0, kind: std::marker::PhantomData }
    }

    /// Writes `scalars` into the next slot; returns its dynamic offset.
    pub fn push(&mut self, queue: &wgpu::Queue, scalars: &T) -> u32 {
        let offset = self.next as u64 * self.stride;
        queue.write_buffer(&self.buffer, offset, bytemuck::bytes_of(scalars));
        self.next = (self.next + 1) % self.slots;
        offset as u32
    }

    /// The binding of one slot.
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &self.buffer, offset: 0, size: wgpu::BufferSize::new(std::mem::size_of::<T>() as u64) })
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
