-- How each worker runs configuration code (ADE_ENGINE_SANDBOX: `bwrap` or
-- `off`), shown by GET /api/v1/workers. NULL for a worker that predates it.
ALTER TABLE workers ADD COLUMN sandbox text;
