//! The sharded optimizer over a world of one process (the transport-agnostic
//! part; `integrations/mpi` runs real ranks): bitwise the plain optimizer,
//! state for the shard alone, and typed errors for what it does not support.

mod common;

use wgpu_optim::device::read_f32;
use wgpu_optim::shard::{ShardedOptimizer, SingleProcess};
use wgpu_optim::validate::{random_params, uniform};
use wgpu_optim::*;

#[test]
fn one_rank_is_the_plain_optimizer_bitwise() {
    let gpu = require_gpu!();
    let config = OptimizerConfig::from(AdamW { lr: 1e-2, weight_decay: 0.1, ..AdamW::default() });
    let run = |sharded: bool| {
        let p = common::storage_buffer(gpu, &random_params(80, 1200));
        let g = common::storage_buffer(gpu, &vec![0.0; 1200]);
        let slices = [ParamSlice::range(&p, 1, &g, 1, 1000), ParamSlice::range(&p, 1003, &g, 1003, 190)];
        let mut plain = (!sharded).then(|| Optimizer::new(&gpu.device, &gpu.queue, config, &slices).unwrap());
        let mut shard = sharded.then(|| ShardedOptimizer::new(SingleProcess, &gpu.device, &gpu.queue, &[config], &slices, EngineOptions::default()).unwrap());
        for t in 0..5 {
            let grads: Vec<f32> = (0..1200).map(|i| uniform(81, t, i)).collect();
            gpu.queue.write_buffer(&g, 0, bytemuck::cast_slice(&grads));
            match (&mut plain, &mut shard) {
                (Some(o), _) => o.step().unwrap(),
                (_, Some(o)) => o.step().unwrap(),
                _ => unreachable!(),
            }
        }
        if let Some(o) = &shard {
            assert_eq!(o.step_count(), 5);
            assert_eq!(o.state_bytes(), 2 * 4 * 1190, "exp_avg and exp_avg_sq of the shard alone");
        }
        read_f32(&gpu.device, &gpu.queue, &p, 0, 1200).unwrap().iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    };
    assert_eq!(run(true), run(false));
}

#[test]
fn what_sharding_does_not_support_is_a_typed_error() {
    let gpu = require_gpu!();
    let p = common::storage_buffer(gpu, &[0.5; 64]);
    let g = common::storage_buffer(gpu, &[0.0; 64]);
    let slices = [ParamSlice::whole(&p, &g)];
    let int8 = EngineOptions { state_format: StateFormat::Int8Blockwise, ..EngineOptions::default() };
    let bf16 = EngineOptions { state_format: StateFormat::Bf16 { seed: 1 }, ..EngineOptions::default() };
    for options in [int8, bf16] {
        let e = ShardedOptimizer::new(SingleProcess, &gpu.device, &gpu.queue, &[AdamW::default().into()], &slices, options).err();
        assert!(matches!(e, Some(OptimError::InvalidOptions(_))), "{e:?}");
    }
    let overlap = [ParamSlice::range(&p, 0, &g, 0, 10), ParamSlice::range(&p, 5, &g, 0, 10)];
    let e = ShardedOptimizer::new(SingleProcess, &gpu.device, &gpu.queue, &[AdamW::default().into()], &overlap, EngineOptions::default()).err();
    assert!(matches!(e, Some(OptimError::Overlap { .. })), "{e:?}");
    let no_copy = gpu.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: 256, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false });
    let e = ShardedOptimizer::new(SingleProcess, &gpu.device, &gpu.queue, &[AdamW::default().into()], &[ParamSlice::whole(&no_copy, &g)], EngineOptions::default()).err();
    assert!(matches!(e, Some(OptimError::MissingUsage { index: 0, which: "param", .. })), "{e:?}");
    let muon = wgpu_optim::matrix::TensorRule::Muon(Muon::default());
    let e = ShardedOptimizer::tensorwise(SingleProcess, &gpu.device, &gpu.queue, muon, &slices, EngineOptions::default()).err();
    assert!(matches!(e, Some(OptimError::ShapeRequired { index: 0, .. })), "{e:?}");
}
