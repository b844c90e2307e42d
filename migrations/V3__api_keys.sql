-- API keys: only a SHA-256 of each key is stored; the key itself is shown
-- once, when it is made. An admin key sees every workspace; a workspace key
-- sees exactly one.
CREATE TABLE api_keys (
    id            uuid PRIMARY KEY,
    hash          bytea NOT NULL UNIQUE,
    prefix        text NOT NULL,
    workspace_id  uuid REFERENCES workspaces (id),
    admin         boolean NOT NULL,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    CHECK (admin = (workspace_id IS NULL))
);
CREATE INDEX api_keys_by_workspace ON api_keys (workspace_id, id);
