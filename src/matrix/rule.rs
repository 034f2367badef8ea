//! The tensor-wise rules by PyTorch name, with options as `torch.optim`
//! spells them: what `run`, checkpoints and the command line parse.

use serde_json::{Map, Value};

use super::{Adafactor, Lamb, Muon};
use crate::error::{OptimError, Result};

/// A tensor-wise rule's config.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TensorRule {
    /// Muon (`torch.optim.Muon`, PyTorch name `muon`).
    Muon(Muon),
    /// LAMB (PyTorch name `lamb`; not in `torch.optim`).
    Lamb(Lamb),
    /// Adafactor (`torch.optim.Adafactor`, PyTorch name `adafactor`).
    Adafactor(Adafactor),
}

impl TensorRule {
    /// The names `from_pytorch` takes.
    pub const PYTORCH_NAMES: &'static [&'static str] = &["muon", "lamb", "adafactor"];

    /// The default options of `name` (case-insensitive) by PyTorch name, or
    /// `None` if it is not a tensor-wise rule.
    pub fn defaults(name: &str) -> Option<Map<String, Value>> {
        let value = match name.to_ascii_lowercase().as_str() {
            "muon" => serde_json::to_value(Muon::default()),
            "lamb" => serde_json::to_value(Lamb::default()),
            "adafactor" => serde_json::to_value(Adafactor::default()),
            _ => return None,
        };
        value.ok()?.as_object().cloned()
    }

    /// The rule `name` with `options` (PyTorch names) over its defaults;
    /// Muon's `adjust_lr_fn = None` is `"original"`, as in PyTorch.
    ///
    /// ```
    /// use wgpu_optim::matrix::TensorRule;
    /// let opts = serde_json::json!({"lr": 0.02, "adjust_lr_fn": "match_rms_adamw"});
    /// assert!(matches!(TensorRule::from_pytorch("Muon", opts.as_object().unwrap()), Ok(TensorRule::Muon(m)) if m.lr == 0.02));
    /// ```
    ///
    /// **Errors:** [`OptimError::UnknownOption`] for an unknown name or
    /// option, [`OptimError::InvalidOptions`] for a value of the wrong
    /// type, [`OptimError::InvalidHyperparameter`] from validation.
    pub fn from_pytorch(name: &str, options: &Map<String, Value>) -> Result<Self> {
        let lower = name.to_ascii_lowercase();
        let mut merged = Self::defaults(&lower).ok_or_else(|| OptimError::UnknownOption { optimizer: lower.clone(), option: "(optimizer name)".into(), known: Self::PYTORCH_NAMES.join(", ") })?;
        for (k, v) in options {
            if !merged.contains_key(k) {
                let known = merged.keys().cloned().collect::<Vec<_>>().join(", ");
                return Err(OptimError::UnknownOption { optimizer: lower, option: k.clone(), known });
            }
            let v = if k == "adjust_lr_fn" && v.is_null() { Value::from("original") } else { v.clone() };
            merged.insert(k.clone(), v);
        }
        let value = Value::Object(merged);
        let wrong = |_| OptimError::InvalidOptions("an option has the wrong type (numbers, booleans, pairs as two numbers, names as text)");
        let rule = match lower.as_str() {
            "muon" => TensorRule::Muon(serde_json::from_value(value).map_err(wrong)?),
            "lamb" => TensorRule::Lamb(serde_json::from_value(value).map_err(wrong)?),
            _ => TensorRule::Adafactor(serde_json::from_value(value).map_err(wrong)?),
        };
        rule.validate()?;
        Ok(rule)
    }

    /// Checks every option.
    ///
    /// **Errors:** as each config's `validate`.
    pub fn validate(&self) -> Result<()> {
        match self {
            TensorRule::Muon(c) => c.validate(),
            TensorRule::Lamb(c) => c.validate(),
            TensorRule::Adafactor(c) => c.validate(),
        }
    }

    /// The options by PyTorch name.
    pub fn to_pytorch(&self) -> Map<String, Value> {
        let value = match self {
            TensorRule::Muon(c) => serde_json::to_value(c),
            TensorRule::Lamb(c) => serde_json::to_value(c),
            TensorRule::Adafactor(c) => serde_json::to_value(c),
        };
        value.ok().and_then(|v| v.as_object().cloned()).unwrap_or_default()
    }

    /// The state tensors of a parameter of `shape` (its length as one dim
    /// where it has none), by PyTorch name and shape, in the order of the
    /// optimizer's state: `momentum_buffer` (Muon); `exp_avg`, `exp_avg_sq`
    /// (LAMB); `row_var` and `col_var`, or `variance` (Adafactor).
    pub fn state_layout(&self, shape: &[u64]) -> Vec<(&'static str, Vec<u64>)> {
        match self {
            TensorRule::Muon(_) => vec![("momentum_buffer", shape.to_vec())],
            TensorRule::Lamb(_) => vec![("exp_avg", shape.to_vec()), ("exp_avg_sq", shape.to_vec())],
            TensorRule::Adafactor(_) => super::adafactor::state_layout(shape),
        }
    }

    /// The PyTorch name.
    pub fn pytorch_name(&self) -> &'static str {
        match self {
            TensorRule::Muon(_) => "muon",
            TensorRule::Lamb(_) => "lamb",
            TensorRule::Adafactor(_) => "adafactor",
        }
    }
}
