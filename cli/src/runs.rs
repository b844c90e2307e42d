//! `ade runs create|list|get|cancel|logs|outputs`.

use crate::args::{RunsCommand, RunsCreate};
use crate::client::Reply;
use crate::follow::Event;
use crate::output::{self, Table};
use crate::watch::{self, OnInterrupt, Watch};
use crate::{Ctx, Exit};
use anyhow::Context as _;
use futures_util::StreamExt as _;
use reqwest::Method;
use serde_json::{Map, Value, json};
use std::path::Path;
use tokio::io::AsyncWriteExt as _;

/// Runs a `runs` subcommand.
pub async fn run(ctx: &Ctx, command: RunsCommand) -> anyhow::Result<Exit> {
    match command {
        RunsCommand::Create(args) => create(ctx, args).await,
        RunsCommand::List {
            workspace,
            status,
            config,
            page,
        } => {
            let path = format!("/api/v1/workspaces/{workspace}/runs");
            let mut request = page.apply(ctx.client.request(Method::GET, &path));
            if let Some(status) = status {
                request = request.query(&[("status", status.as_str())]);
            }
            if let Some(config) = config {
                request = request.query(&[("configuration_id", config.to_string())]);
            }
            list(
                ctx,
                &ctx.client.json(request).await?,
                &workspace.to_string(),
            );
            Ok(Exit::Ok)
        }
        RunsCommand::Get { id } => {
            show(ctx, &ctx.client.get(&format!("/api/v1/runs/{id}")).await?);
            Ok(Exit::Ok)
        }
        RunsCommand::Cancel { id } => {
            let path = format!("/api/v1/runs/{id}/cancel");
            let reply = ctx.client.post_empty(&path).await?;
            if ctx.json {
                output::raw(&reply);
            } else if reply.value["status"] == "cancelled" {
                println!("run {id} cancelled");
            } else {
                let status = output::cell(&reply.value["status"]);
                println!(
                    "cancel requested: run {id} was {status}; its worker stops it within seconds"
                );
            }
            Ok(Exit::Ok)
        }
        RunsCommand::Logs { id, follow } => logs(ctx, &id.to_string(), follow).await,
        RunsCommand::Outputs { id, download } => outputs(ctx, &id.to_string(), download).await,
    }
}

/// The create request's body.
fn create_body(args: &RunsCreate) -> Value {
    let metadata: Map<String, Value> = args
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    json!({
        "stream": false,
        "options": {
            "dry_run": args.dry_run,
            "validate_only": args.validate_only,
            "force_rebuild": args.force_rebuild,
            "document_ids": args.docs,
            "input_sheet_names": args.sheets,
            "metadata": metadata,
        }
    })
}

async fn create(ctx: &Ctx, args: RunsCreate) -> anyhow::Result<Exit> {
    let path = format!("/api/v1/configs/{}/runs", args.config);
    let mut request = ctx
        .client
        .request(Method::POST, &path)
        .json(&create_body(&args));
    if let Some(key) = &args.idempotency_key {
        request = request.header("idempotency-key", key);
    }
    let reply = ctx.client.json(request).await?;
    let id = reply.value["id"]
        .as_str()
        .context("the API answered without a run id")?
        .to_owned();
    if !args.follow {
        show(ctx, &reply);
        if !ctx.json {
            println!("(follow it: ade runs logs {id} --follow)");
        }
        return Ok(Exit::Ok);
    }
    watch::run(ctx, &id, args.docs.len(), OnInterrupt::Cancel).await
}

fn list(ctx: &Ctx, reply: &Reply, workspace: &str) {
    if ctx.json {
        return output::raw(reply);
    }
    let mut table = Table::new(&[
        "ID", "STATUS", "CONFIG", "CREATED", "DURATION", "EXIT", "FAILURE",
    ]);
    for r in reply.value["items"].as_array().into_iter().flatten() {
        table.row(vec![
            output::cell(&r["id"]),
            output::cell(&r["status"]),
            output::cell(&r["configuration_id"]),
            output::time(&r["created_at"]),
            r["duration_ms"]
                .as_i64()
                .map_or("-".into(), output::duration_ms),
            output::cell(&r["exit_code"]),
            output::cell(&r["failure"]["code"]),
        ]);
    }
    table.print("no runs");
    output::more(
        &reply.value,
        &format!("ade runs list --workspace {workspace}"),
    );
}

