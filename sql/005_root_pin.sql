-- SPDX-License-Identifier: Apache-2.0
-- 005_root_pin: the roots this store accepts (docs/root.md "The root pin").
--
-- The module finds its root seed key by label AND fingerprint: the fingerprint is computed inside
-- the HSM (HMAC-SHA256 under the root of the reserved fingerprint message) and recorded here by
-- `ddsmctl root create|import|recover`, or by `ddsmctl root pin` for a root made before this
-- migration. Other objects carrying the root's label are ignored by the module, never used.
--
-- One row per pinning event (history): a root recovered from shares into another HSM has the same
-- fingerprint and is the same root, so it adds a row and no new fingerprint. The accepted roots
-- are the distinct fingerprints of this table.
--
-- Existing stores: nothing is pinned by this migration (the fingerprint can only be computed by
-- the HSM). Until `ddsmctl root pin` is run, the module refuses every derivation with
-- CKR_DEVICE_ERROR and the detail DDSM_DEVERR_ROOT_UNPINNED, and logs the remedy.

CREATE TABLE custody_root_pins (
    id           bigserial PRIMARY KEY,
    fingerprint  text NOT NULL CHECK (fingerprint ~ '^[0-9a-f]{32}$'),
    event        text NOT NULL CHECK (event IN ('CREATE', 'IMPORT', 'RECOVER', 'PIN')),
    token_label  text NOT NULL CHECK (length(token_label) BETWEEN 1 AND 32),
    key_label    text NOT NULL CHECK (length(key_label) BETWEEN 1 AND 256),
    -- What the backend offered, hex, for operators comparing tokens (NULL: not offered).
    unique_id    text CHECK (unique_id IS NULL OR length(unique_id) <= 256),
    check_value  text CHECK (check_value IS NULL OR check_value ~ '^[0-9a-f]{2,64}$'),
    -- The HSM-enforced attributes that could not be set when the key was made ('' for none;
    -- NULL for `root pin` of an existing key, whose attributes `ddsmctl root info` shows).
    not_enforced text CHECK (not_enforced IS NULL OR length(not_enforced) <= 512),
    pinned_at    timestamptz NOT NULL DEFAULT now(),
    pinned_by    text NOT NULL DEFAULT current_user
);

CREATE INDEX custody_root_pins_fingerprint ON custody_root_pins (fingerprint);

-- The pin history is append-only: a forgotten root is a decision for a new store, not an edit.
CREATE FUNCTION custody_root_pins_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
        MESSAGE = 'custody_root_pins is append-only';
END
$$;

CREATE TRIGGER custody_root_pins_append_only
    BEFORE UPDATE OR DELETE ON custody_root_pins
    FOR EACH ROW EXECUTE FUNCTION custody_root_pins_append_only();
