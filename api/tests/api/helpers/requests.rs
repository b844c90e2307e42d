//! `TestApp` as an API client: requests, the resources most tests make,
//! and waiting for runs.

use super::*;

impl TestApp {
    /// The URL of an API path (`/api/v1/...` or `/health/...`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET a path.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// POST JSON to a path.
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// POST raw bytes with a content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: &'static [u8],
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// A workspace named "test".
    pub async fn create_workspace(&self) -> Value {
        ok_json(
            self.post_json("/api/v1/workspaces", &json!({"name": "test"}))
                .await,
            StatusCode::CREATED,
        )
        .await
    }

    /// A configuration from the starter template.
    pub async fn create_template_configuration(&self, ws: &str) -> Value {
        let body = json!({"name": "roster", "source": {"type": "template"}});
        ok_json(
            self.post_json(&format!("/api/v1/workspaces/{ws}/configurations"), &body)
                .await,
            StatusCode::CREATED,
        )
        .await
    }

    /// Uploads a configuration package (multipart `name` + `package`).
    pub async fn upload_configuration(&self, ws: &str, archive: Vec<u8>) -> reqwest::Response {
        let form = reqwest::multipart::Form::new()
            .text("name", "uploaded")
            .part(
                "package",
                reqwest::multipart::Part::bytes(archive).file_name("config.zip"),
            );
        self.client
            .post(self.url(&format!("/api/v1/workspaces/{ws}/configurations")))
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// Uploads a document.
    pub async fn upload_document_raw(
        &self,
        ws: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> reqwest::Response {
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(name.to_owned())
            .mime_str("text/csv")
            .unwrap();
        let form = reqwest::multipart::Form::new().part("file", part);
        self.client
            .post(self.url(&format!("/api/v1/workspaces/{ws}/documents")))
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// Uploads a document and returns it.
    pub async fn upload_document(&self, ws: &str, name: &str, bytes: Vec<u8>) -> Value {
        ok_json(
            self.upload_document_raw(ws, name, bytes).await,
            StatusCode::CREATED,
        )
        .await
    }

    /// Uploads the sample members CSV.
    pub async fn upload_sample(&self, ws: &str) -> Value {
        let bytes = std::fs::read(repo_root().join("engine/samples/members.csv")).unwrap();
        self.upload_document(ws, "members.csv", bytes).await
    }

    /// `POST /configs/{id}/runs`.
    pub async fn create_run(&self, config: &str, body: &Value) -> reqwest::Response {
        self.post_json(&format!("/api/v1/configs/{config}/runs"), body)
            .await
    }

    /// A workspace, template configuration and sample document: `(config_id, document_id)`.
    pub async fn sample_setup(&self) -> (String, String) {
        let ws = self.create_workspace().await;
        let ws = ws["id"].as_str().unwrap();
        let config = self.create_template_configuration(ws).await;
        let doc = self.upload_sample(ws).await;
        (
            config["id"].as_str().unwrap().to_owned(),
            doc["id"].as_str().unwrap().to_owned(),
        )
    }

    /// A workspace with this configuration package and the sample document: `(config_id, document_id)`.
    pub async fn package_setup(&self, package: Vec<u8>) -> (String, String) {
        let ws = self.create_workspace().await;
        let ws = ws["id"].as_str().unwrap();
        let config = ok_json(
            self.upload_configuration(ws, package).await,
            StatusCode::CREATED,
        )
        .await;
        let doc = self.upload_sample(ws).await;
        (
            config["id"].as_str().unwrap().to_owned(),
            doc["id"].as_str().unwrap().to_owned(),
        )
    }

    /// Submits a run with these options and returns it (201).
    pub async fn submit(&self, config: &str, options: Value) -> Value {
        ok_json(
            self.create_run(config, &json!({"options": options})).await,
            StatusCode::CREATED,
        )
        .await
    }

    /// Submits a run and waits until it is terminal; returns the finished run.
    pub async fn run_to_end(&self, config: &str, options: Value) -> Value {
        let run = self.submit(config, options).await;
        self.wait_for_run(run["id"].as_str().unwrap()).await
    }

    /// `GET /runs/{id}`.
    pub async fn run(&self, id: &str) -> Value {
        ok_json(
            self.get(&format!("/api/v1/runs/{id}")).await,
            StatusCode::OK,
        )
        .await
    }

    /// Polls the run until it is terminal.
    pub async fn wait_for_run(&self, id: &str) -> Value {
        let start = Instant::now();
        loop {
            let run = self.run(id).await;
            if matches!(
                run["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            ) {
                return run;
            }
            assert!(start.elapsed() < DEADLINE, "run {id} did not finish: {run}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every event of a run, paging through `/events`.
    pub async fn all_events(&self, id: &str) -> Vec<Value> {
        let mut events = Vec::new();
        let mut after = 0;
        loop {
            let page = ok_json(
                self.get(&format!(
                    "/api/v1/runs/{id}/events?after_sequence={after}&limit=7"
                ))
                .await,
                StatusCode::OK,
            )
            .await;
            let items = page["items"].as_array().unwrap().clone();
            if items.is_empty() {
                return events;
            }
            after = page["next_after_sequence"].as_i64().unwrap();
            events.extend(items);
        }
    }
}
