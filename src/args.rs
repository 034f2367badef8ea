//! Optimizer options by their `torch.optim` names from command-line words
//! (`--lr 0.01 --betas 0.9,0.999 --amsgrad --weight_decay=0.1`), for every
//! registered rule: the type of each option is read from the rule's
//! defaults, so no rule needs code here.

use serde_json::{Map, Value};

use crate::error::{OptimError, Result};
use crate::rules::OptimizerConfig;

/// One word's value as JSON, typed like the option's default `like`:
/// booleans, numbers, comma-separated lists, strings, and `none` for null.
fn parse_value(name: &str, word: &str, like: &Value) -> Result<Value> {
    let scalar = |w: &str, like: &Value| -> Result<Value> {
        match (w, like) {
            ("none" | "None" | "null", _) => Ok(Value::Null),
            (_, Value::Bool(_)) => w.parse::<bool>().map(Value::Bool).map_err(|_| bad(name, w)),
            (_, Value::String(_)) => Ok(Value::String(w.to_string())),
            (_, Value::Number(n)) if n.is_u64() => w.parse::<u64>().map(Value::from).map_err(|_| bad(name, w)),
            _ => match w.parse::<f64>() {
                // JSON has no NaN or infinity: say so here, not as a type error later.
                Ok(x) if !x.is_finite() => Err(OptimError::NonFiniteOption { option: name.to_string(), value: x }),
                Ok(x) => Ok(serde_json::json!(x)),
                Err(_) if like.is_null() => Ok(Value::String(w.to_string())),
                Err(_) => Err(bad(name, w)),
            },
        }
    };
    match like {
        Value::Array(items) => {
            let parts: Vec<&str> = word.split(',').collect();
            if parts.len() != items.len() {
                return Err(OptimError::OptionArity { option: name.to_string(), expected: items.len(), got: parts.len() });
            }
            let typed = parts.iter().enumerate().map(|(i, p)| scalar(p.trim(), items.get(i).unwrap_or(&Value::Null)));
            typed.collect::<Result<Vec<_>>>().map(Value::Array)
        }
        _ => scalar(word, like),
    }
}

fn bad(name: &str, word: &str) -> OptimError {
    OptimError::InvalidOptionValue { option: name.to_string(), value: word.to_string() }
}

/// The options of `optimizer` given as `--name value`, `--name=value` or,
/// for a boolean, `--name` alone (kebab-case names are accepted too).
///
/// ```
/// let words: Vec<String> = ["--lr", "0.01", "--betas", "0.8,0.99", "--amsgrad"].map(String::from).to_vec();
/// let opts = wgpu_optim::args::pytorch_options("adam", &words).unwrap();
/// assert_eq!(opts["betas"], serde_json::json!([0.8, 0.99]));
/// ```
///
/// **Errors:** [`OptimError::UnknownOptimizer`], [`OptimError::UnknownOption`],
/// [`OptimError::InvalidOptionValue`] for a value of the wrong type,
/// [`OptimError::NonFiniteOption`] for NaN or an infinity,
/// [`OptimError::OptionArity`] for a list of the wrong length.
pub fn pytorch_options(optimizer: &str, words: &[String]) -> Result<Map<String, Value>> {
    known_optimizer(optimizer)?;
    let defaults = defaults(optimizer)?;
    let mut out = Map::new();
    let mut i = 0;
    while i < words.len() {
        let word = &words[i];
        let Some(flag) = word.strip_prefix("--") else {
            return Err(OptimError::InvalidOptionValue { option: "(option name)".into(), value: word.clone() });
        };
        let (key, inline) = match flag.split_once('=') {
            Some((k, v)) => (k.replace('-', "_"), Some(v.to_string())),
            None => (flag.replace('-', "_"), None),
        };
        let like = defaults.get(&key).ok_or_else(|| OptimError::UnknownOption { optimizer: optimizer.to_ascii_lowercase(), option: key.clone(), known: defaults.keys().cloned().collect::<Vec<_>>().join(", ") })?;
        let next_is_value = words.get(i + 1).is_some_and(|w| !w.starts_with("--") && (!like.is_boolean() || w.parse::<bool>().is_ok()));
        let value = match inline {
            Some(v) => v,
            None if next_is_value => {
                i += 1;
                words[i].clone()
            }
            None if like.is_boolean() => "true".into(),
            None => return Err(bad(&key, "(missing)")),
        };
        out.insert(key.clone(), parse_value(&key, &value, like)?);
        i += 1;
    }
    Ok(out)
}

