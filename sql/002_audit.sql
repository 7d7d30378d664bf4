-- SPDX-License-Identifier: Apache-2.0
-- 002_audit: the audit log that holds up (docs/audit.md).
--
-- * custody_audit_log becomes range-partitioned by month on ts (native partitioning, primary key
--   (id, ts)), with a DEFAULT partition so that no insert ever fails for want of a partition.
--   The existing table is converted in place: a new partitioned table takes its name, its rows
--   (ids kept, same sequence) and its column names; the old table is dropped.
-- * Every row may carry a MAC chaining it to the previous row of its writer's chain
--   (instance_id, seq). custody_audit_chain_heads holds each chain's checkpoint (last seq and
--   MAC), upserted by the very statement that writes the chain's rows.
-- * custody_audit_meta.chain_start_id: rows with a smaller id were written before this migration
--   (pre-chain); rows without a MAC after it are unauthenticated. Verify reports both.
-- * recorded_at: the server's transaction start time of the statement that wrote a row (at or
--   before the snapshot its counter was read in); custody_rotations.committed_at: a server time
--   taken after the rotation committed. Reconcile compares the two (server clock only).
--
-- Applied by ddsm_store_migrate in one transaction; contains no transaction control.

ALTER TABLE custody_audit_log RENAME TO custody_audit_log_001;
ALTER INDEX custody_audit_log_pkey RENAME TO custody_audit_log_001_pkey;
ALTER INDEX custody_audit_log_asset_ts RENAME TO custody_audit_log_001_asset_ts;

CREATE TABLE custody_audit_log (
    id                  bigint NOT NULL DEFAULT nextval('custody_audit_log_id_seq'),
    asset_id            uuid,
    derivation_path     text,
    counter             bigint,
    state_at_derivation text
                        CONSTRAINT custody_audit_log_state_known
                        CHECK (state_at_derivation IN ('INITIALIZED', 'ACTIVE', 'ROTATING',
                                                       'RETIRED')),
    ts                  timestamptz NOT NULL DEFAULT clock_timestamp(),
    event               text NOT NULL
                        CONSTRAINT custody_audit_log_event_known
                        CHECK (event IN ('DERIVE', 'REGISTER', 'ACTIVATE', 'ROTATE', 'GRACE_END',
                                         'RETIRE', 'DENY')),
    requester           text,
    -- "C" collation: verify walks chains in byte order and merges them with the checkpoints.
    instance_id         text COLLATE "C",
    seq                 bigint
                        CONSTRAINT custody_audit_log_seq_positive CHECK (seq > 0),
    detail              text,
    mac                 bytea
                        CONSTRAINT custody_audit_log_mac_length CHECK (octet_length(mac) = 32),
    -- NULL for rows copied from 001 (their statement time is unknown).
    recorded_at         timestamptz DEFAULT now(),
    CONSTRAINT custody_audit_log_mac_names_its_chain
        CHECK (mac IS NULL OR (instance_id IS NOT NULL AND seq IS NOT NULL)),
    CONSTRAINT custody_audit_log_pkey PRIMARY KEY (id, ts)
) PARTITION BY RANGE (ts);

ALTER SEQUENCE custody_audit_log_id_seq OWNED BY custody_audit_log.id;

CREATE TABLE custody_audit_log_default PARTITION OF custody_audit_log DEFAULT;

CREATE INDEX custody_audit_log_asset_ts ON custody_audit_log (asset_id, ts);
-- Verify's walk: every chain in order.
CREATE INDEX custody_audit_log_chain ON custody_audit_log (instance_id, seq, id);
-- Verify's unauthenticated rows.
CREATE INDEX custody_audit_log_unchained ON custody_audit_log (id)
    WHERE seq IS NULL OR instance_id IS NULL;
-- Reconcile's lookups of rotation rows.
CREATE INDEX custody_audit_log_rotate ON custody_audit_log (asset_id, counter)
    WHERE event = 'ROTATE';

CREATE TABLE custody_audit_chain_heads (
    instance_id text COLLATE "C" PRIMARY KEY,
    seq         bigint NOT NULL CONSTRAINT custody_audit_chain_heads_seq_positive CHECK (seq > 0),
    mac         bytea NOT NULL
                CONSTRAINT custody_audit_chain_heads_mac_length CHECK (octet_length(mac) = 32),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE custody_audit_meta (
    singleton      boolean PRIMARY KEY DEFAULT true CONSTRAINT custody_audit_meta_one_row
                   CHECK (singleton),
    chain_start_id bigint NOT NULL,
    migrated_at    timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE custody_rotations ADD COLUMN committed_at timestamptz;

-- The partition of the month (UTC) that month_start falls in; returns NULL when it existed
-- already, else the number of rows it took over from the default partition: rows of that month
-- waiting there move into it (same ids, same content: chains are unaffected). The table is
-- created on its own and then attached, which takes a weaker lock on custody_audit_log than
-- CREATE TABLE ... PARTITION OF.
-- Concurrent callers serialise on an advisory lock ("ddsm-prt" in ASCII).
CREATE FUNCTION ddsm_audit_ensure_partition(month_start date) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path FROM CURRENT
    AS $$
DECLARE
    m    date := date_trunc('month', month_start)::date;
    lo   timestamptz := m::timestamp AT TIME ZONE 'UTC';
    hi   timestamptz := (m + interval '1 month')::timestamp AT TIME ZONE 'UTC';
    name text := 'custody_audit_log_' || to_char(m, 'YYYY_MM');
    moved bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7234033814214832756);
    IF to_regclass(quote_ident(name)) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE custody_audit_log INCLUDING DEFAULTS'
                   ' INCLUDING CONSTRAINTS)', name);
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (ts >= %L AND ts < %L)',
                   name, name || '_range', lo, hi);
    EXECUTE format('INSERT INTO %I SELECT * FROM custody_audit_log_default'
                   ' WHERE ts >= $1 AND ts < $2', name) USING lo, hi;
    GET DIAGNOSTICS moved = ROW_COUNT;
    DELETE FROM custody_audit_log_default WHERE ts >= lo AND ts < hi;
    EXECUTE format('ALTER TABLE custody_audit_log ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   name, lo, hi);
    -- The range check only spared ATTACH a scan; the partition bound now says the same.
    EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', name, name || '_range');
    RETURN moved;
END
$$;

-- Partitions for every month that has rows, and for this month and the next three, then the rows.
SELECT ddsm_audit_ensure_partition(m)
  FROM (SELECT DISTINCT date_trunc('month', ts AT TIME ZONE 'UTC')::date AS m
          FROM custody_audit_log_001
        UNION
        SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => g))::date
          FROM generate_series(0, 3) g) months
 ORDER BY m;

INSERT INTO custody_audit_log (id, asset_id, derivation_path, counter, state_at_derivation, ts,
                               event, requester, instance_id, seq, detail, mac, recorded_at)
SELECT id, asset_id, derivation_path, counter, state_at_derivation, ts, event, requester,
       instance_id, seq, detail, NULL, NULL
  FROM custody_audit_log_001;

INSERT INTO custody_audit_meta (chain_start_id)
SELECT coalesce(max(id), 0) + 1 FROM custody_audit_log_001;

DROP TABLE custody_audit_log_001;
