//! Each transition of `ade_common::lifecycle`, against a real database:
//! what it does, and what its guard refuses.

use crate::helpers::{Options, TestApp};
use ade_common::events::{Appended, EventKind, NewEvent, Source, StreamRef, append};
use ade_common::lifecycle::builds::{self, Verdict};
use ade_common::lifecycle::runs::{self, Cancel, HandBack};
use ade_common::lifecycle::{Claim, Claimant, Claimed, Completion, Fence, claim, lease, reaper};
use ade_common::runs::OutputFile;
use ade_common::status::{BuildStatus, RunStatus};
use deadpool_postgres::Pool;
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(30);

/// An app without workers, a pool on its database, and one queued run.
async fn setup() -> (TestApp, Pool, Uuid) {
    let app = TestApp::with(Options::default()).await;
    let pool = ade_common::db::pool(&app.db_url, 4).unwrap();
    let id = queued_run(&app).await;
    (app, pool, id)
}

async fn queued_run(app: &TestApp) -> Uuid {
    let (config, doc) = app.sample_setup().await;
    let run = app.submit(&config, json!({"document_ids": [doc]})).await;
    run["id"].as_str().unwrap().parse().unwrap()
}

async fn status(pool: &Pool, id: Uuid) -> RunStatus {
    let db = pool.get().await.unwrap();
    db.query_one("SELECT status FROM runs WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0)
}

async fn take(pool: &Pool, id: Uuid, claimant: &Claimant) -> Claim {
    match claim::claim(&mut pool.get().await.unwrap(), id, claimant, LEASE)
        .await
        .unwrap()
    {
        Claimed::Run(claim) => claim,
        other => panic!("not claimed: {other:?}"),
    }
}

fn succeeded() -> Completion {
    Completion {
        status: RunStatus::Succeeded,
        exit_code: Some(0),
        failure: None,
        outputs: vec![OutputFile {
            name: "out.csv".into(),
            content_type: "text/csv".into(),
            byte_size: 3,
        }],
        summary: json!({"rows": 1}),
    }
}

/// Ends the test: nothing may be left open, so cancel what is.
async fn close(app: TestApp, pool: &Pool, ids: &[Uuid]) {
    for id in ids {
        let db = pool.get().await.unwrap();
        db.execute(
            "UPDATE runs SET status = 'cancelled', completed_at = now() WHERE id = $1
               AND status IN ('queued', 'waiting_for_build', 'running')",
            &[id],
        )
        .await
        .unwrap();
    }
    app.finish().await;
}

#[tokio::test]
async fn a_claim_takes_a_queued_run_once() {
    let (app, pool, id) = setup().await;
    let first = Claimant::new("w1");
    let claim = take(&pool, id, &first).await;
    assert_eq!(claim.attempt, 1);
    assert_eq!(claim.incarnation, first.incarnation);
    // The build is not ready yet: the run waits for it.
    assert_eq!(status(&pool, id).await, RunStatus::WaitingForBuild);
    let again = claim::claim(
        &mut pool.get().await.unwrap(),
        id,
        &Claimant::new("w2"),
        LEASE,
    )
    .await
    .unwrap();
    assert!(matches!(again, Claimed::Nothing), "{again:?}");
    assert!(
        claim::start(&pool.get().await.unwrap(), &claim)
            .await
            .unwrap()
    );
    assert_eq!(status(&pool, id).await, RunStatus::Running);
    close(app, &pool, &[id]).await;
}

#[tokio::test]
async fn a_claim_ends_a_queued_run_whose_cancel_is_pending() {
    let (app, pool, id) = setup().await;
    let db = pool.get().await.unwrap();
    // What a hand-back racing a cancel used to leave behind.
    db.execute(
        "UPDATE runs SET cancel_requested_at = now() WHERE id = $1",
        &[&id],
    )
    .await
    .unwrap();
    let claimed = claim::claim(
        &mut pool.get().await.unwrap(),
        id,
        &Claimant::new("w"),
        LEASE,
    )
    .await
    .unwrap();
    let Claimed::Cancelled(events) = claimed else {
        panic!("{claimed:?}")
    };
    assert_eq!(events[0].kind, EventKind::RunCompleted);
    assert_eq!(status(&pool, id).await, RunStatus::Cancelled);
    app.finish().await;
}

#[tokio::test]
async fn renewal_keeps_only_what_the_incarnation_holds_and_reports_cancels() {
    let (app, pool, id) = setup().await;
    let claimant = Claimant::new("w");
    let claim = take(&pool, id, &claimant).await;
    let db = pool.get().await.unwrap();
    let held = lease::renew(&db, claimant.incarnation, &[(id, 1)], LEASE)
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    assert!(!held[0].cancel_requested);
    // Another incarnation (the same worker id restarted) holds nothing.
    let other = Claimant::new("w");
    assert!(
        lease::renew(&db, other.incarnation, &[(id, 1)], LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    // Another attempt is not this claim.
    assert!(
        lease::renew(&db, claimant.incarnation, &[(id, 2)], LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    let mut conn = pool.get().await.unwrap();
    assert!(matches!(
        runs::cancel(&mut conn, id).await.unwrap(),
        Cancel::Requested
    ));
    let polled = lease::poll(&db, claimant.incarnation).await.unwrap();
    assert_eq!(polled.len(), 1);
    assert!(polled[0].cancel_requested, "the poll sees the cancel");
    drop(claim);
    close(app, &pool, &[id]).await;
}

#[tokio::test]
async fn completion_is_written_once_and_only_under_the_claim() {
    let (app, pool, id) = setup().await;
    let claim = take(&pool, id, &Claimant::new("w")).await;
    let mut db = pool.get().await.unwrap();
    let stale = Claim {
        incarnation: Uuid::now_v7(),
        ..claim.clone()
    };
    assert!(
        runs::complete(&mut db, &stale, &[], &succeeded())
            .await
            .unwrap()
            .is_none()
    );
    let written = runs::complete(&mut db, &claim, &[], &succeeded())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(written.last().unwrap().kind, EventKind::RunCompleted);
    assert_eq!(written.last().unwrap().attempt, Some(1));
    let cancelled = runs::complete(&mut db, &claim, &[], &Completion::cancelled())
        .await
        .unwrap();
    assert!(cancelled.is_none(), "a terminal state never changes");
    let row = db
        .query_one(
            "SELECT status, output_attempt, outputs FROM runs WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, RunStatus>(0), RunStatus::Succeeded);
    assert_eq!(row.get::<_, Option<i32>>(1), Some(1));
    assert_eq!(row.get::<_, serde_json::Value>(2)[0]["name"], "out.csv");
    app.finish().await;
}

#[tokio::test]
async fn a_hand_back_requeues_undispatched_unless_a_cancel_is_pending() {
    let (app, pool, id) = setup().await;
    let claim = take(&pool, id, &Claimant::new("w")).await;
    let mut db = pool.get().await.unwrap();
    db.execute(
        "UPDATE runs SET dispatched_at = now() WHERE id = $1",
        &[&id],
    )
    .await
    .unwrap();
    let HandBack::Queued(events, job) = runs::hand_back(&mut db, &claim, "test").await.unwrap()
    else {
        panic!("not requeued")
    };
    assert_eq!(job.epoch, 1, "a new dispatch episode");
    assert_eq!(events[0].kind, EventKind::RunRetry);
    assert_eq!(events[0].payload["next_attempt"], 1);
    let row = db
        .query_one("SELECT status, attempt, dispatched_at IS NULL, worker_incarnation IS NULL FROM runs WHERE id = $1", &[&id])
        .await
        .unwrap();
    assert_eq!(row.get::<_, RunStatus>(0), RunStatus::Queued);
    assert_eq!(row.get::<_, i32>(1), 1, "no attempt spent");
    assert!(
        row.get::<_, bool>(2),
        "offered again by whoever publishes it"
    );
    // A late confirm of the first episode does not mark the new one.
    let first = ade_common::lifecycle::queue::Job::created(StreamRef::Run(id));
    ade_common::lifecycle::queue::mark_dispatched(&db, &[first])
        .await
        .unwrap();
    let undispatched: bool = db
        .query_one(
            "SELECT dispatched_at IS NULL FROM runs WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(undispatched, "the stale mark is ignored");
    assert!(row.get::<_, bool>(3));
    assert!(matches!(
        runs::hand_back(&mut db, &claim, "again").await.unwrap(),
        HandBack::Lost
    ));

    let claim = take(&pool, id, &Claimant::new("w2")).await;
    assert!(matches!(
        runs::cancel(&mut db, id).await.unwrap(),
        Cancel::Requested
    ));
    let handed = runs::hand_back(&mut db, &claim, "test").await.unwrap();
    assert!(matches!(handed, HandBack::Cancelled(_)), "{handed:?}");
    assert_eq!(status(&pool, id).await, RunStatus::Cancelled);
    app.finish().await;
}

#[tokio::test]
async fn cancel_ends_a_queued_run_flags_a_claimed_one_and_refuses_a_finished_one() {
    let (app, pool, queued) = setup().await;
    let mut db = pool.get().await.unwrap();
    assert!(matches!(
        runs::cancel(&mut db, queued).await.unwrap(),
        Cancel::Cancelled(_)
    ));
    assert!(matches!(
        runs::cancel(&mut db, queued).await.unwrap(),
        Cancel::AlreadyTerminal(RunStatus::Cancelled)
    ));
    assert!(matches!(
        runs::cancel(&mut db, Uuid::now_v7()).await.unwrap(),
        Cancel::NotFound
    ));
    let claimed = queued_run(&app).await;
    take(&pool, claimed, &Claimant::new("w")).await;
    assert!(matches!(
        runs::cancel(&mut db, claimed).await.unwrap(),
        Cancel::Requested
    ));
    assert_eq!(status(&pool, claimed).await, RunStatus::WaitingForBuild);
    close(app, &pool, &[claimed]).await;
}

#[tokio::test]
async fn the_reaper_requeues_fails_or_ends_runs_whose_lease_expired() {
    let (app, pool, retried) = setup().await;
    let (exhausted, cancelled) = (queued_run(&app).await, queued_run(&app).await);
    let dead = Claimant::new("dead");
    for id in [retried, exhausted, cancelled] {
        take(&pool, id, &dead).await;
    }
    let db = pool.get().await.unwrap();
    db.execute("UPDATE runs SET attempt = 3 WHERE id = $1", &[&exhausted])
        .await
        .unwrap();
    db.execute(
        "UPDATE runs SET cancel_requested_at = now() WHERE id = $1",
        &[&cancelled],
    )
    .await
    .unwrap();
    db.execute(
        "UPDATE runs SET lease_expires_at = now() - interval '1 second'",
        &[],
    )
    .await
    .unwrap();
    let reaped = reaper::reap(&pool, 3).await.unwrap();
    assert_eq!(reaped.requeued.len(), 1);
    assert_eq!(reaped.requeued[0].stream, StreamRef::Run(retried));
    assert_eq!(reaped.failed, 1);
    assert_eq!(status(&pool, retried).await, RunStatus::Queued);
    assert_eq!(status(&pool, exhausted).await, RunStatus::Failed);
    assert_eq!(status(&pool, cancelled).await, RunStatus::Cancelled);
    let retry = reaped
        .events
        .iter()
        .find(|e| e.kind == EventKind::RunRetry)
        .unwrap();
    assert_eq!(retry.payload["next_attempt"], 2);
    assert_eq!(
        retry.attempt,
        Some(1),
        "written for the attempt that was lost"
    );
    // The lost incarnation's writes are refused from now on.
    let stale = Claim {
        run_id: retried,
        workspace_id: retry.workspace_id,
        configuration_id: retry.configuration_id,
        build_id: retry.build_id,
        attempt: 1,
        incarnation: dead.incarnation,
        options: Default::default(),
        queue_wait: Default::default(),
    };
    let mut conn = pool.get().await.unwrap();
    assert!(
        runs::complete(&mut conn, &stale, &[], &succeeded())
            .await
            .unwrap()
            .is_none()
    );
    close(app, &pool, &[retried]).await;
}

#[tokio::test]
async fn builds_are_claimed_released_and_finished_only_by_their_builder() {
    let (app, pool, id) = setup().await;
    let db = pool.get().await.unwrap();
    let build: Uuid = db
        .query_one("SELECT build_id FROM runs WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    let builder = Claimant::new("b");
    assert!(builds::claim(&db, build, &builder).await.unwrap());
    assert!(
        !builds::claim(&db, build, &Claimant::new("other"))
            .await
            .unwrap()
    );
    assert!(
        !builds::release(&db, build, Uuid::now_v7()).await.unwrap(),
        "only the builder releases"
    );
    assert!(
        builds::release(&db, build, builder.incarnation)
            .await
            .unwrap()
    );
    assert_eq!(
        builds::status(&db, build).await.unwrap().unwrap().0,
        BuildStatus::Queued
    );
    assert!(builds::claim(&db, build, &builder).await.unwrap());
    let row = db
        .query_one(
            "SELECT workspace_id, configuration_id FROM builds WHERE id = $1",
            &[&build],
        )
        .await
        .unwrap();
    let origin = ade_common::events::Origin {
        stream: StreamRef::Build(build),
        workspace_id: row.get(0),
        configuration_id: row.get(1),
        build_id: Some(build),
        attempt: None,
    };
    let failed = Verdict::Failed { error: "x".into() };
    let mut conn = pool.get().await.unwrap();
    let stranger = builds::finish(&mut conn, &origin, Uuid::now_v7(), &failed, 1)
        .await
        .unwrap();
    assert!(stranger.is_none(), "only the builder gives the verdict");
    let ready = Verdict::Ready {
        packages: vec!["ade-engine==0.1.0".into()],
    };
    let written = builds::finish(&mut conn, &origin, builder.incarnation, &ready, 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(written[0].kind, EventKind::BuildCompleted);
    assert_eq!(
        builds::status(&db, build).await.unwrap().unwrap().0,
        BuildStatus::Ready
    );
    close(app, &pool, &[id]).await;
}

#[tokio::test]
async fn a_dead_builders_build_is_requeued_even_if_its_worker_id_lives_on() {
    let (app, pool, id) = setup().await;
    let db = pool.get().await.unwrap();
    let build: Uuid = db
        .query_one("SELECT build_id FROM runs WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    let before = Claimant::new("w-1");
    assert!(builds::claim(&db, build, &before).await.unwrap());
    // The container restarted: same worker id, new incarnation, fresh heartbeat.
    let after = Claimant::new("w-1");
    db.execute(
        "INSERT INTO workers (id, incarnation, host, concurrency) VALUES ($1, $2, 'h', 1)",
        &[&after.worker_id, &after.incarnation],
    )
    .await
    .unwrap();
    db.execute(
        "UPDATE builds SET started_at = now() - interval '1 minute' WHERE id = $1",
        &[&build],
    )
    .await
    .unwrap();
    let reaped = reaper::reap(&pool, 3).await.unwrap();
    assert_eq!(reaped.builds_requeued, 1);
    assert_eq!(
        builds::status(&db, build).await.unwrap().unwrap().0,
        BuildStatus::Queued
    );
    close(app, &pool, &[id]).await;
}

#[tokio::test]
async fn event_batches_are_fenced_and_never_stored_twice() {
    let (app, pool, id) = setup().await;
    let claimant = Claimant::new("w");
    let claim = take(&pool, id, &claimant).await;
    let db = pool.get().await.unwrap();
    let line = |n: usize| {
        NewEvent::new(
            EventKind::ConsoleLine,
            Source::Worker,
            json!({"message": format!("line {n}\u{0}")}),
        )
    };
    let batch: Vec<NewEvent> = (0..3).map(line).collect();
    let Appended::Written(first) = append(&db, &claim.origin(), &claim.fence(), &batch)
        .await
        .unwrap()
    else {
        panic!("not written")
    };
    assert_eq!(
        first.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert_eq!(
        first[0].payload["message"], "line 0\u{FFFD}",
        "NUL is replaced"
    );
    // The same batch again, as after an ambiguous COMMIT: skipped.
    let again = append(&db, &claim.origin(), &claim.fence(), &batch)
        .await
        .unwrap();
    assert!(matches!(again, Appended::AlreadyStored), "{again:?}");
    let stale = Fence::Run {
        incarnation: Uuid::now_v7(),
        attempt: 1,
    };
    let refused = append(&db, &claim.origin(), &stale, &[line(9)])
        .await
        .unwrap();
    assert!(matches!(refused, Appended::Fenced), "{refused:?}");
    let stored = ade_common::events::page(&db, StreamRef::Run(id), 0, 100)
        .await
        .unwrap();
    assert_eq!(
        stored.len(),
        5,
        "run.queued, build.created and three lines, once each"
    );
    close(app, &pool, &[id]).await;
}
