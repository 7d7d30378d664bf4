/* SPDX-License-Identifier: Apache-2.0 */
/* keeps ddsm-test-support non-empty */
typedef int ddsm_test_support_empty;
