-- SPDX-License-Identifier: Apache-2.0
-- 006_roles: least privilege (docs/audit.md, "Database roles").
--
-- * Three group roles (NOLOGIN), created here when the cluster lacks them: ddsm_module (what the
--   PKCS#11 module needs), ddsm_admin (ddsmctl lifecycle commands, through the SECURITY DEFINER
--   functions below) and ddsm_auditor (read only: audit verify, reconcile, status, metrics).
--   Operators give them to their own login roles (GRANT ddsm_module TO app_host_1): the names of
--   login roles are the operator's choice, the group names are fixed so that migrations can grant
--   to them. Roles are cluster-wide: several ddsm databases in one cluster share them.
-- * The owner is the role that runs `ddsmctl db migrate`: it owns every table and function and is
--   the only role that may change the schema. Nothing here creates it (it must exist before 001).
-- * PUBLIC loses CONNECT and TEMPORARY on the database, CREATE on the schema (already revoked by
--   PostgreSQL 15 in a new cluster, not in an upgraded one) and EXECUTE on our functions, now and
--   in later migrations (default privileges of the owner).
-- * Lifecycle changes (register, rotate, retire, activate, zones) go through SECURITY DEFINER
--   functions owned by the owner, with a fixed search_path, that write the change and its audit
--   rows in one statement; ddsm_admin may call them and has no other write. Each function checks
--   that the rows it is given are rows of its own kind of event, and the lifecycle guard trigger
--   (001) still refuses an illegal transition.
-- * NOTIFY on the module's channels comes from these functions only as far as our roles go:
--   PostgreSQL lets any connected role NOTIFY any channel, so the module treats a notification
--   as a hint and re-reads the store.
--
-- Granting one more object to a role is one more row in the grant list below.
--
-- Applied by ddsm_store_migrate in one transaction; contains no transaction control.

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['ddsm_module', 'ddsm_admin', 'ddsm_auditor'] LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r);
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        EXCEPTION
            WHEN unique_violation OR duplicate_object THEN
                NULL; -- the migration of another database of this cluster created it meanwhile
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
                    MESSAGE = format('role %I does not exist and role %I may not create it',
                                     r, current_user),
                    HINT = 'create the roles ddsm_module, ddsm_admin and ddsm_auditor (NOLOGIN) '
                           'as a role with CREATEROLE, then run ddsmctl db migrate again';
        END;
    END LOOP;
    EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO ddsm_module, ddsm_admin, ddsm_auditor',
                   current_database());
    EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', current_schema());
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO ddsm_module, ddsm_admin, ddsm_auditor',
                   current_schema());
    EXECUTE format('REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA %I FROM PUBLIC', current_schema());
END
$$;

ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- SECURITY DEFINER functions resolve names in our schema only, and never in pg_temp first:
-- every function created or altered below with SET search_path FROM CURRENT keeps this value.
SELECT pg_catalog.set_config('search_path',
                             pg_catalog.quote_ident(pg_catalog.current_schema()) || ', pg_temp',
                             true);

-- The rate windows are written by the module through this function only.
ALTER FUNCTION ddsm_rate_lease(text, uuid, integer, bigint, bigint, bigint)
    SECURITY DEFINER SET search_path FROM CURRENT;
-- `ddsmctl db maintain` as ddsm_admin: the partitions it creates belong to the owner.
ALTER FUNCTION ddsm_audit_ensure_partition(date) SECURITY DEFINER SET search_path FROM CURRENT;

-- The columns of an asset that ddsm-core reads (ASSET_COLS in ddsm-core/src/store.c).
CREATE TYPE ddsm_asset_row AS (
    asset_id           text,
    label              text,
    key_type           text,
    default_path       text,
    derivation_counter bigint,
    state              text,
    created_us         bigint,
    updated_us         bigint,
    grace_until_us     bigint,
    grace_left_us      bigint
);

CREATE FUNCTION ddsm_asset_row(k custody_keys) RETURNS ddsm_asset_row
    LANGUAGE sql STABLE
    SET search_path FROM CURRENT
    AS $$
