//! The workspace, configuration and document the dry run uses, all named `ade-smoke`.

use super::NAME;
use super::report::{Checked, Note};
use crate::Ctx;
use crate::docs;
use serde_json::json;

/// A tiny roster the starter template maps fully: a dry run over it succeeds.
pub const CSV: &str = "Member ID,First Name,Last Name,Email\n\
                       1,Ada,Lovelace,ada@example.org\n\
                       2,Grace,Hopper,grace@example.org\n";

/// The workspace named `ade-smoke`, created when missing. A workspace key
/// cannot create one, so it uses the only workspace it sees.
pub async fn workspace(ctx: &Ctx) -> Checked<String> {
    let visible = ctx.client.list_all("/api/v1/workspaces").await?;
    if let Some(ws) = visible.iter().find(|w| w["name"] == NAME) {
        let id = id_of(ws)?;
        return Ok((id.clone(), Note::Ok(format!("{id} (reused)"))));
    }
    match ctx
        .client
        .post("/api/v1/workspaces", &json!({"name": NAME}))
        .await
    {
        Ok(reply) => {
            let id = id_of(&reply.value)?;
            Ok((id.clone(), Note::Ok(format!("{id} (created)"))))
        }
        Err(e) if e.code() == Some("admin_required") && visible.len() == 1 => {
            let id = id_of(&visible[0])?;
            let note =
                format!("{id}, the key's own workspace (a workspace key cannot create {NAME})");
            Ok((id, Note::Ok(note)))
        }
        Err(e) => Err(e.into()),
    }
}

/// The template configuration named `ade-smoke` in `workspace`, created when missing.
pub async fn configuration(ctx: &Ctx, workspace: &str) -> Checked<String> {
    if let Some(id) = crate::configs::find_by_name(ctx, workspace, NAME).await? {
        return Ok((id.to_string(), Note::Ok(format!("{id} (reused)"))));
    }
    let path = format!("/api/v1/workspaces/{workspace}/configurations");
    let body = json!({"name": NAME, "source": {"type": "template"}});
    let id = id_of(&ctx.client.post(&path, &body).await?.value)?;
    Ok((
        id.clone(),
        Note::Ok(format!("{id} (created from the template)")),
    ))
}

/// A fresh tiny CSV document.
pub async fn document(ctx: &Ctx, workspace: &str) -> Checked<String> {
    let name = format!("{NAME}.csv");
    let reply = docs::upload_bytes(&ctx.client, workspace, &name, CSV.into()).await?;
    let id = id_of(&reply.value)?;
    Ok((
        id.clone(),
        Note::Ok(format!("{id} ({name}, {} bytes)", CSV.len())),
    ))
}

fn id_of(value: &serde_json::Value) -> anyhow::Result<String> {
    value["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("the API answered without an id: {value}"))
}
