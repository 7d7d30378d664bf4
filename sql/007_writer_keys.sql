-- SPDX-License-Identifier: Apache-2.0
-- 007_writer_keys: one audit key per writer (docs/audit.md "The audit keys").
--
-- Until now every writer chained its rows under one shared audit key (the reserved derivation
-- nil UUID, depth 0, counter 0). From here on each writer chains under a key derived from the root
-- and its own writer id, read off the chain's instance id ("<writer>/c<n>[#<e>]"). Rows keep
-- their format; which key a row needs follows from its id: rows with an id below
-- custody_audit_meta.writer_keys_from_id were written before this migration and verify under the
-- legacy key; every later row needs its writer's key (`ddsmctl audit verify` reports one made
-- under the legacy key as LEGACY_KEY: a writer not upgraded, or a forgery).
--
-- The boundary is the next id the sequence hands out when this migration commits. An owner can
-- move it (and, holding the legacy key, re-MAC rows below it); the checkpoint files of
-- `ddsmctl audit checkpoint` record it, and `audit verify --checkpoint` reports a moved one.
--
-- Grants: none. The module still only inserts rows and moves its checkpoints; the auditor already
-- reads custody_audit_meta.
--
-- Applied by ddsm_store_migrate in one transaction; contains no transaction control.

ALTER TABLE custody_audit_meta ADD COLUMN writer_keys_from_id bigint;

UPDATE custody_audit_meta
   SET writer_keys_from_id = (SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END
                                FROM custody_audit_log_id_seq);

ALTER TABLE custody_audit_meta ALTER COLUMN writer_keys_from_id SET NOT NULL;
