//! Adopting a model: every float parameter moves into a few flat persistent
//! f32 tensors on burn's device (one per binding-sized window), each
//! parameter becoming a view of its own aligned range. burn keeps using the
//! views as the parameters (forward, autodiff, records); the engine steps
//! all of them in place with one dispatch per flat tensor.

use std::collections::HashMap;

use burn::backend::fusion::stream::StreamId;
use burn::backend::fusion::NoOp;
use burn::backend::ir::{BackendIr, InitOperationIr, OperationIr, OperationOutput, TensorId};
use burn::backend::wgpu::{CubeBackend, CubeTensor};
use burn::backend::Cube;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{DType, Device, Shape, Tensor, TensorData};

use crate::buffers::{buffer_of, storage_id, TensorBuffer};
use crate::error::{Error, Result};

/// Parameters start on multiples of this many f32: 256 bytes, the largest
/// storage/uniform offset alignment wgpu allows and burn's slice alignment,
/// so every parameter is a view (a `slice` at an unaligned offset would copy).
pub const ALIGN: u64 = 64;

/// A float parameter of the model, as a group function sees it.
#[derive(Clone, Debug)]
pub struct ParamInfo {
    /// Field path in the module, e.g. `layers.0.weight`.
    pub path: String,
    pub id: ParamId,
    pub dims: Vec<usize>,
    pub numel: u64,
}

/// Where an adopted parameter lives.
pub(crate) struct Placed {
    pub info: ParamInfo,
    pub flat: usize,
    /// Element offset in the flat tensor.
    pub offset: u64,
    /// burn's identity of the view, to notice a replaced tensor cheaply.
    pub storage: Option<TensorId>,
}

/// One flat tensor holding many parameters.
pub(crate) struct Flat {
    pub tensor: Tensor<1>,
    pub buffer: TensorBuffer,
    pub len: u64,
}

/// The adopted layout.
pub(crate) struct Layout {
    pub params: Vec<Placed>,
    pub flats: Vec<Flat>,
}

/// Collects every float parameter with its path and values.
#[derive(Default)]
struct Collect {
    path: Vec<String>,
    found: Vec<(ParamInfo, Vec<f32>)>,
    error: Option<Error>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let path = self.path.join(".");
        let values = t.clone().inner().into_data().convert::<f32>().try_into_vec::<f32>();
        match values {
            Ok(v) => {
                let info = ParamInfo { path, id: param.id, dims: t.dims().to_vec(), numel: v.len() as u64 };
                self.found.push((info, v));
            }
            Err(e) => self.error = Some(Error::Unsupported { path, why: format!("{e:?}") }),
        }
    }
}

/// Replaces each parameter by its view in a flat tensor.
struct Replace<'a> {
    by_id: HashMap<ParamId, &'a Placed>,
    flats: &'a [Flat],
}

impl ModuleMapper for Replace<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(placed) = self.by_id.get(&param.id) else { return param };
        let flat = &self.flats[placed.flat].tensor;
        param.map(|old| {
            let view: Tensor<D> = view_of(flat, placed.offset, &placed.info.dims, self.flats[placed.flat].len);
            if !old.is_autodiff() {
                return view;
            }
            let mut t = view.autodiff();
            if let Some(s) = old.gradient_checkpointing_strategy() {
                t = t.with_gradient_checkpointing_strategy(s);
            }
            t.set_require_grad(old.is_require_grad())
        })
    }
}

/// A tensor of shape `dims` that is elements `[start, start + numel)` of
/// `flat`, sharing its memory. burn's own `slice` makes a view only when
/// both the start and the distance to the end are aligned and copies
/// otherwise, so the view is built from the flat's handle with byte offsets
/// and registered with burn's fusion layer as an initialised tensor (as
/// burn's `float_from_data` does). The start is aligned (`ALIGN`), which is
/// what binding it needs; the end only needs whole f32s.
fn view_of<const D: usize>(flat: &Tensor<1>, start: u64, dims: &[usize], flat_len: u64) -> Tensor<D> {
    let prim = flat.clone().inner().try_into_primitive::<Cube>().expect("the flat tensor lives on burn's cubecl backend");
    let client = prim.client.clone();
    let cube = client.resolve_tensor_float::<CubeBackend>(prim);
    let numel = dims.iter().product::<usize>() as u64;
    let handle = cube.handle.clone().offset_start(4 * start).offset_end(4 * (flat_len - start - numel));
    let shape = Shape::from(dims.to_vec());
    let view = CubeTensor::new_contiguous(cube.client.clone(), cube.device.clone(), shape.clone(), handle, DType::F32);
    let handle = <CubeBackend as BackendIr>::float_tensor_handle(view);
    let desc = InitOperationIr::create(shape, DType::F32, || client.register_tensor_handle(handle));
    let fused = client.register(StreamId::current(), OperationIr::Init(desc), NoOp::<CubeBackend>::new()).output();
    Tensor::from_primitive::<Cube>(fused)
}

/// Records each parameter's view identity after the replacement.
struct Identify<'a> {
    storage: &'a mut HashMap<ParamId, Option<TensorId>>,
}

impl ModuleVisitor for Identify<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.storage.insert(param.id, storage_id(&param.val()));
    }
}

