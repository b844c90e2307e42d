-- Workspaces, configurations, documents, builds, runs and their event logs.
-- Ids are UUIDv7 (time-ordered), so ordering by id is ordering by creation.

CREATE TABLE workspaces (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The package archive itself is kept here (it is small and bounded), so any
-- host can rebuild a venv from the database alone.
CREATE TABLE configurations (
    id               uuid PRIMARY KEY,
    workspace_id     uuid NOT NULL REFERENCES workspaces (id),
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    content_digest   text NOT NULL,
    package          bytea NOT NULL,
    active_build_id  uuid,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX configurations_by_workspace ON configurations (workspace_id, id);

CREATE TABLE documents (
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces (id),
    name          text NOT NULL,
    content_type  text NOT NULL,
    byte_size     bigint NOT NULL,
    sha256        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX documents_by_workspace ON documents (workspace_id, id);

CREATE TABLE builds (
    id                uuid PRIMARY KEY,
    workspace_id      uuid NOT NULL REFERENCES workspaces (id),
    configuration_id  uuid NOT NULL REFERENCES configurations (id),
    status            text NOT NULL CHECK (status IN ('queued', 'building', 'ready', 'failed', 'cancelled')),
    reason            text NOT NULL,
    fingerprint       text NOT NULL,
    config_digest     text NOT NULL,
    engine_version    text NOT NULL,
    python_version    text NOT NULL,
    packages          jsonb,
    builder_id        text,
    dispatched_at     timestamptz,
    exit_code         integer,
    error_message     text,
    next_event_seq    bigint NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    completed_at      timestamptz
);
-- At most one build in progress per configuration and fingerprint. Builds are
-- not shared across configurations, even with equal content: a build belongs
-- to one workspace.
CREATE UNIQUE INDEX builds_one_in_progress ON builds (configuration_id, fingerprint)
    WHERE status IN ('queued', 'building');
CREATE INDEX builds_by_fingerprint ON builds (configuration_id, fingerprint, created_at DESC);

CREATE TABLE runs (
    id                   uuid PRIMARY KEY,
    workspace_id         uuid NOT NULL REFERENCES workspaces (id),
    configuration_id     uuid NOT NULL REFERENCES configurations (id),
    build_id             uuid REFERENCES builds (id),
    status               text NOT NULL CHECK (status IN
                           ('queued', 'waiting_for_build', 'running', 'succeeded', 'failed', 'cancelled')),
    attempt              integer NOT NULL DEFAULT 1,
    options              jsonb NOT NULL,
    idempotency_key      text,
    request_digest       text,
    worker_id            text,
    lease_expires_at     timestamptz,
    dispatched_at        timestamptz,
    cancel_requested_at  timestamptz,
    next_event_seq       bigint NOT NULL DEFAULT 0,
    exit_code            integer,
    failure              jsonb,
    created_at           timestamptz NOT NULL DEFAULT now(),
    started_at           timestamptz,
    completed_at         timestamptz
);
CREATE UNIQUE INDEX runs_idempotency ON runs (configuration_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_by_workspace ON runs (workspace_id, id DESC);
CREATE INDEX runs_expired_leases ON runs (lease_expires_at) WHERE status IN ('running', 'waiting_for_build');
CREATE INDEX runs_undispatched ON runs (created_at)
    WHERE status = 'queued' AND dispatched_at IS NULL;

CREATE TABLE run_events (
    run_id    uuid NOT NULL REFERENCES runs (id),
    sequence  bigint NOT NULL,
    event     jsonb NOT NULL,
    PRIMARY KEY (run_id, sequence)
);

CREATE TABLE build_events (
    build_id  uuid NOT NULL REFERENCES builds (id),
    sequence  bigint NOT NULL,
    event     jsonb NOT NULL,
    PRIMARY KEY (build_id, sequence)
);

CREATE TABLE workers (
    id                text PRIMARY KEY,
    host              text NOT NULL,
    concurrency       integer NOT NULL,
    in_flight         integer NOT NULL DEFAULT 0,
    venv_cache_bytes  bigint NOT NULL DEFAULT 0,
    started_at        timestamptz NOT NULL DEFAULT now(),
    heartbeat_at      timestamptz NOT NULL DEFAULT now()
);
