//! [`load_lightgbm`]: a LightGBM text model (`Booster.save_model("m.txt")`, version v3/v4).
//!
//! The header gives `num_class`, `num_tree_per_iteration` (tree `i` feeds output
//! `i % num_tree_per_iteration`), `max_feature_idx`, `objective` and, for random forests,
//! `average_output`. Each `Tree=` section gives `num_leaves`, `split_feature`, `threshold`,
//! `decision_type`, `left_child` / `right_child` (a negative child `c` is leaf `!c`),
//! `leaf_value`, and for categorical splits `cat_boundaries` and `cat_threshold`. LightGBM's
//! rules (`Tree::NumericalDecision`, `Tree::CategoricalDecision`), computed exactly for `f32`
//! inputs: left when `x <= threshold`; `decision_type` bit 0 marks a categorical split, bit 1
//! default-left, bits 2-3 the missing type. Missing type `None`: NaN counts as 0. `Zero`:
//! NaN and values within 1e-35 of zero take the default side. `NaN`: NaN takes the default
//! side. At a categorical split the integer part of `x` goes left when it is in the node's
//! bitset; NaN and negative values go right. Leaves and sums are `f64`, as in LightGBM.
//!
//! Objectives: `binary` (`sigmoid:s` scales the logistic), `multiclass` (softmax),
//! `multiclassova` (a logistic per class), `cross_entropy` (logistic), and the raw-score ones
//! (`regression`, `regression_l1`, `huber`, `fair`, `quantile`, `mape`, `lambdarank`,
//! `rank_xendcg`). Others (`poisson`, `gamma`, `tweedie`, `regression sqrt`, ...), linear
//! trees and files without `end of trees` are errors naming the file and line.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use crate::build::{assemble, round_down, Header, RawNode, RawTree, Test};
use crate::{Aggregate, Ensemble, Objective, Transform, TreeError};

/// Loads a LightGBM text model; see the module docs for what is read and supported.
///
/// Errors: the file cannot be read ([`TreeError::Read`]), a line is malformed or a field is
/// missing or inconsistent ([`TreeError::Line`], naming the line), a tree is broken
/// ([`TreeError::Node`]), or the objective or a feature is not supported
/// ([`TreeError::Unsupported`]).
pub fn load_lightgbm(path: &Path) -> Result<Ensemble, TreeError> {
    let bytes = std::fs::read(path).map_err(|source| TreeError::Read { path: path.into(), source })?;
    let text = String::from_utf8_lossy(&bytes);
    parse(&text, &path.display().to_string())
}

/// A section of `key=value` lines, each value with its 1-based line number.
struct Section<'a> {
    model: &'a str,
    /// The line naming the section (for fields it lacks).
    line: usize,
    fields: HashMap<&'a str, (&'a str, usize)>,
}

impl<'a> Section<'a> {
    fn raw(&self, key: &str) -> Result<(&'a str, usize), TreeError> {
        self.fields.get(key).copied().ok_or_else(|| TreeError::Line {
            model: self.model.into(),
            line: self.line,
            reason: format!("the section has no `{key}`"),
        })
    }

    fn one<T: FromStr>(&self, key: &str) -> Result<T, TreeError> {
        let (v, line) = self.raw(key)?;
        v.trim().parse().map_err(|_| self.bad(line, key, v))
    }

    fn list<T: FromStr>(&self, key: &str, want: usize) -> Result<Vec<T>, TreeError> {
        let (v, line) = self.raw(key)?;
        let items = v
            .split_whitespace()
            .map(|x| x.parse().map_err(|_| self.bad(line, key, x)))
            .collect::<Result<Vec<T>, _>>()?;
        if items.len() != want {
            return Err(TreeError::Line {
                model: self.model.into(),
                line,
                reason: format!("`{key}` has {} values, {want} expected", items.len()),
            });
        }
        Ok(items)
    }

    fn bad(&self, line: usize, key: &str, value: &str) -> TreeError {
        TreeError::Line { model: self.model.into(), line, reason: format!("`{key}`: `{value}` is not a valid value") }
    }
}

