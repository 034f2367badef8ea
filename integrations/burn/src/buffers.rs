//! From a burn tensor to the wgpu buffer range that holds it, pinned: while
//! a [`TensorBuffer`] lives, burn's memory manager neither frees, reuses
//! nor relocates the range.

use burn::backend::wgpu::{AutoCompiler, CubeBackend};
use burn::backend::ir::TensorId;
use burn::backend::Cube;
use burn::backend::wgpu::CubeTensor;
use burn::cubecl::wgpu::WgpuServer;
use burn::tensor::{DType, Tensor};

use crate::error::{Error, Result};

/// The buffer range of one f32 tensor, pinned in place.
pub struct TensorBuffer {
    pub buffer: wgpu::Buffer,
    /// Offset of the tensor's first element, in bytes.
    pub offset: u64,
    pub numel: u64,
    _pin: Box<dyn std::any::Any>,
}

impl TensorBuffer {
    /// The offset in f32 elements.
    pub fn element_offset(&self) -> u64 {
        self.offset / 4
    }
}

/// The identity of a tensor's storage in burn's fusion layer: unchanged
/// while the tensor is (the same storage, not a replacement). Cheap: no
/// round trip to burn's device thread.
pub fn storage_id<const D: usize>(t: &Tensor<D>) -> Option<TensorId> {
    t.clone().inner().try_into_primitive::<Cube>().ok().map(|p| p.id)
}

/// An f32 contiguous tensor resolved to its storage in burn's memory
/// manager, not yet pinned.
pub struct Resolved {
    path: String,
    cube: CubeTensor,
    pub numel: u64,
}

/// Resolves `t`: burn's lazy work for it goes into burn's encoder (not
/// submitted).
///
/// **Errors:** [`Error::Unsupported`] for a tensor that is not f32 and
/// contiguous on the cubecl wgpu backend.
pub fn resolve<const D: usize>(path: &str, t: &Tensor<D>) -> Result<Resolved> {
    let prim = t.clone().inner().try_into_primitive::<Cube>().map_err(|e| unsupported(path, &format!("not on burn's cubecl backend ({e:?})")))?;
    let client = prim.client.clone();
    let cube = client.resolve_tensor_float::<CubeBackend>(prim);
    if cube.dtype != DType::F32 {
        return Err(unsupported(path, &format!("dtype {:?}, the engine steps f32", cube.dtype)));
    }
    if !cube.is_contiguous() {
        return Err(unsupported(path, "not contiguous"));
    }
    let numel = cube.meta.shape().num_elements() as u64;
    Ok(Resolved { path: path.to_string(), cube, numel })
}

fn unsupported(path: &str, why: &str) -> Error {
    Error::Unsupported { path: path.to_string(), why: why.to_string() }
}

/// Pins the buffer range of every resolved tensor, in one task on burn's
/// device thread (one round trip to it, not one per tensor: with 256
/// grads on lavapipe the round trips took 34 ms a step).
///
/// **Errors:** [`Error::Unsupported`] for a tensor without a wgpu
/// resource that holds it; [`Error::Device`] if burn's device thread
/// cannot run the task.
pub fn pin_all(resolved: &[Option<Resolved>]) -> Result<Vec<Option<TensorBuffer>>> {
    let Some(first) = resolved.iter().flatten().next() else { return Ok(resolved.iter().map(|_| None).collect()) };
    let client = first.cube.client.clone();
    let resources = client
        .exclusive(|| resolved.iter().map(|r| r.as_ref().map(|r| r.cube.client.get_resource::<WgpuServer<AutoCompiler>>(r.cube.handle.clone()))).collect::<Vec<_>>())
        .map_err(|e| Error::Device(format!("{e:?}")))?;
    let pin = resolved.iter().zip(resources).map(|(r, res)| -> Result<Option<TensorBuffer>> {
        let (Some(r), Some(res)) = (r, res) else { return Ok(None) };
        let res = res.map_err(|e| unsupported(&r.path, &format!("no wgpu resource ({e:?})")))?;
        let (buffer, offset, size) = {
            let w = res.resource();
            (w.buffer.clone(), w.offset, w.size)
        };
        if size < 4 * r.numel || offset % 4 != 0 {
            return Err(unsupported(&r.path, "the resolved range does not hold the tensor"));
        }
        Ok(Some(TensorBuffer { buffer, offset, numel: r.numel, _pin: Box::new(res) }))
    });
    pin.collect()
}

/// Resolves `t` and pins its buffer range (as the step does for its grads).
///
/// **Errors:** [`Error::Unsupported`] for a tensor that is not f32 and
/// contiguous with a wgpu resource that holds it; [`Error::Device`] if
/// burn's device thread cannot run the task.
pub fn buffer_of<const D: usize>(path: &str, t: &Tensor<D>) -> Result<TensorBuffer> {
    let pinned = pin_all(&[Some(resolve(path, t)?)])?;
    pinned.into_iter().flatten().next().ok_or_else(|| unsupported(path, "not pinned"))
}
