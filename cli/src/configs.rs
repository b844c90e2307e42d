//! `ade configs create|list|get`.

use crate::args::{ConfigsCommand, ConfigsCreate};
use crate::output::{self, Table};
use crate::pack;
use crate::{Ctx, Exit};
use anyhow::Context as _;
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use uuid::Uuid;

/// Runs a `configs` subcommand.
pub async fn run(ctx: &Ctx, command: ConfigsCommand) -> anyhow::Result<Exit> {
    match command {
        ConfigsCommand::Create(args) => create(ctx, args).await,
        ConfigsCommand::List { workspace, page } => {
            let path = format!("/api/v1/workspaces/{workspace}/configurations");
            let reply = ctx
                .client
                .json(page.apply(ctx.client.request(Method::GET, &path)))
                .await?;
            if ctx.json {
                output::raw(&reply);
            } else {
                let items = reply.value["items"].as_array().cloned().unwrap_or_default();
                table(&items).print("no configurations");
                let command = format!("ade configs list --workspace {workspace}");
                output::more(&reply.value, &command);
            }
            Ok(Exit::Ok)
        }
        ConfigsCommand::Get { workspace, id } => {
            let path = format!("/api/v1/workspaces/{workspace}/configurations/{id}");
            show(ctx, &ctx.client.get(&path).await?);
            Ok(Exit::Ok)
        }
    }
}

async fn create(ctx: &Ctx, args: ConfigsCreate) -> anyhow::Result<Exit> {
    let path = format!("/api/v1/workspaces/{}/configurations", args.workspace);
    let reply = match &args.from_dir {
        Some(dir) => upload_dir(ctx, &path, dir, args.name.as_deref()).await?,
        None => {
            let name = args.name.as_deref().unwrap_or("starter");
            let body = json!({"name": name, "source": {"type": "template"}});
            ctx.client.post(&path, &body).await?
        }
    };
    show(ctx, &reply);
    Ok(Exit::Ok)
}

async fn upload_dir(
    ctx: &Ctx,
    path: &str,
    dir: &std::path::Path,
    name: Option<&str>,
) -> anyhow::Result<crate::client::Reply> {
    let packed = pack::pack_dir(dir).context("cannot pack the configuration")?;
    let name = match name {
        Some(name) => name.to_owned(),
        None => folder_name(dir)?,
    };
    if !ctx.json {
        let skipped = match packed.skipped.as_slice() {
            [] => String::new(),
            some => format!("; left out {}", some.join(", ")),
        };
        eprintln!(
            "packed {} files ({}, {} compressed){skipped}",
            packed.files,
            output::bytes(packed.expanded),
            output::bytes(packed.archive.len() as u64)
        );
    }
    let part = Part::bytes(packed.archive)
        .file_name("package.tar.gz")
        .mime_str("application/gzip")?;
    let form = Form::new().text("name", name).part("package", part);
    let request = ctx.client.request(Method::POST, path).multipart(form);
    Ok(ctx.client.json(request).await?)
}

/// The folder's own name, for a configuration made from it.
fn folder_name(dir: &std::path::Path) -> anyhow::Result<String> {
    let absolute = std::path::absolute(dir)?;
    absolute
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .context("cannot name the configuration after this folder: pass --name")
}

fn show(ctx: &Ctx, reply: &crate::client::Reply) {
    if ctx.json {
        return output::raw(reply);
    }
    let c = &reply.value;
    output::fields(&[
        ("id", output::cell(&c["id"])),
        ("name", output::cell(&c["name"])),
        ("workspace", output::cell(&c["workspace_id"])),
        ("content digest", output::cell(&c["content_digest"])),
        ("active build", output::cell(&c["active_build_id"])),
        ("created", output::time(&c["created_at"])),
        ("updated", output::time(&c["updated_at"])),
    ]);
}

fn table(items: &[Value]) -> Table {
    let mut table = Table::new(&["ID", "NAME", "DIGEST", "ACTIVE BUILD", "UPDATED"]);
    for c in items {
        let digest = output::cell(&c["content_digest"]);
        table.row(vec![
            output::cell(&c["id"]),
            output::cell(&c["name"]),
            digest.chars().take(19).collect(),
            output::cell(&c["active_build_id"]),
            output::time(&c["updated_at"]),
        ]);
    }
    table
}

/// The id of a configuration named `name` in `workspace`, if there is one.
pub async fn find_by_name(ctx: &Ctx, workspace: &str, name: &str) -> anyhow::Result<Option<Uuid>> {
    let path = format!("/api/v1/workspaces/{workspace}/configurations");
    let items = ctx.client.list_all(&path).await?;
    Ok(items
        .iter()
        .find(|c| c["name"] == name)
        .and_then(|c| c["id"].as_str()?.parse().ok()))
}
