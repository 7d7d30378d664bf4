/* SPDX-License-Identifier: Apache-2.0 */
/* The module's clock. Nothing in module/src below this header. */
#ifndef DDSM_CLOCK_H
#define DDSM_CLOCK_H

#include <stdint.h>

int64_t ddsm_now_ms(void); /* monotonic clock */
int64_t ddsm_now_us(void); /* the same clock in microseconds (grace windows) */
void ddsm_sleep_us(long us); /* sleeps that long, signals or not */

#endif
