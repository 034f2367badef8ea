//! From a burn tensor to the wgpu buffer range that holds it, pinned: while
//! a [`TensorBuffer`] lives, burn's memory manager neither frees, reuses
//! nor relocates the range.

use burn::backend::wgpu::{AutoCompiler, CubeBackend};
use burn::backend::ir::TensorId;
use burn::backend::Cube;
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

/// Resolves `t` (draining burn's lazy work for it into burn's encoder, not
/// submitting it) and pins its buffer range.
///
/// **Errors:** [`Error::Unsupported`] for a tensor that is not f32 and
/// contiguous on the cubecl wgpu backend.
pub fn buffer_of<const D: usize>(path: &str, t: &Tensor<D>) -> Result<TensorBuffer> {
    let unsupported = |why: &str| Error::Unsupported { path: path.to_string(), why: why.to_string() };
    let prim = t.clone().inner().try_into_primitive::<Cube>().map_err(|e| unsupported(&format!("not on burn's cubecl backend ({e:?})")))?;
    let client = prim.client.clone();
    let cube = client.resolve_tensor_float::<CubeBackend>(prim);
    if cube.dtype != DType::F32 {
        return Err(unsupported(&format!("dtype {:?}, the engine steps f32", cube.dtype)));
    }
    if !cube.is_contiguous() {
        return Err(unsupported("not contiguous"));
    }
    let numel = cube.meta.shape().num_elements() as u64;
    let res = cube.client.get_resource::<WgpuServer<AutoCompiler>>(cube.handle.clone()).map_err(|e| unsupported(&format!("no wgpu resource ({e:?})")))?;
    let (buffer, offset, size) = {
        let r = res.resource();
        (r.buffer.clone(), r.offset, r.size)
    };
    if size < 4 * numel || offset % 4 != 0 {
        return Err(unsupported("the resolved range does not hold the tensor"));
    }
    Ok(TensorBuffer { buffer, offset, numel, _pin: Box::new(res) })
}
