-- SPDX-License-Identifier: Apache-2.0
-- 003_policy: compliance zones and the shared rate-limit windows (docs/policy.md).
--
-- * custody_zones: named zones an asset belongs to (every asset starts in "default"). A disabled
--   zone's assets derive nothing: the derivation statement joins the zone through the asset's
--   primary-key probe and refuses with a DENY row; `ddsmctl zone disable` NOTIFYs every module
--   instance on channel ddsm_zone ("<asset uuid> on|off <zone>", one per asset) so that keys
--   already derived stop being used at once.
-- * Zone changes are audit rows of their own (ZONE_ENABLE, ZONE_DISABLE, ZONE_ASSIGN), chained
--   like every other row.
-- * custody_rate_windows: tokens granted per (requester, asset, window) to the module instances'
--   local token buckets by ddsm_rate_lease (asset = the nil UUID: the requester's total). The
--   table is UNLOGGED: a lease commits without waiting for a WAL flush, and a crash of the
--   server forgets at most the windows in progress (they start again from zero).
--
-- Applied by ddsm_store_migrate in one transaction; contains no transaction control. Independent
-- of every migration but 001 and 002.

CREATE TABLE custody_zones (
    zone       text PRIMARY KEY
               CONSTRAINT custody_zones_name_shape
               CHECK (zone ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    enabled    boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text
);

INSERT INTO custody_zones (zone) VALUES ('default');

-- A constant default: no table rewrite. The foreign key keeps a zone from vanishing under its
-- assets; zones are never deleted by the tools.
ALTER TABLE custody_keys
    ADD COLUMN zone text NOT NULL DEFAULT 'default'
        CONSTRAINT custody_keys_zone_fkey REFERENCES custody_zones (zone);

CREATE INDEX custody_keys_zone ON custody_keys (zone);

ALTER TABLE custody_audit_log DROP CONSTRAINT custody_audit_log_event_known;
ALTER TABLE custody_audit_log ADD CONSTRAINT custody_audit_log_event_known
    CHECK (event IN ('DERIVE', 'REGISTER', 'ACTIVATE', 'ROTATE', 'GRACE_END', 'RETIRE', 'DENY',
                     'ZONE_ENABLE', 'ZONE_DISABLE', 'ZONE_ASSIGN'));

-- `ddsmctl metrics` counts the rows of the last minute: a BRIN index keeps that a read of the
-- newest pages (rows arrive in ts order, near enough), at almost no cost to the inserts.
CREATE INDEX custody_audit_log_ts_brin ON custody_audit_log USING brin (ts);

CREATE UNLOGGED TABLE custody_rate_windows (
    requester    text NOT NULL,
    asset_id     uuid NOT NULL,
    window_start timestamptz NOT NULL,
    granted      bigint NOT NULL DEFAULT 0
                 CONSTRAINT custody_rate_windows_granted_nonnegative CHECK (granted >= 0),
    CONSTRAINT custody_rate_windows_pkey PRIMARY KEY (requester, asset_id, window_start)
);

CREATE INDEX custody_rate_windows_start ON custody_rate_windows (window_start);

-- Grant up to p_want tokens of the current window (p_window_s seconds long, aligned to the
-- epoch, on the server's clock) to one module instance, within both limits (0: no limit of that
-- kind): the requester's total over every asset and the requester's on p_asset. Never grants
-- more than a limit leaves; a token granted is never returned, so the sum of grants of a window
-- is at most the limit whatever the number of instances and hosts. Row locks are taken in one
-- order (the requester's total first), so concurrent leases never deadlock. Returns the grant
-- (0 when a limit is spent), the window's start and the milliseconds left in it.
CREATE FUNCTION ddsm_rate_lease(p_requester text, p_asset uuid, p_window_s integer,
                                p_want bigint, p_limit_asset bigint, p_limit_requester bigint,
                                OUT grant_n bigint, OUT window_at timestamptz,
                                OUT left_ms bigint)
    LANGUAGE plpgsql
    SET search_path FROM CURRENT
    AS $$
DECLARE
    t     timestamptz := clock_timestamp();
    nil   uuid := '00000000-0000-0000-0000-000000000000';
    spent bigint;
BEGIN
    IF p_requester IS NULL OR p_window_s IS NULL OR p_window_s < 1 OR p_window_s > 86400
       OR p_want IS NULL OR p_want < 1 OR p_limit_asset IS NULL OR p_limit_asset < 0
       OR p_limit_requester IS NULL OR p_limit_requester < 0
       OR (p_limit_asset > 0 AND (p_asset IS NULL OR p_asset = nil)) THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'ddsm_rate_lease: bad arguments';
    END IF;
    window_at := to_timestamp(floor(extract(epoch FROM t) / p_window_s) * p_window_s);
    left_ms := greatest(1, ceil(extract(epoch FROM
                   window_at + make_interval(secs => p_window_s) - t) * 1000))::bigint;
    grant_n := p_want;
    IF p_limit_requester > 0 THEN
        INSERT INTO custody_rate_windows AS w (requester, asset_id, window_start)
        VALUES (p_requester, nil, window_at)
        ON CONFLICT ON CONSTRAINT custody_rate_windows_pkey DO UPDATE SET granted = w.granted
        RETURNING w.granted INTO spent;
        grant_n := least(grant_n, greatest(p_limit_requester - spent, 0));
    END IF;
    IF p_limit_asset > 0 THEN
        INSERT INTO custody_rate_windows AS w (requester, asset_id, window_start)
        VALUES (p_requester, p_asset, window_at)
        ON CONFLICT ON CONSTRAINT custody_rate_windows_pkey DO UPDATE SET granted = w.granted
        RETURNING w.granted INTO spent;
        grant_n := least(grant_n, greatest(p_limit_asset - spent, 0));
    END IF;
    IF grant_n > 0 THEN
        UPDATE custody_rate_windows w SET granted = w.granted + grant_n
         WHERE w.requester = p_requester AND w.window_start = window_at
           AND ((p_limit_requester > 0 AND w.asset_id = nil)
                OR (p_limit_asset > 0 AND w.asset_id = p_asset));
    END IF;
    -- Forget windows long gone, now and then (the longest window is a day).
    IF random() < 0.01 THEN
        DELETE FROM custody_rate_windows WHERE window_start < t - interval '2 days';
    END IF;
END
$$;
