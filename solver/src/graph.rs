//! The build graph (petgraph): which stages the target needs, in which order, which can run
//! side by side, and the step-level DAG that `rbuild plan` prints as dot or JSON.
//!
//! Step edges are `parent` (the step it builds on), `base` (a stage used as FROM), `from` (a
//! stage read by `COPY --from` or a mount), and `var` (from the ARG/ENV step that set a variable
//! to each later step whose key uses it). Stages the target does not need are kept in the graph,
//! labelled as skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use petgraph::Direction;
use petgraph::algo::toposort;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::Serialize;

use crate::op::{Base, FileSource, Op, Plan, RunMount, StepId};

/// Stages the target needs, in an order where every stage comes after the stages it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageOrder {
    /// Needed stages, dependencies first.
    pub order: Vec<usize>,
    /// For every stage (needed or not), the stages it depends on.
    pub deps: Vec<BTreeSet<usize>>,
    /// Stages the target does not need; reported as skipped.
    pub skipped: Vec<usize>,
}

/// The stages a stage reads from: its base and any `COPY --from` / `RUN --mount from=`.
pub fn stage_deps(plan: &Plan, stage: usize) -> BTreeSet<usize> {
    let mut deps = BTreeSet::new();
    let st = &plan.stages[stage];
    if let Base::Stage(i) = st.base {
        deps.insert(i);
    }
    for step in &st.steps {
        match &step.op {
            Op::Copy(copy) => {
                if let FileSource::Stage(i) = copy.from {
                    deps.insert(i);
                }
            }
            Op::Run(run) => {
                for mount in &run.mounts {
                    match mount {
                        RunMount::Bind {
                            from: FileSource::Stage(i),
                            ..
                        }
                        | RunMount::Cache {
                            from: Some((FileSource::Stage(i), _)),
                            ..
                        } => {
                            deps.insert(*i);
                        }
                        _ => {}
                    }
                }
            }
            Op::Meta | Op::Mkdir(_) => {}
        }
    }
    deps
}

/// A dependency cycle between stages, named in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    pub stages: Vec<usize>,
}

/// Order the stages the target needs; unused stages are skipped.
pub fn stage_order(plan: &Plan) -> Result<StageOrder, Cycle> {
    let n = plan.stages.len();
    let deps: Vec<BTreeSet<usize>> = (0..n).map(|i| stage_deps(plan, i)).collect();

    // Reachability from the target.
    let mut needed = vec![false; n];
    let mut stack = vec![plan.target];
    while let Some(s) = stack.pop() {
        if std::mem::replace(&mut needed[s], true) {
            continue;
        }
        stack.extend(deps[s].iter().copied());
    }

    let mut graph: DiGraph<usize, ()> = DiGraph::new();
    let nodes: Vec<NodeIndex> = (0..n).map(|i| graph.add_node(i)).collect();
    for (s, ds) in deps.iter().enumerate() {
        if !needed[s] {
            continue;
        }
        for &d in ds {
            graph.add_edge(nodes[d], nodes[s], ());
        }
    }
    match toposort(&graph, None) {
        Ok(sorted) => Ok(StageOrder {
            order: sorted
                .into_iter()
                .map(|ix| graph[ix])
                .filter(|&s| needed[s])
                .collect(),
            deps,
            skipped: (0..n).filter(|&s| !needed[s]).collect(),
        }),
        Err(cycle) => Err(Cycle {
            stages: find_cycle(&deps, graph[cycle.node_id()]),
        }),
    }
}