/// Prints a RunResource.
pub fn show(ctx: &Ctx, reply: &Reply) {
    if ctx.json {
        return output::raw(reply);
    }
    let r = &reply.value;
    let failure = match &r["failure"] {
        Value::Object(f) => format!(
            "{} at {}: {}",
            output::cell(&f["code"]),
            output::cell(&f["stage"]),
            output::cell(&f["message"])
        ),
        _ => "-".into(),
    };
    let documents: Vec<String> = r["options"]["document_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .map(output::cell)
        .collect();
    output::fields(&[
        ("id", output::cell(&r["id"])),
        ("status", output::cell(&r["status"])),
        ("attempt", output::cell(&r["attempt"])),
        ("workspace", output::cell(&r["workspace_id"])),
        ("configuration", output::cell(&r["configuration_id"])),
        ("build", output::cell(&r["build_id"])),
        ("documents", documents.join(", ")),
        ("dry run", output::cell(&r["options"]["dry_run"])),
        ("exit code", output::cell(&r["exit_code"])),
        ("failure", failure),
        ("worker", output::cell(&r["worker_id"])),
        ("created", output::time(&r["created_at"])),
        ("started", output::time(&r["started_at"])),
        ("completed", output::time(&r["completed_at"])),
        (
            "duration",
            r["duration_ms"]
                .as_i64()
                .map_or("-".into(), output::duration_ms),
        ),
    ]);
}

/// Prints the stored events (or follows them live to the run's end).
async fn logs(ctx: &Ctx, id: &str, follow: bool) -> anyhow::Result<Exit> {
    if follow {
        let run = ctx.client.get(&format!("/api/v1/runs/{id}")).await?;
        let documents = run.value["options"]["document_ids"]
            .as_array()
            .map_or(0, Vec::len);
        return watch::run(ctx, id, documents, OnInterrupt::AskOnly).await;
    }
    // The log file is every stored event as NDJSON, as the API serializes it.
    let path = format!("/api/v1/runs/{id}/logfile");
    let response = ctx
        .client
        .send(ctx.client.request(Method::GET, &path))
        .await?;
    let mut watch = Watch::new(ctx.json, 0);
    let mut body = response.bytes_stream();
    let mut pending = Vec::new();
    while let Some(chunk) = body.next().await {
        pending.extend_from_slice(&chunk.map_err(|e| ctx.client.unreachable(&e))?);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line).trim_end().to_owned();
            if !line.is_empty() {
                let event = Event::parse(line).context("the log file holds a malformed event")?;
                watch.show(&event);
            }
        }
    }
    anyhow::ensure!(pending.is_empty(), "the log file ended mid-line");
    Ok(Exit::Ok)
}

/// Every stored event of a run, in order, paged from `/events`.
pub async fn stored_events(ctx: &Ctx, id: &str) -> anyhow::Result<Vec<Event>> {
    let path = format!("/api/v1/runs/{id}/events");
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let request = ctx
            .client
            .request(Method::GET, &path)
            .query(&[("after_sequence", after), ("limit", 1000)]);
        let page = ctx.client.json(request).await?.value;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            return Ok(events);
        }
        for item in items {
            let event = Event::parse(item.to_string()).context("the API sent a malformed event")?;
            after = event.sequence;
            events.push(event);
        }
    }
}

/// Lists a run's outputs, and downloads them into `dir` when asked.
async fn outputs(ctx: &Ctx, id: &str, dir: Option<std::path::PathBuf>) -> anyhow::Result<Exit> {
    let reply = ctx
        .client
        .get(&format!("/api/v1/runs/{id}/outputs"))
        .await?;
    let files = reply.value["files"].as_array().cloned().unwrap_or_default();
    if ctx.json {
        output::raw(&reply);
    } else if dir.is_none() {
        let mut table = Table::new(&["NAME", "SIZE", "TYPE", "URL"]);
        for f in &files {
            table.row(vec![
                output::cell(&f["name"]),
                output::bytes(f["byte_size"].as_u64().unwrap_or(0)),
                output::cell(&f["content_type"]),
                output::cell(&f["download_url"]),
            ]);
        }
        table.print("no outputs");
    }
    if let Some(dir) = dir {
        tokio::fs::create_dir_all(&dir)
            .await
            .with_context(|| format!("cannot create {}", dir.display()))?;
        for file in &files {
            let saved = download(ctx, file, &dir).await?;
            if !ctx.json {
                println!("saved {}", saved.display());
            }
        }
    }
    Ok(Exit::Ok)
}

/// Downloads one listed output into `dir` (written aside, then renamed).
async fn download(ctx: &Ctx, file: &Value, dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let name = file["name"].as_str().context("an output without a name")?;
    anyhow::ensure!(
        is_plain_file_name(name),
        "refusing to save the output {name:?}: not a plain file name"
    );
    let url = file["download_url"]
        .as_str()
        .context("an output without a download_url")?;
    let target = dir.join(name);
    let partial = dir.join(format!(".{name}.partial"));
    save(ctx, url, &partial)
        .await
        .with_context(|| format!("downloading {name}"))?;
    tokio::fs::rename(&partial, &target).await?;
    Ok(target)
}

/// Streams `GET path` into the file `to`.
pub async fn save(ctx: &Ctx, path: &str, to: &Path) -> anyhow::Result<u64> {
    let response = ctx
        .client
        .send(ctx.client.request(Method::GET, path))
        .await?;
    let mut out = tokio::fs::File::create(to)
        .await
        .with_context(|| format!("cannot write {}", to.display()))?;
    let mut body = response.bytes_stream();
    let mut written = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ctx.client.unreachable(&e))?;
        out.write_all(&chunk).await?;
        written += chunk.len() as u64;
    }
    out.flush().await?;
    Ok(written)
}

/// A name that stays inside the folder it is saved in.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !name.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_output_names_are_saved() {
        assert!(is_plain_file_name("members.normalized.csv"));
        for bad in ["", ".", "..", "../x", "a/b", "a\\b", ".hidden", "a\0b"] {
            assert!(!is_plain_file_name(bad), "{bad:?}");
        }
    }
}
