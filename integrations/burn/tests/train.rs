//! The burn integration end to end on lavapipe: a burn MLP trained with
//! burn's autodiff and the fused step, against burn's own AdamW.

use std::sync::OnceLock;

use burn::module::{Module, Param};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use wgpu_optim_burn::demo::{batch, digits, Mlp, TRAIN};
use wgpu_optim_burn::{FusedOptimizer, SharedDevice};

/// One shared device per test binary (burn initialises a device once).
fn shared() -> &'static SharedDevice {
    static SHARED: OnceLock<SharedDevice> = OnceLock::new();
    SHARED.get_or_init(|| SharedDevice::new().expect("burn's wgpu device (install mesa-vulkan-drivers)"))
}

fn values<M: Module>(model: &M) -> Vec<Vec<f32>> {
    struct All(Vec<Vec<f32>>);
    impl burn::module::ModuleVisitor for All {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.push(p.val().into_data().convert::<f32>().try_to_vec::<f32>().unwrap());
        }
    }
    let mut all = All(Vec::new());
    model.visit(&mut all);
    all.0
}

fn order(seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..TRAIN).collect();
    let mut s = seed;
    for i in (1..idx.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        idx.swap(i, (s % (i as u64 + 1)) as usize);
    }
    idx
}

/// AdamW (no decay on biases) trains the MLP to > 85 % accuracy on the 297
/// held-out digits in 6 epochs of batches of 50 (chance: 10 %; burn's own
/// AdamW gets the same 88.9 % on this schedule, epoch for epoch).
#[test]
fn the_fused_step_trains_a_burn_mlp() {
    let shared = shared();
    let device: Device = shared.device.clone().autodiff();
    device.seed(7);
    let (x, y) = digits();
    let model = Mlp::new(64, &device);
    let (mut model, mut optim) = FusedOptimizer::builder(wgpu_optim::AdamW { lr: 1e-2, ..Default::default() }.into()).no_weight_decay_on_vectors().build(shared, model).unwrap();
    assert_eq!(optim.engine().dispatch_count(), 1, "every parameter in one dispatch");
    for epoch in 0..6 {
        for rows in order(epoch + 1).chunks(50) {
            let (xb, yb) = batch(&x, &y, rows, &device);
            let grads = GradientsParams::from_grads(model.loss(xb, yb).backward(), &model);
            model = optim.step(1e-2, model, grads).unwrap();
        }
    }
    let test: Vec<usize> = (TRAIN..y.len()).collect();
    let (xt, _) = batch(&x, &y, &test, &device);
    let acc = model.accuracy(xt, &y[TRAIN..]);
    eprintln!("test accuracy after 6 epochs: {:.1} %", 100.0 * acc);
    assert!(acc > 0.85, "test accuracy {acc}");
}

/// Adan (four state tensors) and schedule-free AdamW (evaluated in eval
/// form, whose params differ from the train form's) train the MLP too.
#[test]
fn adan_and_schedule_free_train_a_burn_mlp() {
    let shared = shared();
    let device: Device = shared.device.clone().autodiff();
    let (x, y) = digits();
    let test: Vec<usize> = (TRAIN..y.len()).collect();
    let rules: [wgpu_optim::OptimizerConfig; 2] = [wgpu_optim::Adan { lr: 5e-3, ..Default::default() }.into(), wgpu_optim::AdamWScheduleFree { lr: 5e-3, warmup_steps: 20, ..Default::default() }.into()];
    for config in rules {
        device.seed(7);
        let (mut model, mut optim) = FusedOptimizer::builder(config).build(shared, Mlp::new(64, &device)).unwrap();
        for epoch in 0..4 {
            for rows in order(epoch + 1).chunks(50) {
                let (xb, yb) = batch(&x, &y, rows, &device);
                let grads = GradientsParams::from_grads(model.loss(xb, yb).backward(), &model);
                model = optim.step(config.lr(), model, grads).unwrap();
            }
        }
        if config.mode_switch(true).is_some() {
            let train_form = values(&model);
            optim.eval().unwrap();
            assert_ne!(values(&model), train_form, "eval() must move the parameters");
        }
        let (xt, _) = batch(&x, &y, &test, &device);
        let acc = model.accuracy(xt, &y[TRAIN..]);
        eprintln!("{}: test accuracy after 4 epochs: {:.1} %", config.rule().name(), 100.0 * acc);
        assert!(acc > 0.8, "{}: test accuracy {acc}", config.rule().name());
    }
}

