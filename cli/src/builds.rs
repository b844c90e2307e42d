//! `ade builds create|get`.

use crate::args::BuildsCommand;
use crate::client::Reply;
use crate::follow::Follower;
use crate::output;
use crate::watch::{self, Ended, Watch};
use crate::{Ctx, Exit};
use anyhow::Context as _;
use serde_json::json;

/// Runs a `builds` subcommand.
pub async fn run(ctx: &Ctx, command: BuildsCommand) -> anyhow::Result<Exit> {
    match command {
        BuildsCommand::Create {
            workspace,
            config,
            force,
            follow,
        } => {
            let path = format!("/api/v1/workspaces/{workspace}/configurations/{config}/builds");
            let body = json!({"stream": false, "options": {"force": force}});
            let reply = ctx.client.post(&path, &body).await?;
            if !follow {
                show(ctx, &reply);
                return Ok(Exit::Ok);
            }
            let id = reply.value["id"]
                .as_str()
                .context("the API answered without a build id")?;
            follow_build(ctx, id).await
        }
        BuildsCommand::Get { id } => {
            show(ctx, &ctx.client.get(&format!("/api/v1/builds/{id}")).await?);
            Ok(Exit::Ok)
        }
    }
}

/// Follows a build's own stream; exits 0 when it is ready. Ctrl-C only stops following.
async fn follow_build(ctx: &Ctx, id: &str) -> anyhow::Result<Exit> {
    let mut watch = Watch::new(ctx.json, 0);
    let mut follower = Follower::build(&ctx.client, id);
    Ok(match watch::follow(&mut watch, &mut follower).await? {
        Ended::Completed(event) if event.payload()["status"] == "ready" => Exit::Ok,
        Ended::Completed(_) => Exit::Failed,
        Ended::Interrupted => Exit::Interrupted,
    })
}

fn show(ctx: &Ctx, reply: &Reply) {
    if ctx.json {
        return output::raw(reply);
    }
    let b = &reply.value;
    output::fields(&[
        ("id", output::cell(&b["id"])),
        ("status", output::cell(&b["status"])),
        ("configuration", output::cell(&b["configuration_id"])),
        ("fingerprint", output::cell(&b["fingerprint"])),
        ("config digest", output::cell(&b["config_digest"])),
        ("engine", output::cell(&b["engine_version"])),
        ("python", output::cell(&b["python_version"])),
        ("exit code", output::cell(&b["exit_code"])),
        ("error", output::cell(&b["error_message"])),
        ("created", output::time(&b["created_at"])),
        ("started", output::time(&b["started_at"])),
        ("completed", output::time(&b["completed_at"])),
    ]);
}