SELECT k.asset_id::text, k.label, k.key_type, k.default_path, k.derivation_counter,
       ddsm_effective_state(k.state, k.grace_until),
       (extract(epoch FROM k.created_at) * 1000000)::bigint,
       (extract(epoch FROM k.updated_at) * 1000000)::bigint,
       CASE WHEN ddsm_effective_state(k.state, k.grace_until) = 'ROTATING'
            THEN (extract(epoch FROM k.grace_until) * 1000000)::bigint ELSE 0 END,
       -- What is left of the grace window, on the server's clock alone (never the client's).
       CASE WHEN ddsm_effective_state(k.state, k.grace_until) = 'ROTATING'
            THEN greatest(1, (extract(epoch FROM k.grace_until - clock_timestamp()) * 1000000)
                             ::bigint) ELSE 0 END
$$;

-- Register an asset (INITIALIZED, counter 0) with its REGISTER row, sealed by the caller's chain
-- ($6 ts, $7 instance, $8 seq, $9 mac), and the chain's checkpoint.
CREATE FUNCTION ddsm_asset_register(uuid, text, text, text, text, timestamptz, text, bigint,
                                    bytea)
    RETURNS TABLE (o_asset ddsm_asset_row, o_audit bigint, o_head bigint)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path FROM CURRENT
    AS $$
BEGIN
    RETURN QUERY
    WITH k AS (
        INSERT INTO custody_keys AS c (asset_id, label, key_type, default_path, state)
        VALUES ($1, $2, $3, $4, 'INITIALIZED')
        RETURNING c.asset_id, c AS krow
    ), aud AS (
        INSERT INTO custody_audit_log (asset_id, derivation_path, counter, state_at_derivation,
                                       ts, event, requester, instance_id, seq, mac)
        SELECT k.asset_id, $4, 0, 'INITIALIZED', $6, 'REGISTER', $5, $7, $8, $9 FROM k
        RETURNING 1
    ), head AS (
        INSERT INTO custody_audit_chain_heads AS h (instance_id, seq, mac, updated_at)
        SELECT $7, $8, $9, now() FROM k
        ON CONFLICT (instance_id) DO UPDATE
           SET seq = excluded.seq, mac = excluded.mac, updated_at = excluded.updated_at
        RETURNING 1
    )
    SELECT ddsm_asset_row(k.krow), (SELECT count(*) FROM aud), (SELECT count(*) FROM head) FROM k;
END
$$;

-- One lifecycle event (ddsm-core/src/store.c, transition_chained): applied only while the asset
-- is as the caller predicted ($2 stored state, $3 effective state, $4 counter; the row is locked),
-- with the caller's sealed rows ($10..$16), its checkpoint ($17, $18) and the NOTIFY every module
-- instance listens to. $5 the new state (NULL: refused, only the DENY row), $6 the counter
-- increment, $7 grace seconds, $8 requester, $9 instance.
CREATE FUNCTION ddsm_asset_transition(uuid, text, text, bigint, text, bigint, double precision,
                                      text, text, bigint[], text[], timestamptz[], text[],
                                      bigint[], text[], bytea[], bigint, bytea)
    RETURNS TABLE (o_stored_state text, o_state text, o_counter bigint, o_ok bigint,
                   o_audit bigint, o_head bigint, o_notified bigint, o_rotation bigint,
                   o_asset ddsm_asset_row)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path FROM CURRENT
    AS $$