/// Places the parameters in flats of at most `max_flat` elements.
fn place(found: &[(ParamInfo, Vec<f32>)], max_flat: u64) -> Vec<(usize, u64)> {
    let mut at = Vec::with_capacity(found.len());
    let (mut flat, mut used) = (0usize, 0u64);
    for (info, _) in found {
        if used > 0 && used + info.numel > max_flat {
            (flat, used) = (flat + 1, 0);
        }
        at.push((flat, used));
        used = (used + info.numel).next_multiple_of(ALIGN);
    }
    at
}

/// Moves `model`'s float parameters into flat persistent tensors on
/// `device` and returns the model with views in their place.
///
/// **Errors:** [`Error::Unsupported`] for a parameter that cannot be read as
/// f32 or is larger than one binding; [`Error::ParamMoved`] if burn did not
/// make a view (the engine would not see its updates).
pub(crate) fn adopt<M: Module>(model: M, device: &Device, max_flat: u64) -> Result<(M, Layout)> {
    let mut collect = Collect::default();
    model.visit(&mut collect);
    if let Some(e) = collect.error {
        return Err(e);
    }
    if let Some((info, _)) = collect.found.iter().find(|(i, _)| i.numel > max_flat || i.numel == 0) {
        return Err(Error::Unsupported { path: info.path.clone(), why: format!("{} elements (the engine steps 1 to {max_flat} per parameter here)", info.numel) });
    }
    let at = place(&collect.found, max_flat);
    let n_flats = at.iter().map(|a| a.0 + 1).max().unwrap_or(0);
    let mut flats = Vec::with_capacity(n_flats);
    for f in 0..n_flats {
        let len = collect.found.iter().zip(&at).filter(|(_, a)| a.0 == f).map(|((i, _), a)| a.1 + i.numel).max().unwrap_or(0).next_multiple_of(ALIGN);
        let mut values = vec![0f32; len as usize];
        for ((_, v), &(_, offset)) in collect.found.iter().zip(&at).filter(|(_, a)| a.0 == f) {
            values[offset as usize..offset as usize + v.len()].copy_from_slice(v);
        }
        let tensor = device.memory_persistent_allocations(values, |values| Tensor::<1>::from_data(TensorData::new(values, [len as usize]), device));
        let buffer = buffer_of("(flat parameter tensor)", &tensor)?;
        flats.push(Flat { tensor, buffer, len });
    }
    let params: Vec<Placed> = collect.found.into_iter().zip(at).map(|((info, _), (flat, offset))| Placed { info, flat, offset, storage: None }).collect();
    let by_id = params.iter().map(|p| (p.info.id, p)).collect();
    let model = model.map(&mut Replace { by_id, flats: &flats });
    let mut layout = Layout { params, flats };
    let mut storage = HashMap::new();
    model.visit(&mut Identify { storage: &mut storage });
    for p in &mut layout.params {
        p.storage = storage.get(&p.info.id).copied().flatten();
    }
    layout.check_views(&model, true)?;
    Ok((model, layout))
}

/// Resolves every parameter's buffer range.
struct Resolve<'a> {
    by_id: HashMap<ParamId, &'a Placed>,
    flats: &'a [Flat],
    error: Option<Error>,
}

impl ModuleVisitor for Resolve<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(placed) = self.by_id.get(&param.id) else { return };
        let flat = &self.flats[placed.flat].buffer;
        let ok = buffer_of(&placed.info.path, &param.val()).map(|b| b.buffer == flat.buffer && b.offset == flat.offset + 4 * placed.offset);
        if !matches!(ok, Ok(true)) && self.error.is_none() {
            self.error = Some(Error::ParamMoved(placed.info.path.clone()));
        }
    }
}

impl Layout {
    /// Checks that every parameter of `model` is still its view: by burn's
    /// tensor identity (cheap) and, where that changed or `thorough`, by
    /// resolving the buffer range.
    pub fn check_views<M: Module>(&self, model: &M, thorough: bool) -> Result<()> {
        let mut storage = HashMap::new();
        model.visit(&mut Identify { storage: &mut storage });
        if storage.len() != self.params.len() {
            return Err(Error::ModelMismatch(format!("{} float parameters, the optimizer adopted {}", storage.len(), self.params.len())));
        }
        let unchanged = self.params.iter().all(|p| p.storage.is_some() && storage.get(&p.info.id) == Some(&p.storage));
        if unchanged && !thorough {
            return Ok(());
        }
        let mut resolve = Resolve { by_id: self.params.iter().map(|p| (p.info.id, p)).collect(), flats: &self.flats, error: None };
        model.visit(&mut resolve);
        if let Some(id) = self.params.iter().find(|p| !storage.contains_key(&p.info.id)) {
            return Err(Error::ModelMismatch(format!("parameter {} is not in the model", id.info.path)));
        }
        resolve.error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_aligns_and_splits() {
        let info = |n: u64| (ParamInfo { path: String::new(), id: ParamId::new(), dims: vec![n as usize], numel: n }, Vec::new());
        let found = vec![info(10), info(64), info(1), info(200), info(100)];
        let at = place(&found, 256);
        assert_eq!(at, vec![(0, 0), (0, 64), (0, 128), (1, 0), (2, 0)]);
        assert!(at.iter().all(|a| a.1 % ALIGN == 0));
    }
}
