//! [`load_xgboost`]: an XGBoost JSON model (`Booster.save_model("m.json")`, XGBoost 1.6 to 3.x).
//!
//! Read from `learner`: `objective.name`, `learner_model_param` (`base_score`, a number or,
//! from XGBoost 3, a list string like `"[5E-1]"` with one value per class; `num_class`;
//! `num_feature`; `num_target`, which must be 1) and `gradient_booster` (`gbtree`, or `dart`
//! whose `weight_drop` scales each tree). Each tree gives `left_children`, `right_children`
//! (`-1` for a leaf), `split_indices`, `split_conditions` (the leaf value at a leaf),
//! `default_left`, and for categorical splits `split_type` (1), `categories_nodes`,
//! `categories_segments`, `categories_sizes` and `categories`; `tree_info` gives the class of
//! each tree. XGBoost's rules: left when `x < split_condition`; a missing value (NaN) takes
//! `default_left`; at a categorical split a category in the node's set goes right, any other
//! (negative, or not below 2^24, included) left.
//!
//! Objectives: `binary:logistic` and `reg:logistic` (base score a probability: its logit is
//! the margin; `predict` gives the probability), `binary:logitraw` (the margin), and
//! `multi:softprob` / `multi:softmax` (K scores; `predict` gives the K probabilities even
//! for `softmax`, whose library `predict` returns only the label), `reg:squarederror`,
//! `reg:absoluteerror`, `reg:pseudohubererror` (the value). Any other is an error naming it.

use std::path::Path;

use serde_json::Value;

use crate::build::{assemble, strictly_below, Header, RawNode, RawTree, Test};
use crate::{Aggregate, Ensemble, Objective, Transform, TreeError};

/// Loads an XGBoost JSON model; see the module docs for what is read and supported.
///
/// Errors: the file cannot be read ([`TreeError::Read`]), is not JSON ([`TreeError::Json`]),
/// lacks a field or has a wrong one ([`TreeError::Field`], naming its path in the JSON), has a
/// broken tree ([`TreeError::Node`]) or an objective or feature this crate does not support
/// ([`TreeError::Unsupported`]).
pub fn load_xgboost(path: &Path) -> Result<Ensemble, TreeError> {
    let text = std::fs::read(path).map_err(|source| TreeError::Read { path: path.into(), source })?;
    let json: Value = serde_json::from_slice(&text).map_err(|source| TreeError::Json { path: path.into(), source })?;
    Reader { model: path.display().to_string() }.ensemble(&json)
}

/// Reads fields out of the JSON, naming the model in errors.
struct Reader {
    model: String,
}

/// What each objective makes of the model.
struct ObjectiveRule {
    objective: Objective,
    transform: Transform,
    /// Whether the base score is a probability (its logit is the margin).
    logit_base: bool,
}

