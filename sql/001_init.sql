-- SPDX-License-Identifier: Apache-2.0
-- 001_init: the asset registry, the audit log, rotations, and the lifecycle guard.
--
-- Applied by ddsm_store_migrate (`ddsmctl db migrate`) in one transaction together with its row
-- in ddsm_schema_migrations, so it must not contain transaction control. Table and column names
-- are those of the seed design, so operators' existing queries keep working.

CREATE TABLE ddsm_schema_migrations (
    name       text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- The lifecycle, row for row a copy of ddsm_state_next() (ddsm-core/src/state.c), which stays
-- the single source of truth: tests/integration/test_store.c fails when the two disagree. The
-- guard trigger below reads it so that even a raw UPDATE cannot make an illegal transition.
CREATE TABLE custody_lifecycle (
    from_state    text NOT NULL,
    event         text NOT NULL,
    to_state      text NOT NULL,
    bumps_counter boolean NOT NULL,
    PRIMARY KEY (from_state, event)
);

INSERT INTO custody_lifecycle (from_state, event, to_state, bumps_counter) VALUES
    ('INITIALIZED', 'ACTIVATE',     'ACTIVE',   false),
    ('ACTIVE',      'ROTATE',       'ACTIVE',   true),
    ('ACTIVE',      'ROTATE_GRACE', 'ROTATING', true),
    ('ACTIVE',      'RETIRE',       'RETIRED',  false),
    ('ROTATING',    'GRACE_END',    'ACTIVE',   false),
    ('ROTATING',    'RETIRE',       'RETIRED',  false);

CREATE TABLE custody_keys (
    asset_id           uuid PRIMARY KEY
                       CONSTRAINT custody_keys_asset_not_nil
                       CHECK (asset_id <> '00000000-0000-0000-0000-000000000000'),
    label              text NOT NULL
                       CONSTRAINT custody_keys_label_key UNIQUE
                       CONSTRAINT custody_keys_label_shape
                       CHECK (char_length(label) BETWEEN 1 AND 128 AND strpos(label, '/') = 0),
    key_type           text NOT NULL DEFAULT 'hmac'
                       CONSTRAINT custody_keys_key_type_shape
                       CHECK (char_length(key_type) BETWEEN 1 AND 16),
    default_path       text NOT NULL
                       CONSTRAINT custody_keys_default_path_shape
                       CHECK (default_path LIKE 'm/%' AND char_length(default_path) <= 193),
    derivation_counter bigint NOT NULL DEFAULT 0
                       CONSTRAINT custody_keys_counter_nonnegative CHECK (derivation_counter >= 0),
    state              text NOT NULL DEFAULT 'INITIALIZED'
                       CONSTRAINT custody_keys_state_known
                       CHECK (state IN ('INITIALIZED', 'ACTIVE', 'ROTATING', 'RETIRED')),
    -- End of the grace window of a rotation; set exactly while the stored state is ROTATING.
    grace_until        timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT custody_keys_grace_iff_rotating
        CHECK ((state = 'ROTATING') = (grace_until IS NOT NULL))
);

-- The state an asset is in now: a ROTATING asset whose grace window has passed is ACTIVE, even
-- before the next lifecycle event writes that down. Inlined by the planner (plain SQL, STABLE).
CREATE FUNCTION ddsm_effective_state(state text, grace_until timestamptz) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN state = 'ROTATING' AND grace_until <= now() THEN 'ACTIVE'
                      ELSE state END $$;

-- Refuses, whoever runs the UPDATE: a state change or counter change that no lifecycle row
-- allows (from the stored or the effective state), a counter that decreases or jumps, and a
-- changed asset id. SQLSTATE class ZD is ours: ddsm-core maps it to DDSM_E_STATE.
CREATE FUNCTION custody_keys_guard() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    eff    text := ddsm_effective_state(OLD.state, OLD.grace_until);
    bumped boolean := NEW.derivation_counter <> OLD.derivation_counter;
BEGIN
    IF NEW.asset_id <> OLD.asset_id THEN
        RAISE EXCEPTION USING ERRCODE = 'ZD003',
            MESSAGE = format('asset %s: the asset id cannot change', OLD.asset_id);
    END IF;
    IF NEW.derivation_counter < OLD.derivation_counter THEN
        RAISE EXCEPTION USING ERRCODE = 'ZD002',
            MESSAGE = format('asset %s: the counter cannot decrease (%s to %s)',
                             OLD.asset_id, OLD.derivation_counter, NEW.derivation_counter);
    END IF;
    IF bumped AND NEW.derivation_counter <> OLD.derivation_counter + 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'ZD002',
            MESSAGE = format('asset %s: a rotation adds exactly one to the counter (%s to %s)',
                             OLD.asset_id, OLD.derivation_counter, NEW.derivation_counter);
    END IF;
    IF NEW.state = OLD.state AND NOT bumped THEN
        RETURN NEW;
    END IF;
    IF NOT EXISTS (SELECT 1
                     FROM custody_lifecycle l
                    WHERE l.from_state IN (OLD.state, eff)
                      AND l.to_state = NEW.state
                      AND l.bumps_counter = bumped) THEN
        RAISE EXCEPTION USING ERRCODE = 'ZD001',
            MESSAGE = format('asset %s is %s; cannot become %s%s', OLD.asset_id, eff, NEW.state,
                             CASE WHEN bumped THEN ' with a new counter' ELSE '' END);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER custody_keys_guard
    BEFORE UPDATE ON custody_keys
    FOR EACH ROW EXECUTE FUNCTION custody_keys_guard();

-- One row per event. No foreign key: a DENY may name an asset that does not exist, and the hot
-- derivation insert should not have to lock the registry row.
CREATE TABLE custody_audit_log (
    id                  bigserial PRIMARY KEY,
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
    instance_id         text,
    seq                 bigint,
    detail              text
);

CREATE INDEX custody_audit_log_asset_ts ON custody_audit_log (asset_id, ts);

CREATE TABLE custody_rotations (
    id           bigserial PRIMARY KEY,
    asset_id     uuid NOT NULL REFERENCES custody_keys (asset_id),
    from_counter bigint NOT NULL,
    to_counter   bigint NOT NULL,
    grace_until  timestamptz,
    rotated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    requester    text,
    CONSTRAINT custody_rotations_forward CHECK (to_counter > from_counter)
);

CREATE INDEX custody_rotations_asset ON custody_rotations (asset_id, rotated_at);