BEGIN
    IF $6 NOT IN (0, 1) OR EXISTS (SELECT 1 FROM unnest($13) e
                                   WHERE e IS NULL OR e NOT IN ('ACTIVATE', 'ROTATE', 'GRACE_END',
                                                                'RETIRE', 'DENY')) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'ddsm_asset_transition: only lifecycle rows, and a counter step of 0 or 1';
    END IF;
    RETURN QUERY
    WITH cur AS (
        SELECT c.asset_id, c.derivation_counter, c.state AS stored_state,
               ddsm_effective_state(c.state, c.grace_until) AS state
          FROM custody_keys c
         WHERE c.asset_id = $1
           FOR UPDATE
    ), ok AS (
        SELECT * FROM cur
         WHERE cur.stored_state = $2 AND cur.state = $3 AND cur.derivation_counter = $4
    ), upd AS (
        UPDATE custody_keys k
           SET state = $5,
               derivation_counter = ok.derivation_counter + $6,
               grace_until = CASE WHEN $5 = 'ROTATING' THEN now() + make_interval(secs => $7) END,
               updated_at = now()
          FROM ok
         WHERE k.asset_id = ok.asset_id AND $5 IS NOT NULL
        RETURNING k.*, k AS krow
    ), aud AS (
        INSERT INTO custody_audit_log (asset_id, counter, state_at_derivation, ts, event,
                                       requester, instance_id, seq, detail, mac)
        SELECT ok.asset_id, r.counter, r.state, r.ts, r.event, $8, $9, r.seq, r.detail, r.mac
          FROM unnest($10, $11, $12, $13, $14, $15, $16) WITH ORDINALITY
               AS r(counter, state, ts, event, seq, detail, mac, ord), ok
         ORDER BY r.ord
        RETURNING 1
    ), head AS (
        INSERT INTO custody_audit_chain_heads AS h (instance_id, seq, mac, updated_at)
        SELECT $9, $17, $18, now() FROM ok
        ON CONFLICT (instance_id) DO UPDATE
           SET seq = excluded.seq, mac = excluded.mac, updated_at = excluded.updated_at
        RETURNING 1
    ), rot AS (
        INSERT INTO custody_rotations (asset_id, from_counter, to_counter, grace_until,
                                       requester)
        SELECT upd.asset_id, ok.derivation_counter, upd.derivation_counter, upd.grace_until, $8
          FROM upd, ok
         WHERE upd.derivation_counter > ok.derivation_counter
        RETURNING id
    ), note AS (
        SELECT pg_notify('ddsm_asset', upd.asset_id::text || ' ' || upd.derivation_counter
                                       || ' ' || ddsm_effective_state(upd.state, upd.grace_until))
          FROM upd
    )
    SELECT cur.stored_state, cur.state, cur.derivation_counter, (SELECT count(*) FROM ok),
           (SELECT count(*) FROM aud), (SELECT count(*) FROM head), (SELECT count(*) FROM note),
           (SELECT id FROM rot),
           CASE WHEN upd.asset_id IS NULL THEN NULL ELSE ddsm_asset_row(upd.krow) END
      FROM cur LEFT JOIN upd ON true;
END
$$;

-- Stamp a rotation as committed (a server time after its commit; see 002). Idempotent.
CREATE FUNCTION ddsm_rotation_committed(bigint) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path FROM CURRENT
    AS $$
UPDATE custody_rotations SET committed_at = clock_timestamp()
 WHERE id = $1 AND committed_at IS NULL
$$;

-- Enable or disable a zone ($4: create it when missing) with its audit row ($5 ts, $6 event,
-- $7 detail, $8 instance, $9 seq, $10 mac: NULL without a chain) and a NOTIFY per asset in it.
CREATE FUNCTION ddsm_zone_set(text, boolean, text, boolean, timestamptz, text, text, text, bigint,
                              bytea)
    RETURNS TABLE (o_zones bigint, o_audit bigint, o_head bigint, o_notified bigint)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path FROM CURRENT
    AS $$
