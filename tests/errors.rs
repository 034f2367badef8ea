//! Bad input returns typed errors, never a panic.

mod common;

use wgpu_optim::*;

fn buffers(gpu: &device::Gpu, n: usize, m: usize) -> (wgpu::Buffer, wgpu::Buffer) {
    (common::storage_buffer(gpu, &vec![1.0; n]), common::storage_buffer(gpu, &vec![1.0; m]))
}

#[test]
fn mismatched_lengths() {
    let gpu = require_gpu!();
    let (p, g) = buffers(gpu, 10, 11);
    let e = Optimizer::new(&gpu.device, &gpu.queue, Adam::default().into(), &[ParamSlice::whole(&p, &g)]).err();
    assert_eq!(e, Some(OptimError::LengthMismatch { index: 0, param_len: 10, grad_len: 11 }));
}

#[test]
fn empty_parameter_list() {
    let gpu = require_gpu!();
    let e = Optimizer::new(&gpu.device, &gpu.queue, Adam::default().into(), &[]).err();
    assert_eq!(e, Some(OptimError::EmptyParams));
}

#[test]
fn bad_learning_rates() {
    let gpu = require_gpu!();
    let (p, g) = buffers(gpu, 10, 10);
    for lr in [-1e-3, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let configs: [OptimizerConfig; 6] = [
            Sgd { lr, ..Sgd::default() }.into(),
            Adagrad { lr, ..Adagrad::default() }.into(),
            RmsProp { lr, ..RmsProp::default() }.into(),
            Adadelta { lr, ..Adadelta::default() }.into(),
            Adam { lr, ..Adam::default() }.into(),
            AdamW { lr, ..AdamW::default() }.into(),
        ];
        for c in configs {
            let e = Optimizer::new(&gpu.device, &gpu.queue, c, &[ParamSlice::whole(&p, &g)]).err();
            assert!(matches!(e, Some(OptimError::InvalidHyperparameter { name: "lr", .. })), "lr={lr}: {e:?}");
        }
    }
    // set_lr is validated too and leaves the old value in place.
    let mut opt = Optimizer::new(&gpu.device, &gpu.queue, Adam::default().into(), &[ParamSlice::whole(&p, &g)]).unwrap();
    assert!(opt.set_lr(0, f64::NAN).is_err());
    assert_eq!(opt.config(0).unwrap().lr(), 1e-3);
}

#[test]
fn betas_outside_unit_interval() {
    let gpu = require_gpu!();
    let (p, g) = buffers(gpu, 10, 10);
    for betas in [(1.0, 0.999), (0.9, 1.0), (-0.1, 0.999), (0.9, f64::NAN)] {
        for c in [OptimizerConfig::from(Adam { betas, ..Adam::default() }), AdamW { betas, ..AdamW::default() }.into()] {
            let e = Optimizer::new(&gpu.device, &gpu.queue, c, &[ParamSlice::whole(&p, &g)]).err();
            assert!(matches!(e, Some(OptimError::InvalidHyperparameter { .. })), "{betas:?}: {e:?}");
        }
    }
    let e = RmsProp { alpha: 1.0, ..RmsProp::default() }.validate().err();
    assert!(matches!(e, Some(OptimError::InvalidHyperparameter { name: "alpha", .. })));
}

#[test]
fn eps_not_positive() {
    for eps in [0.0, -1e-8, f64::NAN] {
        assert!(matches!(Adam { eps, ..Adam::default() }.validate(), Err(OptimError::InvalidHyperparameter { name: "eps", .. })));
        assert!(matches!(Adagrad { eps, ..Adagrad::default() }.validate(), Err(OptimError::InvalidHyperparameter { name: "eps", .. })));
        assert!(matches!(RmsProp { eps, ..RmsProp::default() }.validate(), Err(OptimError::InvalidHyperparameter { name: "eps", .. })));
        assert!(matches!(Adadelta { eps, ..Adadelta::default() }.validate(), Err(OptimError::InvalidHyperparameter { name: "eps", .. })));
    }
}

#[test]
fn rho_outside_closed_unit_interval() {
    for rho in [-0.1, 1.0001, f64::NAN] {
        assert!(matches!(Adadelta { rho, ..Adadelta::default() }.validate(), Err(OptimError::InvalidHyperparameter { name: "rho", .. })));
    }
    assert!(Adadelta { rho: 1.0, ..Adadelta::default() }.validate().is_ok());
    assert!(Adadelta { rho: 0.0, ..Adadelta::default() }.validate().is_ok());
}

