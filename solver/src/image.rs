//! Assemble a stage's final image config once its layers are known: the planned config, the
//! base's layers and history, then one history entry per instruction (empty_layer where the
//! step produced no layer), and the creation time.

use rbuild_store::{Digest, History, ImageConfig};

use crate::op::Base;
use crate::plan::Planned;
use crate::scheduler::Solved;

/// BuildKit's history comment for Dockerfile steps.
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// The complete config of `stage` after a (non-dry) solve. `created` is an RFC 3339 time.
pub fn assemble(planned: &Planned, solved: &Solved, stage: usize, created: &str) -> ImageConfig {
    let plan_stage = &planned.plan.stages[stage];
    let mut config = planned.images[stage].config.clone();
    if let Base::Stage(base) = plan_stage.base {
        let base_config = assemble(planned, solved, base, created);
        config.history = base_config.history;
        config.rootfs = base_config.rootfs;
    } else if matches!(plan_stage.base, Base::Scratch) {
        config.history.clear();
        config.rootfs.diff_ids.clear();
    }
    let outcome = solved.stages[stage]
        .as_ref()
        .expect("assemble is called for solved stages");
    for (step, record) in plan_stage.steps.iter().zip(&outcome.steps) {
        if let Some(layer) = &record.layer {
            config
                .rootfs
                .diff_ids
                .push(Digest::parse(&layer.diff_id).expect("workers return valid digests"));
        }
        if step.created_by.is_empty() {
            continue;
        }
        config.history.push(History {
            created: Some(created.to_string()),
            created_by: Some(step.created_by.clone()),
            comment: Some(HISTORY_COMMENT.to_string()),
            empty_layer: record.layer.is_none(),
            ..History::default()
        });
    }
    config.created = Some(created.to_string());
    config
}