/// Parses the text of a model named `model`.
fn parse(text: &str, model: &str) -> Result<Ensemble, TreeError> {
    let mut header = Section { model, line: 1, fields: HashMap::new() };
    let mut trees: Vec<Section> = Vec::new();
    let mut average_output = false;
    let mut ended = false;
    for (i, line) in text.lines().enumerate() {
        let (n, line) = (i + 1, line.trim());
        if line == "end of trees" {
            ended = true;
            break;
        }
        if line.starts_with("Tree=") {
            trees.push(Section { model, line: n, fields: HashMap::new() });
            continue;
        }
        if line == "average_output" {
            average_output = true;
        }
        if let Some((k, v)) = line.split_once('=') {
            let section = trees.last_mut().unwrap_or(&mut header);
            section.fields.insert(k.trim(), (v, n));
        }
    }
    if !ended {
        return Err(TreeError::Line {
            model: model.into(),
            line: text.lines().count(),
            reason: "no `end of trees` line: the file is truncated or not a LightGBM model".into(),
        });
    }
    if let Ok((sizes, line)) = header.raw("tree_sizes") {
        let declared = sizes.split_whitespace().count();
        if declared != trees.len() {
            return Err(TreeError::Line {
                model: model.into(),
                line,
                reason: format!("`tree_sizes` lists {declared} trees, the file has {}", trees.len()),
            });
        }
    }
    let num_class: usize = header.one("num_class")?;
    let per_iteration: usize = header.one("num_tree_per_iteration")?;
    let n_features = header.one::<usize>("max_feature_idx")? + 1;
    let (objective, transform, scale) = objective(&header, num_class)?;
    let n_outputs = num_class.max(1);
    if per_iteration != n_outputs {
        let (_, line) = header.raw("num_tree_per_iteration")?;
        return Err(TreeError::Line {
            model: model.into(),
            line,
            reason: format!("{per_iteration} trees per iteration for {n_outputs} outputs"),
        });
    }
    let raw = trees.iter().enumerate().map(|(t, s)| tree(s, t, t % n_outputs)).collect::<Result<Vec<_>, _>>()?;
    let iterations = (trees.len() / n_outputs).max(1);
    let header = Header {
        model: model.into(),
        n_features,
        n_outputs,
        objective,
        transform,
        aggregate: if average_output { Aggregate::Average } else { Aggregate::Sum },
        base: vec![0.0; n_outputs],
        average_divisor: iterations as f64,
        logistic_scale: scale,
    };
    assemble(header, &raw)
}

/// The objective, the transform and the logistic's scale, from the `objective=` line.
fn objective(header: &Section, num_class: usize) -> Result<(Objective, Transform, f64), TreeError> {
    let (line_text, line) = header.raw("objective")?;
    let mut words = line_text.split_whitespace();
    let name = words.next().unwrap_or("");
    let mut sigmoid = 1.0;
    for word in words {
        match word.split_once(':') {
            Some(("sigmoid", v)) => sigmoid = v.parse().map_err(|_| header.bad(line, "objective", word))?,
            Some(("num_class" | "alpha" | "fair_c" | "max_position", _)) => {}
            _ => {
                return Err(TreeError::Unsupported {
                    model: header.model.into(),
                    what: "objective option".into(),
                    value: format!("{word} (line {line})"),
                })
            }
        }
    }
    let multi = Objective::Multiclass { classes: num_class };
    Ok(match name {
        "binary" => (Objective::Binary, Transform::Logistic, sigmoid),
        "multiclass" if num_class >= 2 => (multi, Transform::Softmax, 1.0),
        "multiclassova" if num_class >= 2 => (multi, Transform::Logistic, sigmoid),
        "cross_entropy" => (Objective::Regression, Transform::Logistic, 1.0),
        "regression" | "regression_l1" | "huber" | "fair" | "quantile" | "mape" | "lambdarank" | "rank_xendcg" => {
            (Objective::Regression, Transform::None, 1.0)
        }
        other => {
            return Err(TreeError::Unsupported {
                model: header.model.into(),
                what: "objective".into(),
                value: format!("{other} (line {line})"),
            })
        }
    })
}

