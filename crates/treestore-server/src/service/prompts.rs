//! Prompt RPCs: StorePrompt, GetPrompt (latest, a version, or as deployed at
//! an instant), ListPromptVersions, RecordPromptUsage, GetPromptUsages,
//! GetPromptEffectiveness.

use tonic::Status;

use super::Ctx;
use crate::convert::{self, from_ts};
use crate::pb;
use crate::status::{from_error, in_field, invalid, limit, opt};

pub fn store_prompt(
    ctx: &Ctx,
    r: pb::StorePromptRequest,
) -> Result<pb::StorePromptResponse, Status> {
    let t = r.prompt.ok_or_else(|| invalid("prompt", "must be set"))?;
    let t = convert::prompt_from_pb(t, "prompt")?;
    let t = ctx
        .store
        .prompts()
        .put_template(t)
        .map_err(|e| in_field("prompt", &[], e))?;
    Ok(pb::StorePromptResponse {
        success: true,
        message: format!("stored prompt {} version {}", t.prompt_id, t.version),
        prompt: Some(convert::prompt_to_pb(t)),
    })
}

pub fn get_prompt(ctx: &Ctx, r: pb::GetPromptRequest) -> Result<pb::GetPromptResponse, Status> {
    let prompts = ctx.store.prompts();
    let as_of = from_ts("as_of", r.as_of.as_ref())?;
    let t = match (opt(&r.version), as_of) {
        (Some(_), Some(_)) => return Err(invalid("as_of", "give version or as_of, not both")),
        (Some(v), None) => prompts.template(&r.prompt_id, v),
        (None, Some(at)) => prompts.deployed_as_of(&r.prompt_id, at),
        (None, None) => prompts.latest(&r.prompt_id),
    }
    .map_err(from_error)?;
    Ok(pb::GetPromptResponse {
        prompt: Some(convert::prompt_to_pb(t)),
    })
}

pub fn list_prompt_versions(
    ctx: &Ctx,
    r: pb::ListPromptVersionsRequest,
) -> Result<pb::ListPromptVersionsResponse, Status> {
    let v = ctx
        .store
        .prompts()
        .versions(&r.prompt_id)
        .map_err(from_error)?;
    if v.is_empty() {
        return Err(Status::not_found(format!(
            "prompt {:?} not found",
            r.prompt_id
        )));
    }
    Ok(pb::ListPromptVersionsResponse {
        prompts: v.into_iter().map(convert::prompt_to_pb).collect(),
    })
}

pub fn record_prompt_usage(
    ctx: &Ctx,
    r: pb::RecordPromptUsageRequest,
) -> Result<pb::RecordPromptUsageResponse, Status> {
    let u = r.usage.ok_or_else(|| invalid("usage", "must be set"))?;
    let u = convert::usage_from_pb(u, "usage")?;
    let u = ctx
        .store
        .prompts()
        .record_usage(u)
        .map_err(|e| in_field("usage", &[], e))?;
    Ok(pb::RecordPromptUsageResponse {
        success: true,
        message: format!("recorded usage {} of prompt {}", u.usage_id, u.prompt_id),
        id: u.usage_id,
    })
}

pub fn get_prompt_usages(
    ctx: &Ctx,
    r: pb::GetPromptUsagesRequest,
) -> Result<pb::GetPromptUsagesResponse, Status> {
    let limit = limit("limit", r.limit)?;
    if r.prompt_id.is_empty() && !r.prompt_version.is_empty() {
        return Err(invalid("prompt_version", "needs a prompt_id"));
    }
    let prompts = ctx.store.prompts();
    let usages = match (opt(&r.case_id), opt(&r.prompt_id)) {
        (Some(case), None) => prompts.usages_by_case(case, limit),
        (Some(case), Some(p)) => {
            prompts.usages_by_case_and_prompt(case, p, opt(&r.prompt_version), limit)
        }
        (None, Some(p)) => prompts.usages_by_prompt(p, opt(&r.prompt_version), limit),
        (None, None) => return Err(invalid("case_id", "give case_id or prompt_id")),
    }
    .map_err(from_error)?;
    Ok(pb::GetPromptUsagesResponse {
        usages: usages.into_iter().map(convert::usage_to_pb).collect(),
    })
}

pub fn get_prompt_effectiveness(
    ctx: &Ctx,
    r: pb::GetPromptEffectivenessRequest,
) -> Result<pb::GetPromptEffectivenessResponse, Status> {
    let e = ctx
        .store
        .prompts()
        .effectiveness(&r.prompt_id, opt(&r.prompt_version))
        .map_err(from_error)?;
    let mut outcomes: Vec<pb::OutcomeCount> = e
        .outcomes
        .into_iter()
        .map(|(outcome, count)| pb::OutcomeCount {
            outcome,
            count: count as i64,
        })
        .collect();
    outcomes.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.outcome.cmp(&b.outcome))
    });
    Ok(pb::GetPromptEffectivenessResponse {
        uses: e.uses as i64,
        outcomes,
    })
}
