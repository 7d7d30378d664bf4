/* SPDX-License-Identifier: Apache-2.0 */
/* Generated from p11-kit's pkcs11.h by gen.py: every v2.40 function, in function-list order.
 * X(name, (parameters), (arguments)) */
#define FAULT_FUNCS(X) \
    X(C_Initialize, (void *init_args), (init_args)) \
    X(C_Finalize, (void *reserved), (reserved)) \
    X(C_GetInfo, (struct ck_info *info), (info)) \
    X(C_GetSlotList, (unsigned char token_present, ck_slot_id_t *slot_list, unsigned long *count), (token_present, slot_list, count)) \
    X(C_GetSlotInfo, (ck_slot_id_t slot_id, struct ck_slot_info *info), (slot_id, info)) \
    X(C_GetTokenInfo, (ck_slot_id_t slot_id, struct ck_token_info *info), (slot_id, info)) \
    X(C_GetMechanismList, (ck_slot_id_t slot_id, ck_mechanism_type_t *mechanism_list, unsigned long *count), (slot_id, mechanism_list, count)) \
    X(C_GetMechanismInfo, (ck_slot_id_t slot_id, ck_mechanism_type_t type, struct ck_mechanism_info *info), (slot_id, type, info)) \
    X(C_InitToken, (ck_slot_id_t slot_id, unsigned char *pin, unsigned long pin_len, unsigned char *label), (slot_id, pin, pin_len, label)) \
    X(C_InitPIN, (ck_session_handle_t session, unsigned char *pin, unsigned long pin_len), (session, pin, pin_len)) \
    X(C_SetPIN, (ck_session_handle_t session, unsigned char *old_pin, unsigned long old_len, unsigned char *new_pin, unsigned long new_len), (session, old_pin, old_len, new_pin, new_len)) \
    X(C_OpenSession, (ck_slot_id_t slot_id, ck_flags_t flags, void *application, ck_notify_t notify, ck_session_handle_t *session), (slot_id, flags, application, notify, session)) \
    X(C_CloseSession, (ck_session_handle_t session), (session)) \
    X(C_CloseAllSessions, (ck_slot_id_t slot_id), (slot_id)) \
    X(C_GetSessionInfo, (ck_session_handle_t session, struct ck_session_info *info), (session, info)) \
    X(C_GetOperationState, (ck_session_handle_t session, unsigned char *operation_state, unsigned long *operation_state_len), (session, operation_state, operation_state_len)) \
    X(C_SetOperationState, (ck_session_handle_t session, unsigned char *operation_state, unsigned long operation_state_len, ck_object_handle_t encryption_key, ck_object_handle_t authentiation_key), (session, operation_state, operation_state_len, encryption_key, authentiation_key)) \
    X(C_Login, (ck_session_handle_t session, ck_user_type_t user_type, unsigned char *pin, unsigned long pin_len), (session, user_type, pin, pin_len)) \
    X(C_Logout, (ck_session_handle_t session), (session)) \
    X(C_CreateObject, (ck_session_handle_t session, struct ck_attribute *templ, unsigned long count, ck_object_handle_t *object), (session, templ, count, object)) \
    X(C_CopyObject, (ck_session_handle_t session, ck_object_handle_t object, struct ck_attribute *templ, unsigned long count, ck_object_handle_t *new_object), (session, object, templ, count, new_object)) \
    X(C_DestroyObject, (ck_session_handle_t session, ck_object_handle_t object), (session, object)) \
    X(C_GetObjectSize, (ck_session_handle_t session, ck_object_handle_t object, unsigned long *size), (session, object, size)) \
    X(C_GetAttributeValue, (ck_session_handle_t session, ck_object_handle_t object, struct ck_attribute *templ, unsigned long count), (session, object, templ, count)) \
    X(C_SetAttributeValue, (ck_session_handle_t session, ck_object_handle_t object, struct ck_attribute *templ, unsigned long count), (session, object, templ, count)) \
    X(C_FindObjectsInit, (ck_session_handle_t session, struct ck_attribute *templ, unsigned long count), (session, templ, count)) \
    X(C_FindObjects, (ck_session_handle_t session, ck_object_handle_t *object, unsigned long max_object_count, unsigned long *object_count), (session, object, max_object_count, object_count)) \
    X(C_FindObjectsFinal, (ck_session_handle_t session), (session)) \
    X(C_EncryptInit, (ck_session_handle_t session, struct ck_mechanism *mechanism, ck_object_handle_t key), (session, mechanism, key)) \
    X(C_Encrypt, (ck_session_handle_t session, unsigned char *data, unsigned long data_len, unsigned char *encrypted_data, unsigned long *encrypted_data_len), (session, data, data_len, encrypted_data, encrypted_data_len)) \
    X(C_EncryptUpdate, (ck_session_handle_t session, unsigned char *part, unsigned long part_len, unsigned char *encrypted_part, unsigned long *encrypted_part_len), (session, part, part_len, encrypted_part, encrypted_part_len)) \
    X(C_EncryptFinal, (ck_session_handle_t session, unsigned char *last_encrypted_part, unsigned long *last_encrypted_part_len), (session, last_encrypted_part, last_encrypted_part_len)) \
    X(C_DecryptInit, (ck_session_handle_t session, struct ck_mechanism *mechanism, ck_object_handle_t key), (session, mechanism, key)) \
    X(C_Decrypt, (ck_session_handle_t session, unsigned char *encrypted_data, unsigned long encrypted_data_len, unsigned char *data, unsigned long *data_len), (session, encrypted_data, encrypted_data_len, data, data_len)) \
    X(C_DecryptUpdate, (ck_session_handle_t session, unsigned char *encrypted_part, unsigned long encrypted_part_len, unsigned char *part, unsigned long *part_len), (session, encrypted_part, encrypted_part_len, part, part_len)) \
    X(C_DecryptFinal, (ck_session_handle_t session, unsigned char *last_part, unsigned long *last_part_len), (session, last_part, last_part_len)) \
    X(C_DigestInit, (ck_session_handle_t session, struct ck_mechanism *mechanism), (session, mechanism)) \
    X(C_Digest, (ck_session_handle_t session, unsigned char *data, unsigned long data_len, unsigned char *digest, unsigned long *digest_len), (session, data, data_len, digest, digest_len)) \
    X(C_DigestUpdate, (ck_session_handle_t session, unsigned char *part, unsigned long part_len), (session, part, part_len)) \
    X(C_DigestKey, (ck_session_handle_t session, ck_object_handle_t key), (session, key)) \
    X(C_DigestFinal, (ck_session_handle_t session, unsigned char *digest, unsigned long *digest_len), (session, digest, digest_len)) \
    X(C_SignInit, (ck_session_handle_t session, struct ck_mechanism *mechanism, ck_object_handle_t key), (session, mechanism, key)) \
    X(C_Sign, (ck_session_handle_t session, unsigned char *data, unsigned long data_len, unsigned char *signature, unsigned long *signature_len), (session, data, data_len, signature, signature_len)) \
    X(C_SignUpdate, (ck_session_handle_t session, unsigned char *part, unsigned long part_len), (session, part, part_len)) \
    X(C_SignFinal, (ck_session_handle_t session, unsigned char *signature, unsigned long *signature_len), (session, signature, signature_len)) \
    X(C_SignRecoverInit, (ck_session_handle_t session, struct ck_mechanism *mechanism, ck_object_handle_t key), (session, mechanism, key)) \
    X(C_SignRecover, (ck_session_handle_t session, unsigned char *data, unsigned long data_len, unsigned char *signature, unsigned long *signature_len), (session, data, data_len, signature, signature_len)) \
    X(C_VerifyInit, (ck_session_handle_t session, struct ck_mechanism *mechanism, ck_object_handle_t key), (session, mechanism, key)) \
    X(C_Verify, (ck_session_handle_t session, unsigned char *data, unsigned long data_len, unsigned char *signature, unsigned long signature_len), (session, data, data_len, signature, signature_len)) \
    X(C_VerifyUpdate, (ck_session_handle_t session, unsigned char *part, unsigned long part_len), (session, part, part_len)) \
    X(C_VerifyFinal, (ck_session_handle_t session, unsigned char *signature, unsigned long signature_len), (session, signature, signature_len)) \
    X(C_VerifyRecoverInit, (ck_session_handle_t session, struct ck_mechanism *mechanism, ck_object_handle_t key), (session, mechanism, key)) \
    X(C_VerifyRecover, (ck_session_handle_t session, unsigned char *signature, unsigned long signature_len, unsigned char *data, unsigned long *data_len), (session, signature, signature_len, data, data_len)) \
    X(C_DigestEncryptUpdate, (ck_session_handle_t session, unsigned char *part, unsigned long part_len, unsigned char *encrypted_part, unsigned long *encrypted_part_len), (session, part, part_len, encrypted_part, encrypted_part_len)) \
    X(C_DecryptDigestUpdate, (ck_session_handle_t session, unsigned char *encrypted_part, unsigned long encrypted_part_len, unsigned char *part, unsigned long *part_len), (session, encrypted_part, encrypted_part_len, part, part_len)) \
    X(C_SignEncryptUpdate, (ck_session_handle_t session, unsigned char *part, unsigned long part_len, unsigned char *encrypted_part, unsigned long *encrypted_part_len), (session, part, part_len, encrypted_part, encrypted_part_len)) \
    X(C_DecryptVerifyUpdate, (ck_session_handle_t session, unsigned char *encrypted_part, unsigned long encrypted_part_len, unsigned char *part, unsigned long *part_len), (session, encrypted_part, encrypted_part_len, part, part_len)) \
    X(C_GenerateKey, (ck_session_handle_t session, struct ck_mechanism *mechanism, struct ck_attribute *templ, unsigned long count, ck_object_handle_t *key), (session, mechanism, templ, count, key)) \
    X(C_GenerateKeyPair, (ck_session_handle_t session, struct ck_mechanism *mechanism, struct ck_attribute *public_key_template, unsigned long public_key_attribute_count, struct ck_attribute *private_key_template, unsigned long private_key_attribute_count, ck_object_handle_t *public_key, ck_object_handle_t *private_key), (session, mechanism, public_key_template, public_key_attribute_count, private_key_template, private_key_attribute_count, public_key, private_key)) \
    X(C_WrapKey, (ck_session_handle_t session, struct ck_mechanism *mechanism, ck_object_handle_t wrapping_key, ck_object_handle_t key, unsigned char *wrapped_key, unsigned long *wrapped_key_len), (session, mechanism, wrapping_key, key, wrapped_key, wrapped_key_len)) \
    X(C_UnwrapKey, (ck_session_handle_t session, struct ck_mechanism *mechanism, ck_object_handle_t unwrapping_key, unsigned char *wrapped_key, unsigned long wrapped_key_len, struct ck_attribute *templ, unsigned long attribute_count, ck_object_handle_t *key), (session, mechanism, unwrapping_key, wrapped_key, wrapped_key_len, templ, attribute_count, key)) \
    X(C_DeriveKey, (ck_session_handle_t session, struct ck_mechanism *mechanism, ck_object_handle_t base_key, struct ck_attribute *templ, unsigned long attribute_count, ck_object_handle_t *key), (session, mechanism, base_key, templ, attribute_count, key)) \
    X(C_SeedRandom, (ck_session_handle_t session, unsigned char *seed, unsigned long seed_len), (session, seed, seed_len)) \
    X(C_GenerateRandom, (ck_session_handle_t session, unsigned char *random_data, unsigned long random_len), (session, random_data, random_len)) \
    X(C_GetFunctionStatus, (ck_session_handle_t session), (session)) \
    X(C_CancelFunction, (ck_session_handle_t session), (session)) \
    X(C_WaitForSlotEvent, (ck_flags_t flags, ck_slot_id_t *slot, void *reserved), (flags, slot, reserved)) \