/// Where burn's AdamW and PyTorch's agree (eps outside the root after bias
/// correction, decoupled decay θ·(1 − lr·wd), the same eps and decay for
/// every parameter), 25 steps of the fused step follow burn's own AdamW on
/// the same model and batches to f32 rounding.
#[test]
fn follows_burns_adamw() {
    let shared = shared();
    let device: Device = shared.device.clone().autodiff();
    device.seed(11);
    let (x, y) = digits();
    let start = Mlp::new(32, &device);
    let theirs_start = start.clone();
    let (mut ours, mut optim) = FusedOptimizer::builder(wgpu_optim::AdamW { lr: 3e-3, eps: 1e-8, weight_decay: 0.01, ..Default::default() }.into()).build(shared, start).unwrap();
    let mut theirs = theirs_start;
    let mut burn_optim = AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(0.01).init();
    for (step, rows) in order(3).chunks(40).take(25).enumerate() {
        let (xb, yb) = batch(&x, &y, rows, &device);
        let g = GradientsParams::from_grads(ours.loss(xb.clone(), yb.clone()).backward(), &ours);
        ours = optim.step(3e-3, ours, g).unwrap();
        let g = GradientsParams::from_grads(theirs.loss(xb, yb).backward(), &theirs);
        theirs = burn_optim.step(3e-3, theirs, g);
        if step == 0 {
            assert_ne!(values(&ours), values(&Mlp::new(32, &device)), "the step moved nothing");
        }
    }
    for (a, b) in values(&ours).iter().zip(values(&theirs)) {
        let num: f64 = a.iter().zip(&b).map(|(p, q)| ((p - q) as f64).powi(2)).sum();
        let den: f64 = b.iter().map(|q| (*q as f64).powi(2)).sum();
        let rel = (num / den).sqrt();
        eprintln!("{} params: relative L2 difference from burn's AdamW {rel:.2e}", a.len());
        assert!(rel < 1e-4, "diverged from burn's AdamW: {rel}");
    }
}

/// A parameter without a grad (not reached by the loss) is left untouched,
/// as in PyTorch, while the others step.
#[derive(Module, Debug)]
struct TwoParts {
    used: Param<Tensor<1>>,
    unused: Param<Tensor<1>>,
}

#[test]
fn parameters_without_grads_are_left_alone() {
    let shared = shared();
    let device: Device = shared.device.clone().autodiff();
    let t = |v: Vec<f32>| Param::from_tensor(Tensor::<1>::from_data(TensorData::new(v.clone(), [v.len()]), &device).require_grad());
    let model = TwoParts { used: t(vec![1.0, -2.0, 3.0]), unused: t(vec![0.5; 5]) };
    let (mut model, mut optim) = FusedOptimizer::builder(wgpu_optim::Adam { lr: 0.1, ..Default::default() }.into()).build(shared, model).unwrap();
    for _ in 0..3 {
        let loss = (model.used.val() * model.used.val()).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(0.1, model, grads).unwrap();
    }
    let v = values(&model);
    assert_eq!(v[1], vec![0.5; 5], "a parameter without a grad moved");
    assert!(v[0].iter().zip([1.0f32, -2.0, 3.0]).all(|(a, b)| (a - b).abs() > 0.2), "the used parameter did not move: {:?}", v[0]);
    assert_eq!(optim.engine().read_state(0, 1).unwrap(), vec![0.0; 5], "its state changed");
}

