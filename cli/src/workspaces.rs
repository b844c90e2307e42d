//! `ade workspaces create|list`.

use crate::args::{PageArgs, WorkspacesCommand};
use crate::output::{self, Table};
use crate::{Ctx, Exit};
use reqwest::Method;
use serde_json::{Value, json};

/// Runs a `workspaces` subcommand.
pub async fn run(ctx: &Ctx, command: WorkspacesCommand) -> anyhow::Result<Exit> {
    match command {
        WorkspacesCommand::Create { name } => create(ctx, &name).await,
        WorkspacesCommand::List(page) => list(ctx, &page).await,
    }
}

async fn create(ctx: &Ctx, name: &str) -> anyhow::Result<Exit> {
    let reply = ctx
        .client
        .post("/api/v1/workspaces", &json!({ "name": name }))
        .await?;
    if ctx.json {
        output::raw(&reply);
    } else {
        table(std::slice::from_ref(&reply.value)).print("");
    }
    Ok(Exit::Ok)
}

async fn list(ctx: &Ctx, page: &PageArgs) -> anyhow::Result<Exit> {
    let request = page.apply(ctx.client.request(Method::GET, "/api/v1/workspaces"));
    let reply = ctx.client.json(request).await?;
    if ctx.json {
        output::raw(&reply);
    } else {
        let items = reply.value["items"].as_array().cloned().unwrap_or_default();
        table(&items).print("no workspaces");
        output::more(&reply.value, "ade workspaces list");
    }
    Ok(Exit::Ok)
}

fn table(items: &[Value]) -> Table {
    let mut table = Table::new(&["ID", "NAME", "CREATED"]);
    for w in items {
        table.row(vec![
            output::cell(&w["id"]),
            output::cell(&w["name"]),
            output::time(&w["created_at"]),
        ]);
    }
    table
}