/// Every optimizer name `run` accepts: the element-wise rules', the
/// tensor-wise ones', then L-BFGS.
pub fn optimizer_names() -> Vec<&'static str> {
    OptimizerConfig::PYTORCH_NAMES.iter().chain(crate::matrix::TensorRule::PYTORCH_NAMES).chain(&["lbfgs"]).copied().collect()
}

/// The options of a known optimizer with PyTorch's defaults.
fn defaults(optimizer: &str) -> Result<Map<String, Value>> {
    if optimizer.eq_ignore_ascii_case("lbfgs") {
        return Ok(crate::lbfgs::Lbfgs::pytorch_defaults());
    }
    match crate::matrix::TensorRule::defaults(optimizer) {
        Some(defaults) => Ok(defaults),
        None => Ok(OptimizerConfig::default_for(&optimizer.to_ascii_lowercase())?.to_pytorch()),
    }
}

/// Checks that `name` (any case) is an optimizer `run` accepts.
///
/// **Errors:** [`OptimError::UnknownOptimizer`] listing every name.
pub fn known_optimizer(name: &str) -> Result<()> {
    let names = optimizer_names();
    match names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
        true => Ok(()),
        false => Err(OptimError::UnknownOptimizer { name: name.to_string(), known: names.join(", ") }),
    }
}

/// Every registered optimizer with its options and PyTorch defaults, for
/// `--help`.
pub fn options_help() -> String {
    let mut s = String::from("Optimizers and their options (torch.optim names, shown with their defaults):\n");
    for name in optimizer_names() {
        let defaults = defaults(name).unwrap_or_default();
        let shown = |v: &Value| match v {
            Value::Array(items) => items.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","),
            other => other.to_string(),
        };
        let opts: Vec<String> = defaults.iter().map(|(k, v)| format!("--{k}={}", shown(v))).collect();
        s += &format!("  {name}: {}\n", opts.join(" "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_registered_optimizer_round_trips_its_defaults_through_words() {
        for name in OptimizerConfig::PYTORCH_NAMES {
            let defaults = OptimizerConfig::default_for(name).unwrap();
            let mut w = Vec::new();
            for (k, v) in defaults.to_pytorch() {
                let text = match &v {
                    Value::Array(items) => items.iter().map(|x| if x.is_null() { "none".to_string() } else { x.to_string().trim_matches('"').to_string() }).collect::<Vec<_>>().join(","),
                    Value::Null => "none".into(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                w.push(format!("--{k}={text}"));
            }
            let opts = pytorch_options(name, &w).unwrap();
            assert_eq!(OptimizerConfig::from_pytorch(name, &opts).unwrap(), defaults, "{name}");
        }
    }

    #[test]
    fn flags_values_and_errors() {
        let o = pytorch_options("sgd", &words(&["--nesterov", "--momentum", "0.9", "--lr=-1", "--weight-decay", "0.5"])).unwrap();
        assert_eq!(o["nesterov"], Value::Bool(true));
        assert_eq!(o["lr"], serde_json::json!(-1.0));
        assert_eq!(o["weight_decay"], serde_json::json!(0.5));
        assert!(matches!(pytorch_options("adam", &words(&["--rho", "1"])), Err(OptimError::UnknownOption { .. })));
        assert!(matches!(pytorch_options("adam", &words(&["--lr", "fast"])), Err(OptimError::InvalidOptionValue { .. })));
        assert!(matches!(pytorch_options("nosuch", &words(&[])), Err(OptimError::UnknownOptimizer { .. })));
        assert!(options_help().contains("lion:"));
    }
}
