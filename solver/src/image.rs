//! Assemble a stage's final image config once its layers are known: the planned config, the
//! base's layers and history, then one history entry per instruction (empty_layer where the
//! step produced no layer), and the creation time.

use rbuild_store::{History, ImageConfig};

use crate::op::Base;
use crate::plan::Planned;
use crate::scheduler::Solved;

/// BuildKit's history comment for Dockerfile steps.
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// Extra history fields rbuild records (other tools ignore unknown fields): the cache key that
/// produced the layer and where the step is in the Dockerfile.
pub const HISTORY_CACHE_KEY: &str = "rbuild.cache_key";
pub const HISTORY_STEP: &str = "rbuild.step";

/// RFC 3339 (UTC, seconds) of a unix time.
pub fn rfc3339(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// When the layers of `stage` (and the stages it builds on) were built: the newest step time.
fn newest_build(planned: &Planned, solved: &Solved, stage: usize) -> Option<i64> {
    let own = solved.stages[stage]
        .as_ref()
        .and_then(|o| o.steps.iter().filter_map(|r| r.built_at).max());
    let base = match planned.plan.stages[stage].base {
        Base::Stage(b) => newest_build(planned, solved, b),
        _ => None,
    };
    own.max(base)
}

/// The complete config of `stage` after a (non-dry) solve.
///
/// Times: with `SOURCE_DATE_EPOCH` (`epoch`) every new time is that. Otherwise each history
/// entry gets the time its step was built (a cached step keeps the time it was first built),
/// and `created` is the newest of them — so an unchanged rebuild yields the same image ID.
/// A stage that built nothing itself (only metadata) is created `now`.
pub fn assemble(
    planned: &Planned,
    solved: &Solved,
    stage: usize,
    epoch: Option<i64>,
    now: i64,
) -> ImageConfig {
    let created_secs = epoch.unwrap_or_else(|| newest_build(planned, solved, stage).unwrap_or(now));
    let created = rfc3339(created_secs);
    let plan_stage = &planned.plan.stages[stage];
    let mut config = planned.images[stage].config.clone();
    if let Base::Stage(base) = plan_stage.base {
        let base_config = assemble(planned, solved, base, epoch, now);
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
            config.rootfs.diff_ids.push(layer.diff_id.clone());
        }
        if step.created_by.is_empty() {
            continue;
        }
        let at = match (epoch, record.built_at) {
            (Some(e), _) => rfc3339(e),
            (None, Some(t)) => rfc3339(t),
            (None, None) => created.clone(),
        };
        let mut extra = std::collections::BTreeMap::new();
        extra.insert(
            HISTORY_STEP.to_string(),
            serde_json::Value::String(format!("{} line {}", plan_stage.label(), step.site.line)),
        );
        if let Some(key) = &record.key {
            extra.insert(
                HISTORY_CACHE_KEY.to_string(),
                serde_json::Value::String(key.0.clone()),
            );
        }
        config.history.push(History {
            created: Some(at),
            created_by: Some(step.created_by.clone()),
            comment: Some(HISTORY_COMMENT.to_string()),
            empty_layer: record.layer.is_none(),
            author: None,
            extra,
        });
    }
    config.created = Some(created);
    config
}