#[test]
fn nesterov_without_momentum() {
    let gpu = require_gpu!();
    let (p, g) = buffers(gpu, 10, 10);
    let c = Sgd { nesterov: true, ..Sgd::default() };
    let e = Optimizer::new(&gpu.device, &gpu.queue, c.into(), &[ParamSlice::whole(&p, &g)]).err();
    assert!(matches!(e, Some(OptimError::InvalidOptions(_))), "{e:?}");
}

#[test]
fn buffer_without_storage_usage() {
    let gpu = require_gpu!();
    let p = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 40,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::VERTEX,
        mapped_at_creation: false,
    });
    let (_, g) = buffers(gpu, 10, 10);
    let e = Optimizer::new(&gpu.device, &gpu.queue, Adam::default().into(), &[ParamSlice::whole(&p, &g)]).err();
    assert!(matches!(e, Some(OptimError::MissingUsage { which: "param", .. })), "{e:?}");
    let e = Optimizer::new(&gpu.device, &gpu.queue, Adam::default().into(), &[ParamSlice::whole(&g, &p)]).err();
    assert!(matches!(e, Some(OptimError::MissingUsage { which: "grad", .. })), "{e:?}");
}

#[test]
fn slices_out_of_bounds_and_other_misuse() {
    let gpu = require_gpu!();
    let (p, g) = buffers(gpu, 10, 10);
    let e = Optimizer::new(&gpu.device, &gpu.queue, Adam::default().into(), &[ParamSlice::range(&p, 5, &g, 0, 6)]).err();
    assert!(matches!(e, Some(OptimError::OutOfBounds { which: "param", .. })), "{e:?}");
    let e = Optimizer::new(&gpu.device, &gpu.queue, Adam::default().into(), &[ParamSlice::whole(&p, &p)]).err();
    assert!(matches!(e, Some(OptimError::InvalidOptions(_))), "{e:?}");
    let e = Optimizer::new(&gpu.device, &gpu.queue, Adam::default().into(), &[ParamSlice::whole(&p, &g).in_group(3)]).err();
    assert!(matches!(e, Some(OptimError::UnknownGroup { .. })), "{e:?}");
    let e = Optimizer::with_groups(&gpu.device, &gpu.queue, &[Adam::default().into(), Sgd::default().into()], &[ParamSlice::whole(&p, &g)], EngineOptions::default()).err();
    assert!(matches!(e, Some(OptimError::GroupMismatch { index: 1 })), "{e:?}");
    let opts = EngineOptions { workgroup_size: 1 << 20, ..EngineOptions::default() };
    let e = Optimizer::with_groups(&gpu.device, &gpu.queue, &[Adam::default().into()], &[ParamSlice::whole(&p, &g)], opts).err();
    assert!(matches!(e, Some(OptimError::ExceedsLimits(_))), "{e:?}");
}

