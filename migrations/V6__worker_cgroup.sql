-- Whether each worker bounds a run's processes together with a cgroup:
-- `v1`, `v2`, or `none` (rlimits per process only), shown by
-- GET /api/v1/workers. NULL for a worker that predates it.
ALTER TABLE workers ADD COLUMN cgroup text;