BEGIN
    IF $6 IS DISTINCT FROM (CASE WHEN $2 THEN 'ZONE_ENABLE' ELSE 'ZONE_DISABLE' END) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'ddsm_zone_set: the event must be ZONE_ENABLE or ZONE_DISABLE as the change';
    END IF;
    RETURN QUERY
    WITH upd AS (
        UPDATE custody_zones z SET enabled = $2, updated_at = now(), updated_by = $3
         WHERE z.zone = $1
        RETURNING z.zone
    ), mk AS (
        INSERT INTO custody_zones AS z (zone, enabled, updated_by)
        SELECT $1, $2, $3 WHERE $4 AND NOT EXISTS (SELECT 1 FROM upd)
        ON CONFLICT (zone) DO NOTHING
        RETURNING z.zone
    ), zz AS (
        SELECT upd.zone FROM upd UNION ALL SELECT mk.zone FROM mk
    ), aud AS (
        INSERT INTO custody_audit_log (ts, event, requester, instance_id, seq, detail, mac)
        SELECT $5, $6, $3, $8, $9, $7, $10 FROM zz
        RETURNING 1
    ), head AS (
        INSERT INTO custody_audit_chain_heads AS h (instance_id, seq, mac, updated_at)
        SELECT $8, $9, $10, now() FROM zz WHERE $10 IS NOT NULL
        ON CONFLICT (instance_id) DO UPDATE
           SET seq = excluded.seq, mac = excluded.mac, updated_at = excluded.updated_at
        RETURNING 1
    ), note AS (
        SELECT pg_notify('ddsm_zone', k.asset_id::text
                                      || CASE WHEN $2 THEN ' on ' ELSE ' off ' END || k.zone)
          FROM custody_keys k JOIN zz ON k.zone = zz.zone
    )
    SELECT (SELECT count(*) FROM zz), (SELECT count(*) FROM aud), (SELECT count(*) FROM head),
           (SELECT count(*) FROM note);
END
$$;

-- Move an asset to zone $2 (created, enabled, when missing) while it is in zone $4, with its
-- ZONE_ASSIGN row ($5 ts, $6 detail, $7 instance, $8 seq, $9 mac) and a NOTIFY.
CREATE FUNCTION ddsm_zone_assign(uuid, text, text, text, timestamptz, text, text, bigint, bytea)
    RETURNS TABLE (o_zone text, o_ok bigint, o_audit bigint, o_head bigint, o_notified bigint)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path FROM CURRENT
    AS $$
BEGIN
    RETURN QUERY
    WITH cur AS (
        SELECT c.asset_id, c.zone FROM custody_keys c WHERE c.asset_id = $1 FOR UPDATE
    ), ok AS (
        SELECT * FROM cur WHERE cur.zone = $4
    ), mk AS (
        INSERT INTO custody_zones AS z (zone, updated_by) SELECT $2, $3 FROM ok
        ON CONFLICT (zone) DO NOTHING
        RETURNING z.zone, z.enabled
    ), zn AS (
        SELECT mk.enabled FROM mk
        UNION ALL
        SELECT z.enabled FROM custody_zones z
         WHERE z.zone = $2 AND NOT EXISTS (SELECT 1 FROM mk)
    ), upd AS (
        UPDATE custody_keys k SET zone = $2, updated_at = now() FROM ok
         WHERE k.asset_id = ok.asset_id
        RETURNING k.asset_id
    ), aud AS (
        INSERT INTO custody_audit_log (asset_id, ts, event, requester, instance_id, seq, detail,
                                       mac)
        SELECT ok.asset_id, $5, 'ZONE_ASSIGN', $3, $7, $8, $6, $9 FROM ok
        RETURNING 1
    ), head AS (
        INSERT INTO custody_audit_chain_heads AS h (instance_id, seq, mac, updated_at)
        SELECT $7, $8, $9, now() FROM ok WHERE $9 IS NOT NULL
        ON CONFLICT (instance_id) DO UPDATE
           SET seq = excluded.seq, mac = excluded.mac, updated_at = excluded.updated_at
        RETURNING 1
    ), note AS (
        SELECT pg_notify('ddsm_zone', upd.asset_id::text
                                      || CASE WHEN zn.enabled THEN ' on ' ELSE ' off ' END || $2)
          FROM upd, zn
    )
    SELECT cur.zone, (SELECT count(*) FROM ok), (SELECT count(*) FROM aud),
           (SELECT count(*) FROM head), (SELECT count(*) FROM note)
      FROM cur;
END
$$;

