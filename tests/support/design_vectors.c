/* SPDX-License-Identifier: Apache-2.0 */
#include "design_vectors.h"

const struct design_vector design_vectors[DESIGN_VECTORS_COUNT] = {
    {VEC_A_ID, VEC_A_PATH, 0, VEC_A_KEY0},
    {VEC_A_ID, VEC_A_PATH_ALT, 1, VEC_A_KEY1},
    {VEC_B_ID, VEC_B_PATH, 0, VEC_B_KEY0},
};