impl Reader {
    fn ensemble(&self, json: &Value) -> Result<Ensemble, TreeError> {
        let learner = self.get(json, "learner")?;
        let params = self.get(learner, "learner_model_param")?;
        let num_target = self.optional_count(params, "learner.learner_model_param.num_target")?.unwrap_or(1);
        if num_target > 1 {
            return Err(self.unsupported("num_target (multi-target trees)", num_target));
        }
        let num_class = self.optional_count(params, "learner.learner_model_param.num_class")?.unwrap_or(0);
        let n_features = self
            .optional_count(params, "learner.learner_model_param.num_feature")?
            .ok_or_else(|| self.field("learner.learner_model_param.num_feature", "missing".into()))?;
        let name = self.str(self.get(learner, "objective.name")?, "learner.objective.name")?;
        let rule = self.objective(name, num_class)?;
        let n_outputs = match rule.objective {
            Objective::Multiclass { classes } => classes,
            _ => 1,
        };
        let base = self.base_margins(params, n_outputs, rule.logit_base)?;

        let booster = self.get(learner, "gradient_booster")?;
        let (model, weight_drop) = match self.str(self.get(booster, "name")?, "learner.gradient_booster.name")? {
            "gbtree" => (self.get(booster, "model")?, None),
            "dart" => {
                let drop = self.f64s(self.get(booster, "weight_drop")?, "learner.gradient_booster.weight_drop")?;
                (self.get(booster, "gbtree.model")?, Some(drop))
            }
            other => return Err(self.unsupported("gradient_booster", other)),
        };
        let tree_info = self.i64s(self.get(model, "tree_info")?, "learner.gradient_booster.model.tree_info")?;
        let trees_json = self.array(self.get(model, "trees")?, "learner.gradient_booster.model.trees")?;
        if tree_info.len() != trees_json.len() {
            return Err(self.field(
                "learner.gradient_booster.model.tree_info",
                format!("{} entries for {} trees", tree_info.len(), trees_json.len()),
            ));
        }
        let mut trees = Vec::with_capacity(trees_json.len());
        for (t, tree) in trees_json.iter().enumerate() {
            let class = usize::try_from(tree_info[t]).ok().filter(|&c| c < n_outputs).ok_or_else(|| {
                self.field(
                    "learner.gradient_booster.model.tree_info",
                    format!("tree {t} is for class {}, outside 0..{n_outputs}", tree_info[t]),
                )
            })?;
            let scale = match &weight_drop {
                Some(drop) => *drop.get(t).ok_or_else(|| {
                    self.field("learner.gradient_booster.weight_drop", format!("no weight for tree {t}"))
                })?,
                None => 1.0,
            };
            trees.push(self.tree(tree, t, class, scale)?);
        }
        let header = Header {
            model: self.model.clone(),
            n_features,
            n_outputs,
            objective: rule.objective,
            transform: rule.transform,
            aggregate: Aggregate::Sum,
            base,
            average_divisor: 1.0,
            logistic_scale: 1.0,
        };
        assemble(header, &trees)
    }

    fn objective(&self, name: &str, num_class: usize) -> Result<ObjectiveRule, TreeError> {
        let rule = |objective, transform, logit_base| ObjectiveRule { objective, transform, logit_base };
        Ok(match name {
            "binary:logistic" => rule(Objective::Binary, Transform::Logistic, true),
            "binary:logitraw" => rule(Objective::Binary, Transform::None, false),
            "reg:logistic" => rule(Objective::Regression, Transform::Logistic, true),
            "reg:squarederror" | "reg:linear" | "reg:absoluteerror" | "reg:pseudohubererror" => {
                rule(Objective::Regression, Transform::None, false)
            }
            "multi:softprob" | "multi:softmax" => {
                if num_class < 2 {
                    return Err(self.field("learner.learner_model_param.num_class", format!("{num_class} for {name}")));
                }
                rule(Objective::Multiclass { classes: num_class }, Transform::Softmax, false)
            }
            other => return Err(self.unsupported("objective", other)),
        })
    }

    /// The margin each output starts from: `base_score` (one value, or one per output), through
    /// the logit for logistic objectives.
    fn base_margins(&self, params: &Value, n_outputs: usize, logit: bool) -> Result<Vec<f64>, TreeError> {
        const FIELD: &str = "learner.learner_model_param.base_score";
        let text = match self.get(params, "base_score")? {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => return Err(self.field(FIELD, format!("expected a number or a string, found {other}"))),
        };
        let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
        let values = inner
            .split(',')
            .map(|v| {
                v.trim().parse::<f64>().map_err(|_| self.field(FIELD, format!("`{v}` in `{text}` is not a number")))
            })
            .collect::<Result<Vec<f64>, _>>()?;
        let values = match values.len() {
            1 => vec![values[0]; n_outputs],
            n if n == n_outputs => values,
            n => return Err(self.field(FIELD, format!("{n} values for {n_outputs} outputs"))),
        };
        if !logit {
            return Ok(values);
        }
        values
            .into_iter()
            .map(|p| {
                // XGBoost computes the margin of the f32 base score.
                let p = f64::from(p as f32);
                if p > 0.0 && p < 1.0 {
                    Ok(-(1.0 / p - 1.0).ln())
                } else {
                    Err(self.field(FIELD, format!("{p} is not a probability strictly between 0 and 1")))
                }
            })
            .collect()
    }