/// One `Tree=` section, its leaves feeding output `class`.
fn tree(s: &Section, t: usize, class: usize) -> Result<RawTree, TreeError> {
    if let Ok(linear) = s.one::<u8>("is_linear") {
        if linear != 0 {
            return Err(TreeError::Unsupported {
                model: s.model.into(),
                what: "linear tree".into(),
                value: format!("Tree={t} (line {})", s.line),
            });
        }
    }
    let leaves: usize = s.one("num_leaves")?;
    if leaves == 0 {
        return Err(TreeError::Line { model: s.model.into(), line: s.line, reason: "num_leaves is 0".into() });
    }
    let values: Vec<f64> = s.list("leaf_value", leaves)?;
    let inner = leaves - 1;
    let leaf = |v: f64| RawNode::Leaf(vec![(class, v)]);
    if inner == 0 {
        return Ok(RawTree { nodes: vec![leaf(values[0])], ids: vec![-1], root: 0, name: t as i64 });
    }
    let feature: Vec<usize> = s.list("split_feature", inner)?;
    let threshold: Vec<f64> = s.list("threshold", inner)?;
    let decision: Vec<u8> = s.list("decision_type", inner)?;
    let left: Vec<i64> = s.list("left_child", inner)?;
    let right: Vec<i64> = s.list("right_child", inner)?;
    let num_cat: usize = s.one("num_cat").unwrap_or(0);
    let (boundaries, words): (Vec<usize>, Vec<u32>) = if num_cat > 0 {
        let boundaries: Vec<usize> = s.list("cat_boundaries", num_cat + 1)?;
        let total = boundaries.last().copied().unwrap_or(0);
        (boundaries, s.list("cat_threshold", total)?)
    } else {
        (Vec::new(), Vec::new())
    };
    let node_error =
        |i: usize, reason: String| TreeError::Node { model: s.model.into(), tree: t as i64, node: i as i64, reason };
    // Internal node i is node i; leaf j is node inner + j.
    let child = |i: usize, c: i64| -> Result<usize, TreeError> {
        let index = if c >= 0 {
            usize::try_from(c).ok().filter(|&c| c < inner)
        } else {
            usize::try_from(!c).ok().filter(|&l| l < leaves).map(|l| inner + l)
        };
        index.ok_or_else(|| node_error(i, format!("child {c} is not a node of the tree")))
    };
    let mut nodes = Vec::with_capacity(inner + leaves);
    for i in 0..inner {
        let d = decision[i];
        let default_left = d & 2 != 0;
        let (test, nan_left) = if d & 1 != 0 {
            let set = threshold[i] as usize;
            let range = boundaries.get(set).zip(boundaries.get(set + 1)).filter(|(a, b)| a <= b && **b <= words.len());
            let (&a, &b) = range
                .ok_or_else(|| node_error(i, format!("category set {} is not in cat_boundaries", threshold[i])))?;
            (Test::Category { words: words[a..b].to_vec(), in_set_left: true }, false)
        } else {
            let th = round_down(threshold[i]);
            match (d >> 2) & 3 {
                0 => (Test::LessEq(th), 0.0 <= threshold[i]),
                1 => (Test::ZeroMissing(th), default_left),
                2 => (Test::LessEq(th), default_left),
                other => return Err(node_error(i, format!("decision_type {d}: missing type {other}"))),
            }
        };
        nodes.push(RawNode::Split {
            feature: feature[i],
            test,
            nan_left,
            left: child(i, left[i])?,
            right: child(i, right[i])?,
        });
    }
    nodes.extend(values.iter().map(|&v| leaf(v)));
    let ids = (0..inner as i64).chain((0..leaves as i64).map(|l| !l)).collect();
    Ok(RawTree { nodes, ids, root: 0, name: t as i64 })
}
