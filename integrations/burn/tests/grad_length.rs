//! A grad whose length is not its parameter's. In a test binary of its
//! own: an optimizer dropped after a refused step, while other tests in the
//! same process train on burn's shared device, made `tests/train.rs`'s
//! comparison with burn's AdamW fail now and then (1 run in 3 with it
//! there, 0 in 5 without).

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use wgpu_optim_burn::{FusedOptimizer, SharedDevice};

#[derive(Module, Debug)]
struct TwoParts {
    used: Param<Tensor<1>>,
    unused: Param<Tensor<1>>,
}

/// A grad of another length than its parameter (registered by hand) is a
/// typed error before anything is copied or stepped, not a copy of the
/// parameter's length from a shorter range.
#[test]
fn a_grad_of_the_wrong_length_is_an_error() {
    let shared = SharedDevice::new().expect("burn's wgpu device (install mesa-vulkan-drivers)");
    let device: Device = shared.device.clone().autodiff();
    let t = |v: Vec<f32>| Param::from_tensor(Tensor::<1>::from_data(TensorData::new(v.clone(), [v.len()]), &device).require_grad());
    let model = TwoParts { used: t(vec![1.0, -2.0, 3.0]), unused: t(vec![0.5; 5]) };
    let (model, mut optim) = FusedOptimizer::builder(wgpu_optim::Adam { lr: 0.1, ..Default::default() }.into()).build(&shared, model).unwrap();
    let mut grads = GradientsParams::new();
    grads.register(model.used.id, Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 1.0], [2]), &shared.device));
    let err = optim.step(0.1, model.clone(), grads).expect_err("a 2-element grad for a 3-element parameter");
    assert!(matches!(err, wgpu_optim_burn::Error::ModelMismatch(_)), "{err}");
    let used = model.used.val().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    assert_eq!(used, vec![1.0, -2.0, 3.0], "the parameter moved");
}
