//! Test infrastructure: the migrated template database, per-test databases,
//! broker clean-up, and process checks.

use crate::helpers::{admin_url, repo_root};
use std::time::Duration;

/// Processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(cmdline);
            }
        }
    }
    found
}

/// Name of the template database for the current migrations.
fn template_name() -> String {
    let dir = repo_root().join("migrations");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut all = Vec::new();
    for f in files {
        all.extend(f.file_name().unwrap().as_encoded_bytes());
        all.extend(std::fs::read(f).unwrap());
    }
    format!(
        "ade_test_template_{}",
        &ade_common::ids::Digest::sha256(&all).hex()[..16]
    )
}

/// Creates `name` from the migrated template, creating the template first if needed.
/// Both happen under an advisory lock shared by every test process.
pub async fn create_from_template(name: &str) {
    let admin = ade_common::db::connect(&admin_url("postgres"))
        .await
        .unwrap();
    admin
        .execute("SELECT pg_advisory_lock(4242)", &[])
        .await
        .unwrap();
    let template = template_name();
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
        .await
        .unwrap()
        .is_some();
    if !exists {
        let building = format!("{template}_tmp");
        admin
            .execute(
                &format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"),
                &[],
            )
            .await
            .unwrap();
        admin
            .execute(&format!("CREATE DATABASE {building}"), &[])
            .await
            .unwrap();
        ade_common::db::migrate(&admin_url(&building))
            .await
            .unwrap();
        // Renaming last means a half-migrated template is never used.
        let rename = format!("ALTER DATABASE {building} RENAME TO {template}");
        retry_in_use(|| admin.execute(rename.as_str(), &[])).await;
    }
    let create = format!("CREATE DATABASE {name} TEMPLATE {template}");
    retry_in_use(|| admin.execute(create.as_str(), &[])).await;
    admin
        .execute("SELECT pg_advisory_unlock(4242)", &[])
        .await
        .unwrap();
}

/// Retries while PostgreSQL reports the source database still in use (a
/// just-closed session can linger for a moment).
async fn retry_in_use<F, Fut>(mut op: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, tokio_postgres::Error>>,
{
    for _ in 0..100 {
        match op().await {
            Ok(_) => return,
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the template database stayed in use");
}

pub async fn drop_database(name: &str) {
    let admin = ade_common::db::connect(&admin_url("postgres"))
        .await
        .unwrap();
    admin
        .execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), &[])
        .await
        .unwrap();
}

/// Messages ready in `<prefix>.runs` (a settled job leaves none).
pub async fn ready_messages(prefix: &str) -> u32 {
    let url = ade_common::settings::amqp_url_from_env();
    let conn = ade_common::amqp::connect(&url, "test-check").await.unwrap();
    let channel = conn.create_channel().await.unwrap();
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let count = match channel
        .queue_declare(
            format!("{prefix}.runs").as_str().into(),
            passive,
            Default::default(),
        )
        .await
    {
        Ok(queue) => queue.message_count(),
        Err(_) => 0,
    };
    let _ = conn.close(200, "done".into()).await;
    count
}

pub async fn delete_broker_objects(prefix: &str) {
    let url = ade_common::settings::amqp_url_from_env();
    let conn = ade_common::amqp::connect(&url, "test-cleanup")
        .await
        .unwrap();
    let topology = ade_common::amqp::Topology::new(prefix);
    ade_common::amqp::delete(&conn, &topology).await.unwrap();
    let _ = conn.close(200, "done".into()).await;
}
