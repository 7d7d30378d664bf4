/* The few PKCS#11 3.0 definitions the system header (p11-kit's, v2.40) lacks, copied by value from
 * the OASIS PKCS#11 3.0 specification. Each is guarded so that a newer system header wins. */
#ifndef DDSM_PKCS11_COMPAT_H
#define DDSM_PKCS11_COMPAT_H

#include <p11-kit/pkcs11.h>

#ifndef CKA_UNIQUE_ID
#define CKA_UNIQUE_ID 0x00000004UL
#endif
#ifndef CKM_SP800_108_COUNTER_KDF
#define CKM_SP800_108_COUNTER_KDF 0x000003acUL
#endif
/* A 3.0 header defines CKF_INTERFACE_FORK_SAFE together with CK_INTERFACE. */
#ifndef CKF_INTERFACE_FORK_SAFE
#define CKF_INTERFACE_FORK_SAFE 0x00000001UL
typedef struct CK_INTERFACE {
    CK_CHAR *pInterfaceName;
    CK_VOID_PTR pFunctionList;
    CK_FLAGS flags;
} CK_INTERFACE;
typedef CK_INTERFACE *CK_INTERFACE_PTR;
typedef CK_INTERFACE_PTR *CK_INTERFACE_PTR_PTR;
#endif

typedef CK_RV (*ddsm_C_GetInterfaceList_fn)(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount);
typedef CK_RV (*ddsm_C_GetInterface_fn)(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
                                        CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags);

#endif