/// Walk dependencies from `start` until a stage repeats; returns the loop in order.
fn find_cycle(deps: &[BTreeSet<usize>], start: usize) -> Vec<usize> {
    fn visit(
        deps: &[BTreeSet<usize>],
        s: usize,
        path: &mut Vec<usize>,
        done: &mut Vec<bool>,
    ) -> Option<Vec<usize>> {
        if let Some(pos) = path.iter().position(|&p| p == s) {
            return Some(path[pos..].to_vec());
        }
        if done[s] {
            return None;
        }
        path.push(s);
        for &d in &deps[s] {
            if let Some(cycle) = visit(deps, d, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done[s] = true;
        None
    }
    let mut done = vec![false; deps.len()];
    visit(deps, start, &mut Vec::new(), &mut done).unwrap_or_else(|| vec![start])
}

/// A node of the step-level graph printed by `rbuild plan`.
#[derive(Debug, Clone, Serialize)]
pub struct PlanNode {
    pub id: String,
    pub stage: usize,
    pub label: String,
    pub kind: &'static str,
    pub skipped: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanEdge {
    pub from: String,
    pub to: String,
    /// `parent`, `base`, `from` (another stage's files), or `var` (an ARG/ENV the step uses).
    pub kind: &'static str,
    /// For `var` edges: the variable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub var: Option<String>,
}

/// The step DAG: a base node per stage, one node per step, edges parent→child, from the
/// last step of a source stage to the step that reads it, and from the ARG/ENV step that
/// defines a variable to each later step of the stage whose key uses it.
#[derive(Debug, Clone, Serialize)]
pub struct StepGraph {
    pub nodes: Vec<PlanNode>,
    pub edges: Vec<PlanEdge>,
}

fn step_node(id: StepId) -> String {
    format!("s{}_{}", id.stage, id.index)
}

fn base_node(stage: usize) -> String {
    format!("s{stage}_from")
}

/// The node that stands for a stage's final state.
fn stage_tip(plan: &Plan, stage: usize) -> String {
    match plan.stages[stage].steps.last() {
        Some(step) => step_node(step.id),
        None => base_node(stage),
    }
}

pub fn step_graph(plan: &Plan, order: &StageOrder) -> StepGraph {
    let skipped: BTreeSet<usize> = order.skipped.iter().copied().collect();
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    for stage in &plan.stages {
        let from_label = match &stage.base {
            // Not planned (the target does not need it): its FROM was never resolved.
            _ if skipped.contains(&stage.index) => format!(
                "skipped: not needed by the target (Dockerfile:{})",
                stage.site.line
            ),
            Base::Scratch => "FROM scratch".to_string(),
            Base::Image(img) => format!("FROM {}", img.reference),
            Base::Stage(i) => format!("FROM {}", plan.stages[*i].label()),
        };
        nodes.push(PlanNode {
            id: base_node(stage.index),
            stage: stage.index,
            label: format!("[{}] {from_label}", stage.label()),
            kind: "from",
            skipped: skipped.contains(&stage.index),
        });
        if let Base::Stage(i) = stage.base {
            edges.push(PlanEdge {
                from: stage_tip(plan, i),
                to: base_node(stage.index),
                kind: "base",
                var: None,
            });
        }
        let mut prev = base_node(stage.index);
        // Variable → the node of the ARG/ENV step that last set it in this stage.
        let mut definers: BTreeMap<String, String> = BTreeMap::new();
        for step in &stage.steps {
            let id = step_node(step.id);
            for name in step.key.vars.keys() {
                if let Some(def) = definers.get(name).filter(|d| **d != prev) {
                    edges.push(PlanEdge {
                        from: def.clone(),
                        to: id.clone(),
                        kind: "var",
                        var: Some(name.clone()),
                    });
                }
            }
            for name in defined_vars(&step.display) {
                definers.insert(name, id.clone());
            }
            nodes.push(PlanNode {
                id: id.clone(),
                stage: stage.index,
                label: format!("[{}] {}", stage.label(), step.display),
                kind: match step.op {
                    Op::Meta => "meta",
                    Op::Run(_) => "run",
                    Op::Copy(_) => "copy",
                    Op::Mkdir(_) => "mkdir",
                },
                skipped: skipped.contains(&stage.index),
            });
            edges.push(PlanEdge {
                from: prev.clone(),
                to: id.clone(),
                kind: "parent",
                var: None,
            });
            let mut sources = BTreeSet::new();
            match &step.op {
                Op::Copy(copy) => {
                    if let FileSource::Stage(i) = copy.from {
                        sources.insert(i);
                    }
                }
                Op::Run(run) => {
                    for mount in &run.mounts {
                        if let RunMount::Bind {
                            from: FileSource::Stage(i),
                            ..
                        }
                        | RunMount::Cache {
                            from: Some((FileSource::Stage(i), _)),
                            ..
                        } = mount
                        {
                            sources.insert(*i);
                        }
                    }
                }
                _ => {}
            }
            for i in sources {
                edges.push(PlanEdge {
                    from: stage_tip(plan, i),
                    to: id.clone(),
                    kind: "from",
                    var: None,
                });
            }
            prev = id;
        }
    }
    StepGraph { nodes, edges }
}

/// The variables an `ARG`/`ENV` step (by its display text) sets: each `NAME` of `NAME=...`
/// or of a bare `ARG NAME`, and the first word of the legacy `ENV NAME value` form.
fn defined_vars(display: &str) -> Vec<String> {
    let mut words = display.split_whitespace();
    let keyword = words.next().unwrap_or_default().to_ascii_uppercase();
    if keyword != "ARG" && keyword != "ENV" {
        return Vec::new();
    }
    let words: Vec<&str> = words.collect();
    let is_name = |n: &str| {
        !n.is_empty()
            && n.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let assigned: Vec<String> = words
        .iter()
        .filter_map(|w| w.split_once('=').map(|(n, _)| n))
        .filter(|n| is_name(n))
        .map(str::to_string)
        .collect();
    if keyword == "ENV" && !words.first().is_some_and(|w| w.contains('=')) {
        return words
            .first()
            .filter(|w| is_name(w))
            .map(|w| vec![w.to_string()])
            .unwrap_or_default();
    }
    if keyword == "ARG" {
        let mut names = assigned;
        names.extend(
            words
                .iter()
                .filter(|w| !w.contains('=') && is_name(w))
                .map(|w| w.to_string()),
        );
        return names;
    }
    assigned
}

impl StepGraph {
    /// Graphviz text.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph rbuild {\n  rankdir=TB;\n  node [shape=box];\n");
        for node in &self.nodes {
            let style = if node.skipped {
                ", style=dashed, color=gray"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {} [label={}{style}];",
                node.id,
                dot_quote(&node.label)
            );
        }
        for edge in &self.edges {
            let style = match (edge.kind, &edge.var) {
                ("parent", _) => String::new(),
                ("var", Some(var)) => format!(" [style=dotted, label={}]", dot_quote(var)),
                _ => " [style=dashed]".to_string(),
            };
            let _ = writeln!(out, "  {} -> {}{style};", edge.from, edge.to);
        }
        out.push_str("}\n");
        out
    }

    /// Nodes with no incoming edges (for tests and sanity checks).
    pub fn roots(&self) -> Vec<&str> {
        let mut g: DiGraph<&str, ()> = DiGraph::new();
        let ix: std::collections::HashMap<&str, NodeIndex> = self
            .nodes
            .iter()
            .map(|n| (n.id.as_str(), g.add_node(n.id.as_str())))
            .collect();
        for e in &self.edges {
            g.add_edge(ix[e.from.as_str()], ix[e.to.as_str()], ());
        }
        g.node_indices()
            .filter(|&n| {
                g.neighbors_directed(n, Direction::Incoming)
                    .next()
                    .is_none()
            })
            .map(|n| g[n])
            .collect()
    }
}

fn dot_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::*;

    pub(crate) fn meta_step(stage: usize, index: usize, text: &str) -> Step {
        Step {
            id: StepId { stage, index },
            display: text.into(),
            site: Site::default(),
            op: Op::Meta,
            created_by: text.into(),
            key: KeyParts::default(),
        }
    }

    fn copy_from(stage: usize, index: usize, from: usize) -> Step {
        Step {
            id: StepId { stage, index },
            display: format!("COPY --from={from} / /"),
            site: Site::default(),
            op: Op::Copy(CopyOp {
                add: false,
                from: FileSource::Stage(from),
                sources: vec![CopySource::Path {
                    path: "/".into(),
                    span: 0..0,
                }],
                dest: "/".into(),
                chown: None,
                chmod: None,
                link: false,
                parents: false,
                excludes: vec![],
                checksum: None,
                keep_git_dir: false,
                unpack: None,
                workdir: "/".into(),
            }),
            created_by: String::new(),
            key: KeyParts::default(),
        }
    }

    fn stage(index: usize, base: Base, steps: Vec<Step>) -> Stage {
        Stage {
            index,
            name: Some(format!("s{index}")),
            base,
            steps,
            site: Site::default(),
            platform: Platform::host(),
            no_cache: false,
        }
    }

    fn plan(stages: Vec<Stage>, target: usize) -> Plan {
        Plan {
            stages,
            target,
            platform: Platform::host(),
        }
    }

    /// Stages the target does not use are skipped; dependencies come first.
    #[test]
    fn target_prunes_unused_stages() {
        let p = plan(
            vec![
                stage(0, Base::Scratch, vec![meta_step(0, 0, "ENV A=1")]),
                stage(1, Base::Scratch, vec![]),
                stage(2, Base::Stage(0), vec![copy_from(2, 0, 1)]),
                stage(3, Base::Scratch, vec![]),
            ],
            2,
        );
        let order = stage_order(&p).unwrap();
        assert_eq!(order.skipped, vec![3]);
        let pos = |s| order.order.iter().position(|&x| x == s).unwrap();
        assert!(pos(0) < pos(2) && pos(1) < pos(2));
        assert_eq!(order.order.len(), 3);
    }

    /// A stage that (indirectly) copies from itself is a cycle, named in order.
    #[test]
    fn cycles_are_reported() {
        let p = plan(
            vec![
                stage(0, Base::Stage(1), vec![]),
                stage(1, Base::Scratch, vec![copy_from(1, 0, 0)]),
            ],
            1,
        );
        let cycle = stage_order(&p).unwrap_err();
        let mut stages = cycle.stages.clone();
        stages.sort();
        assert_eq!(stages, vec![0, 1]);
    }

    /// The step graph links stages through their last step and renders as dot.
    #[test]
    fn step_graph_edges_and_dot() {
        let p = plan(
            vec![
                stage(0, Base::Scratch, vec![meta_step(0, 0, "ENV A=\"1\"")]),
                stage(1, Base::Scratch, vec![copy_from(1, 0, 0)]),
            ],
            1,
        );
        let order = stage_order(&p).unwrap();
        let g = step_graph(&p, &order);
        assert!(
            g.edges
                .iter()
                .any(|e| e.from == "s0_0" && e.to == "s1_0" && e.kind == "from")
        );
        let mut roots = g.roots();
        roots.sort();
        assert_eq!(roots, vec!["s0_from", "s1_from"]);
        let dot = g.to_dot();
        assert!(dot.contains("s0_0 -> s1_0 [style=dashed];"), "{dot}");
        assert!(dot.contains(r#"ENV A=\"1\""#), "{dot}");
    }

    /// Which variables ARG and ENV steps set, by their display text.
    #[test]
    fn defined_vars_of_arg_and_env() {
        assert_eq!(defined_vars("ARG V=1 W"), ["V", "W"]);
        assert_eq!(defined_vars("ENV A=\"x y\" B=2"), ["A", "B"]);
        assert_eq!(defined_vars("ENV LEGACY some value"), ["LEGACY"]);
        assert!(defined_vars("RUN A=1 true").is_empty());
    }

    /// A step whose key uses a variable gets a `var` edge from the step that set it, unless
    /// that step is its parent anyway.
    #[test]
    fn variable_edges_point_at_the_defining_step() {
        let mut user = meta_step(0, 2, "LABEL x=$V$E");
        user.key.vars.insert("V".into(), Some("1".into()));
        user.key.vars.insert("E".into(), Some("2".into()));
        let p = plan(
            vec![stage(
                0,
                Base::Scratch,
                vec![meta_step(0, 0, "ARG V=1"), meta_step(0, 1, "ENV E=2"), user],
            )],
            0,
        );
        let g = step_graph(&p, &stage_order(&p).unwrap());
        let vars: Vec<(&str, &str, Option<&str>)> = g
            .edges
            .iter()
            .filter(|e| e.kind == "var")
            .map(|e| (e.from.as_str(), e.to.as_str(), e.var.as_deref()))
            .collect();
        assert_eq!(vars, [("s0_0", "s0_2", Some("V"))]);
        assert!(
            g.to_dot()
                .contains(r#"s0_0 -> s0_2 [style=dotted, label="V"];"#)
        );
    }

    /// A stage the target does not need is shown as skipped, not as `FROM scratch`.
    #[test]
    fn skipped_stages_are_labelled_as_skipped() {
        let p = plan(
            vec![
                stage(0, Base::Scratch, Vec::new()),
                stage(1, Base::Scratch, vec![meta_step(1, 0, "ENV B=2")]),
            ],
            1,
        );
        let order = stage_order(&p).unwrap();
        let g = step_graph(&p, &order);
        let node = g.nodes.iter().find(|n| n.id == "s0_from").unwrap();
        assert!(node.skipped && node.label.contains("skipped: not needed by the target"));
        let node = g.nodes.iter().find(|n| n.id == "s1_from").unwrap();
        assert!(!node.skipped && node.label.ends_with("FROM scratch"));
    }
}