/// A wgpu validation error (here: a destroyed buffer) is captured with an
/// error scope and returned as `OptimError::Wgpu`, not a panic.
#[test]
fn wgpu_validation_errors_are_captured() {
    let gpu = require_gpu!();
    let (p, g) = buffers(gpu, 10, 10);
    p.destroy();
    let r = Optimizer::new(&gpu.device, &gpu.queue, Adam::default().into(), &[ParamSlice::whole(&p, &g)]);
    match r {
        Err(OptimError::Wgpu(_)) => {}
        Ok(mut opt) => assert!(matches!(opt.step(), Err(OptimError::Wgpu(_)))),
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

#[test]
fn step_counter_overflow_is_an_error() {
    let gpu = require_gpu!();
    let (p, g) = buffers(gpu, 10, 10);
    let mut opt = Optimizer::new(&gpu.device, &gpu.queue, Sgd::default().into(), &[ParamSlice::whole(&p, &g)]).unwrap();
    opt.set_step_count(u32::MAX);
    let before = device::read_f32(&gpu.device, &gpu.queue, &p, 0, 10).unwrap();
    assert_eq!(opt.step(), Err(OptimError::StepOverflow));
    // nothing changed: params, step counter, and a step can still be refused again
    assert_eq!(device::read_f32(&gpu.device, &gpu.queue, &p, 0, 10).unwrap(), before);
    assert_eq!(opt.step_count(), u32::MAX);
    assert_eq!(opt.step(), Err(OptimError::StepOverflow));
}

/// Overlapping param ranges would be stepped twice (PyTorch rejects a
/// parameter in two groups); a param range that is another's grad would be
/// changed by the step. Both are refused naming the pair, by the engine,
/// the tensor-wise optimizers and the EMA; shared grads are allowed.
#[test]
fn overlapping_params_are_refused_naming_both() {
    let gpu = require_gpu!();
    let (p, g) = buffers(gpu, 200, 200);
    let adam = || OptimizerConfig::from(Adam::default());
    let overlap = [ParamSlice::range(&p, 0, &g, 0, 10), ParamSlice::range(&p, 0, &g, 100, 100), ParamSlice::range(&p, 100, &g, 0, 60).in_group(1)];
    let e = Optimizer::with_groups(&gpu.device, &gpu.queue, &[adam(), adam()], &overlap, EngineOptions::default()).err();
    assert_eq!(e, Some(OptimError::Overlap { first: 0, second: 1, what: "their param ranges share elements" }));
    // [50, 150) meets [0, 100) though it starts after [0, 10) ends.
    let overlap = [ParamSlice::range(&p, 0, &g, 0, 100), ParamSlice::range(&p, 150, &g, 0, 10), ParamSlice::range(&p, 50, &g, 0, 100)];
    let e = Optimizer::new(&gpu.device, &gpu.queue, adam(), &overlap).err();
    assert_eq!(e, Some(OptimError::Overlap { first: 0, second: 2, what: "their param ranges share elements" }));
    let e = LambOptimizer::new(&gpu.device, &gpu.queue, Lamb::default(), &overlap).err();
    assert!(matches!(e, Some(OptimError::Overlap { first: 0, second: 2, .. })), "{e:?}");
    let e = WeightEma::new(&gpu.device, &gpu.queue, 0.9, &overlap).err();
    assert!(matches!(e, Some(OptimError::Overlap { first: 0, second: 2, .. })), "{e:?}");
    // Tensor 1's grad is tensor 0's param range: the step would change it.
    let crossed = [ParamSlice::range(&p, 0, &g, 0, 10), ParamSlice::range(&g, 0, &p, 20, 10)];
    let e = Optimizer::new(&gpu.device, &gpu.queue, adam(), &crossed).err();
    assert!(matches!(e, Some(OptimError::Overlap { first: 0, second: 1, .. })), "{e:?}");
    // Adjacent params and shared grads are fine.
    let ok = [ParamSlice::range(&p, 0, &g, 0, 100), ParamSlice::range(&p, 100, &g, 0, 100)];
    Optimizer::new(&gpu.device, &gpu.queue, adam(), &ok).unwrap();
}

#[test]
fn a_buffer_of_partial_f32_is_refused() {
    let gpu = require_gpu!();
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
    let p = gpu.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: 402, usage, mapped_at_creation: false });
    let g = common::storage_buffer(gpu, &[0.0; 100]);
    let e = Optimizer::new(&gpu.device, &gpu.queue, Adam::default().into(), &[ParamSlice::whole(&p, &g)]).err();
    assert_eq!(e, Some(OptimError::PartialElement { index: 0, which: "param", bytes: 402 }));
}

#[test]
fn set_lr_on_a_missing_group_names_the_group() {
    let gpu = require_gpu!();
    let (p, g) = buffers(gpu, 10, 10);
    let mut opt = Optimizer::new(&gpu.device, &gpu.queue, Adam::default().into(), &[ParamSlice::whole(&p, &g)]).unwrap();
    let e = opt.set_lr(1, 0.1).unwrap_err();
    assert_eq!(e, OptimError::GroupOutOfRange { group: 1, groups: 1 });
    assert_eq!(e.to_string(), "no param group 1: the optimizer has 1 group");
    let e = OptimError::UnknownGroup { index: 3, group: 2, groups: 2 };
    assert_eq!(e.to_string(), "parameter 3 refers to param group 2, but the optimizer has 2 groups");
}

#[test]
fn an_upload_of_partial_words_is_refused() {
    let gpu = require_gpu!();
    let dst = common::storage_buffer(gpu, &[0.0; 4]);
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    for (offset, bytes) in [(0, &[0u8; 3][..]), (2, &[0u8; 4][..])] {
        let e = wgpu_optim::engine::uniforms::record_upload(&gpu.device, &mut encoder, &dst, offset, bytes).err();
        assert!(matches!(e, Some(OptimError::InvalidOptions(_))), "{e:?}");
    }
}
