/* SPDX-License-Identifier: Apache-2.0 */
#include "exiting.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "ddsm/log.h"

static atomic_bool g_exiting;
static pthread_once_t g_watch_once = PTHREAD_ONCE_INIT;

static void mark_exiting(void)
{
    atomic_store(&g_exiting, true);
}

static void register_handler(void)
{
    /* Without the handler the module behaves as before (it calls the backend at exit too). */
    if (atexit(mark_exiting) != 0)
        ddsm_log(DDSM_LOG_WARN, "cannot register the exit handler: the backend is finalised "
                                "even from a host's exit handlers");
}

void ddsm_exiting_watch(void)
{
    pthread_once(&g_watch_once, register_handler);
}

bool ddsm_exiting(void)
{
    return atomic_load(&g_exiting);
}