    /// One tree, its leaves feeding output `class`, their values times `scale`.
    fn tree(&self, tree: &Value, t: usize, class: usize, scale: f64) -> Result<RawTree, TreeError> {
        let path = |f: &str| format!("learner.gradient_booster.model.trees[{t}].{f}");
        let size_leaf = match tree.pointer("/tree_param/size_leaf_vector") {
            Some(v) => self.count(v, &path("tree_param.size_leaf_vector"))?,
            None => 1,
        };
        if size_leaf > 1 {
            return Err(self.unsupported("size_leaf_vector (vector leaves)", size_leaf));
        }
        let left = self.i64s(self.get(tree, "left_children")?, &path("left_children"))?;
        let right = self.i64s(self.get(tree, "right_children")?, &path("right_children"))?;
        let feature = self.i64s(self.get(tree, "split_indices")?, &path("split_indices"))?;
        let condition = self.f64s(self.get(tree, "split_conditions")?, &path("split_conditions"))?;
        let default_left = self.i64s(self.get(tree, "default_left")?, &path("default_left"))?;
        let n = left.len();
        let split_type = match tree.get("split_type") {
            Some(v) => self.i64s(v, &path("split_type"))?,
            None => vec![0; n],
        };
        for (name, len) in [
            ("right_children", right.len()),
            ("split_indices", feature.len()),
            ("split_conditions", condition.len()),
            ("default_left", default_left.len()),
            ("split_type", split_type.len()),
        ] {
            if len != n {
                return Err(self.field(&path(name), format!("{len} entries, but left_children has {n}")));
            }
        }
        let categories = self.categories(tree, t, &split_type)?;
        let node_error = |i: usize, reason: String| TreeError::Node {
            model: self.model.clone(),
            tree: t as i64,
            node: i as i64,
            reason,
        };
        let child = |i: usize, c: i64| {
            usize::try_from(c).ok().filter(|&c| c < n).ok_or_else(|| node_error(i, format!("child {c} is not a node")))
        };
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            if left[i] == -1 {
                nodes.push(RawNode::Leaf(vec![(class, f64::from(condition[i] as f32) * scale)]));
                continue;
            }
            let test = match split_type[i] {
                0 => Test::LessEq(strictly_below(f64::from(condition[i] as f32))),
                1 => Test::Category {
                    words: categories[i]
                        .clone()
                        .ok_or_else(|| node_error(i, "a categorical split without categories".into()))?,
                    in_set_left: false,
                },
                other => return Err(node_error(i, format!("split_type {other} (0 numeric, 1 categorical)"))),
            };
            nodes.push(RawNode::Split {
                feature: usize::try_from(feature[i])
                    .map_err(|_| node_error(i, format!("feature {} is negative", feature[i])))?,
                test,
                nan_left: default_left[i] != 0,
                left: child(i, left[i])?,
                right: child(i, right[i])?,
            });
        }
        Ok(RawTree { nodes, ids: (0..n as i64).collect(), root: 0, name: t as i64 })
    }

    /// The category bitset of each categorical node of tree `t` (None for the others).
    fn categories(&self, tree: &Value, t: usize, split_type: &[i64]) -> Result<Vec<Option<Vec<u32>>>, TreeError> {
        let mut sets = vec![None; split_type.len()];
        if !split_type.contains(&1) {
            return Ok(sets);
        }
        let path = |f: &str| format!("learner.gradient_booster.model.trees[{t}].{f}");
        let nodes = self.i64s(self.get(tree, "categories_nodes")?, &path("categories_nodes"))?;
        let segments = self.i64s(self.get(tree, "categories_segments")?, &path("categories_segments"))?;
        let sizes = self.i64s(self.get(tree, "categories_sizes")?, &path("categories_sizes"))?;
        let values = self.i64s(self.get(tree, "categories")?, &path("categories"))?;
        if segments.len() != nodes.len() || sizes.len() != nodes.len() {
            return Err(self.field(
                &path("categories_segments"),
                format!("{} segments and {} sizes for {} nodes", segments.len(), sizes.len(), nodes.len()),
            ));
        }
        for ((&node, &start), &size) in nodes.iter().zip(&segments).zip(&sizes) {
            let range = usize::try_from(start).ok().zip(usize::try_from(size).ok()).and_then(|(s, z)| {
                let end = s.checked_add(z)?;
                (end <= values.len()).then_some(s..end)
            });
            let range = range.ok_or_else(|| {
                self.field(&path("categories_segments"), format!("node {node}: {start}+{size} is past the categories"))
            })?;
            let slot = usize::try_from(node).ok().filter(|&i| i < sets.len()).ok_or_else(|| {
                self.field(&path("categories_nodes"), format!("node {node} is not a node of the tree"))
            })?;
            let mut words = Vec::new();
            for &c in &values[range] {
                let c = u32::try_from(c).ok().filter(|&c| c < 1 << 24).ok_or_else(|| {
                    self.field(&path("categories"), format!("node {node}: category {c} is not in 0..2^24"))
                })?;
                let word = (c / 32) as usize;
                if words.len() <= word {
                    words.resize(word + 1, 0u32);
                }
                words[word] |= 1 << (c % 32);
            }
            sets[slot] = Some(words);
        }
        Ok(sets)
    }

    fn get<'a>(&self, v: &'a Value, dotted: &str) -> Result<&'a Value, TreeError> {
        dotted.split('.').try_fold(v, |v, key| v.get(key)).ok_or_else(|| self.field(dotted, "missing".into()))
    }

    fn array<'a>(&self, v: &'a Value, field: &str) -> Result<&'a Vec<Value>, TreeError> {
        v.as_array().ok_or_else(|| self.field(field, "expected an array".into()))
    }

    fn str<'a>(&self, v: &'a Value, field: &str) -> Result<&'a str, TreeError> {
        v.as_str().ok_or_else(|| self.field(field, "expected a string".into()))
    }

    fn i64s(&self, v: &Value, field: &str) -> Result<Vec<i64>, TreeError> {
        self.array(v, field)?
            .iter()
            .enumerate()
            .map(|(i, x)| match x {
                Value::Bool(b) => Ok(i64::from(*b)),
                _ => x.as_i64().ok_or_else(|| self.field(field, format!("entry {i} is not an integer: {x}"))),
            })
            .collect()
    }

    fn f64s(&self, v: &Value, field: &str) -> Result<Vec<f64>, TreeError> {
        self.array(v, field)?
            .iter()
            .enumerate()
            .map(|(i, x)| x.as_f64().ok_or_else(|| self.field(field, format!("entry {i} is not a number: {x}"))))
            .collect()
    }

    /// A count written as a number or a string of one (XGBoost writes `"10"`).
    fn count(&self, v: &Value, field: &str) -> Result<usize, TreeError> {
        let parsed = match v {
            Value::String(s) => s.trim().parse::<usize>().ok(),
            Value::Number(n) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
            _ => None,
        };
        parsed.ok_or_else(|| self.field(field, format!("expected a count, found {v}")))
    }

    fn optional_count(&self, params: &Value, field: &str) -> Result<Option<usize>, TreeError> {
        let key = field.rsplit('.').next().unwrap_or(field);
        params.get(key).map(|v| self.count(v, field)).transpose()
    }

    fn field(&self, field: &str, reason: String) -> TreeError {
        TreeError::Field { model: self.model.clone(), field: field.into(), reason }
    }

    fn unsupported(&self, what: &str, value: impl ToString) -> TreeError {
        TreeError::Unsupported { model: self.model.clone(), what: what.into(), value: value.to_string() }
    }
}
