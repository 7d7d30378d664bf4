-- SPDX-License-Identifier: Apache-2.0
-- 004_key_types: the key types of signing keys (docs/design.md "Signing keys").
--
-- An asset's key type says what its keys are: 'hmac' and 'aes' secret keys derived directly,
-- or 'secp256k1' (BIP-32), 'ed25519' and 'p256' (SLIP-10) signing keys whose HD tree is seeded
-- by the asset seed. 001 only bounded the text's length; from now on the registry holds nothing
-- else (ddsm-core's register refuses other names first, with a precise message).
--
-- Existing rows: every registration before this migration went through ddsm-core, which knew
-- 'hmac' and 'aes' only, so they all satisfy the new CHECK. A row written around ddsm-core with
-- another value stops the migration with its asset id instead of being silently rewritten (its
-- keys would change): fix or remove it, then migrate again.

DO $$
DECLARE
    bad record;
BEGIN
    SELECT asset_id, key_type INTO bad
      FROM custody_keys
     WHERE key_type NOT IN ('hmac', 'aes', 'secp256k1', 'ed25519', 'p256')
     ORDER BY asset_id
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'check_violation',
            MESSAGE = format('asset %s has the unknown key type %L; known: hmac, aes, secp256k1, '
                             'ed25519, p256', bad.asset_id, bad.key_type);
    END IF;
END
$$;

ALTER TABLE custody_keys
    DROP CONSTRAINT custody_keys_key_type_shape,
    ADD CONSTRAINT custody_keys_key_type_known
        CHECK (key_type IN ('hmac', 'aes', 'secp256k1', 'ed25519', 'p256'));

-- A key type never changes: every key of the asset, and every audit row naming it, would then
-- mean something else. Modules cache the type of an asset for as long as they run.
CREATE FUNCTION custody_keys_key_type_fixed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.key_type <> OLD.key_type THEN
        RAISE EXCEPTION USING ERRCODE = 'ZD004',
            MESSAGE = format('asset %s: the key type cannot change (%s to %s)', OLD.asset_id,
                             OLD.key_type, NEW.key_type);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER custody_keys_key_type_fixed
    BEFORE UPDATE OF key_type ON custody_keys
    FOR EACH ROW EXECUTE FUNCTION custody_keys_key_type_fixed();
