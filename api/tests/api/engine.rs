//! The engine end to end through the fleet: a real workbook, the starter
//! configuration, and what comes back (mapping, issues, outputs).

use crate::helpers::{TestApp, assert_gapless, ok_json, repo_root};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::io::Read as _;

fn payloads<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["type"] == kind)
        .map(|e| &e["payload"])
        .collect()
}

/// `engine/samples/members-with-notes.xlsx` (see `make_workbook.py` beside it):
/// a notes sheet in front of the data sheet, a title, merged group headings,
/// typed cells, an invalid email, an impossible date and a totals row.
#[tokio::test]
async fn an_xlsx_with_a_notes_sheet_is_found_mapped_validated_and_normalized() {
    let app = TestApp::spawn().await;
    let ws = app.create_workspace().await;
    let ws = ws["id"].as_str().unwrap();
    let config = app.create_template_configuration(ws).await;
    let bytes = std::fs::read(repo_root().join("engine/samples/members-with-notes.xlsx")).unwrap();
    let doc = app.upload_document(ws, "members.xlsx", bytes).await;
    let doc = doc["id"].as_str().unwrap();
    let run = app
        .run_to_end(
            config["id"].as_str().unwrap(),
            json!({"document_ids": [doc]}),
        )
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["exit_code"], 0);
    let id = run["id"].as_str().unwrap();
    let events = app.all_events(id).await;
    assert_gapless(&events);

    let tables = payloads(&events, "run.table.summary");
    assert_eq!(tables.len(), 1, "the notes sheet holds no table");
    let table = tables[0];
    assert_eq!(table["sheet"], "Members");
    assert_eq!(table["header_row"], 4);
    assert_eq!(table["rows"], 4);
    assert_eq!(table["skipped_rows"]["totals"], 1);
    let expected = [
        ("member_id", "Member No."),
        ("first_name", "Given name"),
        ("last_name", "Family Name"),
        ("email", "E-mail"),
        ("phone", "Mobile"),
        ("joined_on", "Member Since"),
    ];
    for (field, header) in expected {
        let mapped = &table["mapped"][field];
        assert_eq!(mapped["column"], header, "{field}: {table}");
        assert!(
            mapped["score"].as_f64().unwrap() >= 0.6,
            "{field}: {mapped}"
        );
    }
    assert_eq!(table["missing_fields"], json!([]));

    let issues: Vec<(&str, &str)> = payloads(&events, "run.validation.issue")
        .iter()
        .map(|i| (i["code"].as_str().unwrap(), i["cell"].as_str().unwrap()))
        .collect();
    assert_eq!(issues, [("invalid_email", "D6"), ("invalid_date", "F8")]);
    let summary = payloads(&events, "run.validation.summary");
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0]["errors"], 2);
    assert_eq!(summary[0]["summary"]["rows"], 4);
    assert_eq!(
        summary[0]["summary"]["outputs"],
        json!([
            format!("{doc}.normalized.xlsx"),
            format!("{doc}.table-1.csv")
        ])
    );
    let completed = events.last().unwrap();
    assert_eq!(completed["type"], "run.completed");
    // run.completed.summary holds the engine's own run summary under
    // `engine`, beside the worker's counts.
    assert_eq!(
        completed["payload"]["summary"]["engine"],
        summary[0]["summary"]
    );
    assert_eq!(completed["payload"]["summary"]["engine"]["rows"], 4);
    assert!(
        completed["payload"]["summary"]["console_lines"]
            .as_u64()
            .unwrap()
            > 0
    );

    check_outputs(&app, id, doc).await;
    app.finish().await;
}

async fn check_outputs(app: &TestApp, id: &str, doc: &str) {
    let outputs = ok_json(
        app.get(&format!("/api/v1/runs/{id}/outputs")).await,
        StatusCode::OK,
    )
    .await;
    let files = outputs["files"].as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            format!("{doc}.normalized.xlsx"),
            format!("{doc}.table-1.csv")
        ]
    );
    let csv = app
        .get(files[1]["download_url"].as_str().unwrap())
        .await
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines,
        [
            "member_id,first_name,last_name,email,phone,joined_on",
            "1001,Ada,Lovelace,ada@example.org,555-0101,2019-04-02",
            "1002,Grace,Hopper,grace-at-example.org,5550102,2019-05-15",
            "1003,Alan,Turing,alan@example.org,555-010-3333,2023-02-30",
            "1004,Katherine,Johnson,kj@example.org,,2020-12-31",
        ]
    );
    let xlsx = app
        .get(files[0]["download_url"].as_str().unwrap())
        .await
        .bytes()
        .await
        .unwrap();
    let mut book = zip::ZipArchive::new(std::io::Cursor::new(xlsx.to_vec())).unwrap();
    let mut workbook = String::new();
    book.by_name("xl/workbook.xml")
        .unwrap()
        .read_to_string(&mut workbook)
        .unwrap();
    assert!(
        workbook.contains(r#"name="Table 1""#) && workbook.contains(r#"name="Issues""#),
        "{workbook}"
    );
    let mut issues = String::new();
    book.by_name("xl/worksheets/sheet2.xml")
        .unwrap()
        .read_to_string(&mut issues)
        .unwrap();
    assert!(
        issues.contains("invalid_email") && issues.contains("impossible date"),
        "{issues}"
    );
}