-- What each role may do, one grant a row. Nothing else is granted to them: the module cannot
-- UPDATE or DELETE audit rows, touch counters, states or zones, or create objects; the admin
-- writes only through the functions above; the auditor only reads.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT * FROM (VALUES
            ('ddsm_module',  'SELECT',                 'TABLE',    'custody_keys'),
            ('ddsm_module',  'SELECT',                 'TABLE',    'custody_zones'),
            ('ddsm_module',  'INSERT',                 'TABLE',    'custody_audit_log'),
            ('ddsm_module',  'USAGE',                  'SEQUENCE', 'custody_audit_log_id_seq'),
            ('ddsm_module',  'SELECT, INSERT, UPDATE', 'TABLE',    'custody_audit_chain_heads'),
            ('ddsm_module',  'EXECUTE',                'FUNCTION', 'ddsm_effective_state'),
            ('ddsm_module',  'EXECUTE',                'FUNCTION', 'ddsm_rate_lease'),
            ('ddsm_module',  'SELECT',                 'TABLE',    'custody_root_pins'),
            ('ddsm_admin',   'SELECT',                 'TABLE',    'custody_keys'),
            ('ddsm_admin',   'SELECT',                 'TABLE',    'custody_zones'),
            ('ddsm_admin',   'SELECT',                 'TABLE',    'custody_rotations'),
            ('ddsm_admin',   'SELECT',                 'TABLE',    'custody_audit_log_default'),
            ('ddsm_admin',   'EXECUTE',                'FUNCTION', 'ddsm_effective_state'),
            ('ddsm_admin',   'EXECUTE',                'FUNCTION', 'ddsm_asset_register'),
            ('ddsm_admin',   'EXECUTE',                'FUNCTION', 'ddsm_asset_transition'),
            ('ddsm_admin',   'EXECUTE',                'FUNCTION', 'ddsm_rotation_committed'),
            ('ddsm_admin',   'EXECUTE',                'FUNCTION', 'ddsm_zone_set'),
            ('ddsm_admin',   'EXECUTE',                'FUNCTION', 'ddsm_zone_assign'),
            ('ddsm_admin',   'EXECUTE',                'FUNCTION', 'ddsm_audit_ensure_partition'),
            ('ddsm_admin',   'SELECT, INSERT',         'TABLE',    'custody_root_pins'),
            ('ddsm_admin',   'USAGE',                  'SEQUENCE', 'custody_root_pins_id_seq'),
            ('ddsm_auditor', 'SELECT',                 'TABLE',    'custody_keys'),
            ('ddsm_auditor', 'SELECT',                 'TABLE',    'custody_zones'),
            ('ddsm_auditor', 'SELECT',                 'TABLE',    'custody_lifecycle'),
            ('ddsm_auditor', 'SELECT',                 'TABLE',    'custody_rotations'),
            ('ddsm_auditor', 'SELECT',                 'TABLE',    'custody_audit_log'),
            ('ddsm_auditor', 'SELECT',                 'TABLE',    'custody_audit_log_default'),
            ('ddsm_auditor', 'SELECT',                 'TABLE',    'custody_audit_chain_heads'),
            ('ddsm_auditor', 'SELECT',                 'TABLE',    'custody_audit_meta'),
            ('ddsm_auditor', 'SELECT',                 'TABLE',    'ddsm_schema_migrations'),
            ('ddsm_auditor', 'SELECT',                 'TABLE',    'custody_root_pins'),
            ('ddsm_auditor', 'EXECUTE',                'FUNCTION', 'ddsm_effective_state')
        ) AS v(grantee, privileges, kind, object)
    LOOP
        IF g.kind = 'FUNCTION' THEN
            -- Every overload: our functions have one each.
            EXECUTE (SELECT format('GRANT EXECUTE ON FUNCTION %s TO %I',
                                   string_agg(p.oid::regprocedure::text, ', '), g.grantee)
                       FROM pg_catalog.pg_proc p
                      WHERE p.proname = g.object
                        AND p.pronamespace = pg_catalog.current_schema()::regnamespace);
        ELSE
            EXECUTE format('GRANT %s ON %s %I TO %I', g.privileges, g.kind, g.object, g.grantee);
        END IF;
    END LOOP;
END
$$;