fn train_steps(optim: &mut FusedOptimizer, mut model: Mlp, steps: std::ops::Range<usize>, device: &Device) -> Mlp {
    let (x, y) = digits();
    let rows = order(5);
    for s in steps {
        let (xb, yb) = batch(&x, &y, &rows[(40 * s) % 1400..(40 * s) % 1400 + 40], device);
        let grads = GradientsParams::from_grads(model.loss(xb, yb).backward(), &model);
        model = optim.step(2e-3, model, grads).unwrap();
    }
    model
}

/// Param groups (no weight decay on biases), global-norm clipping and a
/// checkpoint: 5 steps, save, a fresh optimizer over a copy of the model
/// loads it, 5 more steps = 10 straight steps, bitwise.
#[test]
fn groups_clipping_and_resume() {
    let shared = shared();
    let device: Device = shared.device.clone().autodiff();
    let build = |model: Mlp| FusedOptimizer::builder(wgpu_optim::AdamW { lr: 2e-3, ..Default::default() }.into()).no_weight_decay_on_vectors().clip_grad_norm(0.5).build(shared, model).unwrap();
    device.seed(21);
    let start = Mlp::new(16, &device);
    let copy = |m: &Mlp| {
        let v = values(m);
        let mut fresh = Mlp::new(16, &device);
        let t = |v: &Vec<f32>, dims: [usize; 2]| Param::from_tensor(Tensor::<2>::from_data(TensorData::new(v.clone(), dims), &device).require_grad());
        let b = |v: &Vec<f32>| Param::from_tensor(Tensor::<1>::from_data(TensorData::new(v.clone(), [v.len()]), &device).require_grad());
        fresh.hidden.weight = t(&v[0], [64, 16]);
        fresh.hidden.bias = Some(b(&v[1]));
        fresh.out.weight = t(&v[2], [16, 10]);
        fresh.out.bias = Some(b(&v[3]));
        fresh
    };
    let (straight, mut a) = build(copy(&start));
    let groups: Vec<u32> = a.engine().params().iter().map(|p| p.group).collect();
    assert_eq!(groups, vec![0, 1, 0, 1], "matrices decay, vectors do not");
    assert_eq!(a.engine().config(1).unwrap().weight_decay(), 0.0);
    let straight = train_steps(&mut a, straight, 0..10, &device);
    let norm = a.engine().read_grad_norms().unwrap();
    assert!(norm.iter().all(|n| n.is_finite() && *n > 0.0), "norms {norm:?}");

    let (half, mut b) = build(copy(&start));
    let half = train_steps(&mut b, half, 0..5, &device);
    let path = std::env::temp_dir().join(format!("wgpu-optim-burn-{}.safetensors", std::process::id()));
    b.save(&path).unwrap();
    let (resumed, mut c) = build(copy(&half));
    c.load(&path).unwrap();
    let resumed = train_steps(&mut c, resumed, 5..10, &device);
    std::fs::remove_file(&path).ok();
    let bits = |m: &Mlp| values(m).into_iter().flatten().map(f32::to_bits).collect::<Vec<_>>();
    assert!(bits(&straight) == bits(&resumed), "the resumed run differs");
}

/// A model whose parameters were replaced after adoption (here: re-created)
/// is an error, not a silent no-op.
#[test]
fn a_replaced_parameter_is_an_error() {
    let shared = shared();
    let device: Device = shared.device.clone().autodiff();
    let (mut model, mut optim) = FusedOptimizer::builder(wgpu_optim::Sgd { lr: 0.1, ..Default::default() }.into()).build(shared, Mlp::new(8, &device)).unwrap();
    model.out.bias = Some(Param::from_tensor(Tensor::<1>::zeros([10], &device).require_grad()));
    let (x, y) = digits();
    let (xb, yb) = batch(&x, &y, &[0, 1, 2], &device);
    let grads = GradientsParams::from_grads(model.loss(xb, yb).backward(), &model);
    let r = optim.step(0.1, model, grads);
    assert!(matches!(r, Err(wgpu_optim_burn::Error::ParamMoved(_)) | Err(wgpu_optim_burn::Error::ModelMismatch(_))), "{:?}", r.err());
}
