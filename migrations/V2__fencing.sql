-- Fencing: every write a worker makes for a run or a build is guarded by its
-- claim, a (worker incarnation, attempt) token. A worker id can repeat across
-- restarts (a container's pid 1); the incarnation is new for every process.

ALTER TABLE runs ADD COLUMN worker_incarnation uuid;
ALTER TABLE builds ADD COLUMN builder_incarnation uuid;
ALTER TABLE workers ADD COLUMN incarnation uuid;

-- Outputs are written per attempt and become the run's only in the
-- completing transaction: which attempt's folder, and which files in it.
ALTER TABLE runs ADD COLUMN output_attempt integer;
ALTER TABLE runs ADD COLUMN outputs jsonb NOT NULL DEFAULT '[]';

-- Each event gets its id when it is emitted; a batch retried after an
-- ambiguous COMMIT finds its first id already stored and is skipped.
ALTER TABLE run_events ADD COLUMN event_uuid uuid;
ALTER TABLE build_events ADD COLUMN event_uuid uuid;
CREATE UNIQUE INDEX run_events_by_uuid ON run_events (event_uuid);
CREATE UNIQUE INDEX build_events_by_uuid ON build_events (event_uuid);

-- Each time a run or build enters `queued` it starts a new dispatch epoch;
-- a broker confirm marks `dispatched_at` only for the epoch it was offered
-- in, so a late mark from an earlier episode cannot hide a run that was
-- handed back or requeued since.
ALTER TABLE runs ADD COLUMN dispatch_epoch integer NOT NULL DEFAULT 0;
ALTER TABLE builds ADD COLUMN dispatch_epoch integer NOT NULL DEFAULT 0;

-- Cheap checks on the hot paths: the queue-size limit at run creation, and a
-- worker's lease renewal and cancel poll over the runs it holds.
CREATE INDEX runs_open ON runs (created_at) WHERE status IN ('queued', 'waiting_for_build');
CREATE INDEX runs_by_claim ON runs (worker_incarnation) WHERE status IN ('running', 'waiting_for_build');
