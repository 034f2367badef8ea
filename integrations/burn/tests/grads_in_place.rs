//! A parameter with a flat tensor to itself has its grad read where burn's
//! backward pass left it: bitwise the steps of copied grads, and every step
//! really took the in-place path.

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use wgpu_optim_burn::{FusedOptimizer, SharedDevice};

#[derive(Module, Debug)]
struct One {
    w: Param<Tensor<2>>,
}

const STEPS: u32 = 20;

/// The params after `STEPS` steps of AdamW with clipping on
/// loss = Σ sin(w) + t·w²/2, and how many grads were read in place.
fn train(shared: &SharedDevice, in_place: bool) -> (Vec<u32>, u32) {
    let device: Device = shared.device.clone().autodiff();
    let init = wgpu_optim::validate::random_params(3, 37 * 29);
    let model = One { w: Param::from_tensor(Tensor::<2>::from_data(TensorData::new(init, [37, 29]), &device).require_grad()) };
    let config = wgpu_optim::AdamW { lr: 1e-2, weight_decay: 0.1, ..Default::default() };
    let (mut model, mut optim) = FusedOptimizer::builder(config.into()).clip_grad_norm(1.0).grads_in_place(in_place).build(shared, model).unwrap();
    for t in 0..STEPS {
        let w = model.w.val();
        let loss = w.clone().sin().sum() + (w.clone() * w).sum().mul_scalar(0.5 * t as f32);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads).unwrap();
    }
    let values = model.w.val().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    (values.iter().map(|x| x.to_bits()).collect(), optim.take_phases().in_place)
}

#[test]
fn grads_read_in_place_step_bitwise_as_copied() {
    let shared = SharedDevice::new().expect("burn's wgpu device (install mesa-vulkan-drivers)");
    let (copied, copied_count) = train(&shared, false);
    let (in_place, in_place_count) = train(&shared, true);
    assert_eq!(copied_count, 0, "grads_in_place(false) read a grad in place");
    assert_eq!(in_place_count, STEPS, "not every step read its grad in place");
    let differ = copied.iter().zip(&in_place).filter(|(a, b)| a != b).count();
    assert_eq!(differ, 0, "in place and copied grads differ in {differ} of {} params", copied.len());
}
