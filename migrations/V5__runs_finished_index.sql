-- Retention finds terminal runs by the time they finished.
CREATE INDEX IF NOT EXISTS runs_finished ON runs (completed_at)
    WHERE status IN ('succeeded', 'failed', 'cancelled');
