//! `ade docs upload`: one multipart request per file, streamed from disk.

use crate::args::DocsCommand;
use crate::client::{Client, Reply};
use crate::output;
use crate::{Ctx, Exit};
use anyhow::Context as _;
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use std::path::Path;
use uuid::Uuid;

/// Runs a `docs` subcommand.
pub async fn run(ctx: &Ctx, command: DocsCommand) -> anyhow::Result<Exit> {
    let DocsCommand::Upload { workspace, files } = command;
    for file in &files {
        check_file(file)?;
    }
    for file in &files {
        let reply = upload(&ctx.client, workspace, file)
            .await
            .with_context(|| format!("uploading {}", file.display()))?;
        if ctx.json {
            output::raw(&reply);
        } else {
            let d = &reply.value;
            println!(
                "{}  {}  {}  {}",
                output::cell(&d["id"]),
                output::cell(&d["name"]),
                output::bytes(d["byte_size"].as_u64().unwrap_or(0)),
                output::cell(&d["content_type"]),
            );
        }
    }
    Ok(Exit::Ok)
}

/// Refuses what is not a readable regular file before anything is sent.
fn check_file(file: &Path) -> anyhow::Result<()> {
    let meta =
        std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    anyhow::ensure!(meta.is_file(), "{} is not a regular file", file.display());
    Ok(())
}

/// Uploads one file as the `file` part; the API guesses its type from the name.
pub async fn upload(client: &Client, workspace: Uuid, file: &Path) -> anyhow::Result<Reply> {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{}: the file name must be UTF-8", file.display()))?
        .to_owned();
    let handle = tokio::fs::File::open(file).await?;
    let size = handle.metadata().await?.len();
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(handle));
    let part = Part::stream_with_length(body, size).file_name(name);
    let form = Form::new().part("file", part);
    let path = format!("/api/v1/workspaces/{workspace}/documents");
    let request = client.request(Method::POST, &path).multipart(form);
    Ok(client.json(request).await?)
}

/// Uploads bytes held in memory as a document named `name`.
pub async fn upload_bytes(
    client: &Client,
    workspace: &str,
    name: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<Reply> {
    let part = Part::bytes(bytes).file_name(name.to_owned());
    let form = Form::new().part("file", part);
    let path = format!("/api/v1/workspaces/{workspace}/documents");
    let request = client.request(Method::POST, &path).multipart(form);
    Ok(client.json(request).await?)
}
