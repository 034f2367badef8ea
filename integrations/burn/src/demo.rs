//! The 8×8 handwritten digits (`examples/data/digits.csv` of the root
//! crate, CC BY 4.0) and a small burn MLP on them: the model of this
//! crate's example, tests and benchmark.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};

const DIGITS: &str = include_str!("../../../examples/data/digits.csv");

/// Samples used for training; the rest are the test set.
pub const TRAIN: usize = 1500;

/// Pixels scaled to [0, 1] (one row of 64 per sample) and labels, in file order.
pub fn digits() -> (Vec<f32>, Vec<i64>) {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for line in DIGITS.lines().filter(|l| !l.trim().is_empty()) {
        let v: Vec<u32> = line.split(',').map(|t| t.trim().parse().expect("digits.csv holds integers")).collect();
        x.extend(v[..64].iter().map(|&p| p as f32 / 16.0));
        y.push(v[64] as i64);
    }
    (x, y)
}

/// 64 → hidden → 10, ReLU.
#[derive(Module, Debug)]
pub struct Mlp {
    pub hidden: Linear,
    pub out: Linear,
}

impl Mlp {
    /// A freshly initialised MLP (burn's default Kaiming-uniform init).
    pub fn new(hidden: usize, device: &Device) -> Self {
        Mlp { hidden: LinearConfig::new(64, hidden).init(device), out: LinearConfig::new(hidden, 10).init(device) }
    }

    /// Logits of a batch `[n, 64]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.out.forward(relu(self.hidden.forward(x)))
    }

    /// Mean cross-entropy of a batch.
    pub fn loss(&self, x: Tensor<2>, y: Tensor<1, Int>) -> Tensor<1> {
        CrossEntropyLossConfig::new().init(&x.device()).forward(self.forward(x), y)
    }

    /// Fraction of `x` classified as `y`.
    pub fn accuracy(&self, x: Tensor<2>, y: &[i64]) -> f64 {
        let pred: Vec<i64> = self.forward(x).argmax(1).into_data().convert::<i64>().try_to_vec::<i64>().unwrap_or_default();
        pred.iter().zip(y).filter(|(a, b)| a == b).count() as f64 / y.len() as f64
    }
}

/// Rows `rows` of the digits as a batch on `device`.
pub fn batch(x: &[f32], y: &[i64], rows: &[usize], device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let xs: Vec<f32> = rows.iter().flat_map(|&r| x[64 * r..64 * r + 64].iter().copied()).collect();
    let ys: Vec<i64> = rows.iter().map(|&r| y[r]).collect();
    (Tensor::from_data(TensorData::new(xs, [rows.len(), 64]), device), Tensor::from_data(TensorData::new(ys, [rows.len()]), device))
}
