#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Regenerate faultp11_funcs.h from the system pkcs11.h: python3 gen.py > faultp11_funcs.h"""
import re
import sys

h = open('/usr/include/p11-kit-1/p11-kit/pkcs11.h').read()
st = h[h.index('struct ck_function_list\n{'):]
st = st[:st.index('};')]
order = re.findall(r'CK_(C_\w+) (C_\w+);', st)
decls = {m.group(1): ' '.join(m.group(2).split())
         for m in re.finditer(r'_CK_DECLARE_FUNCTION \((C_\w+),\s*\((.*?)\)\);', h, re.S)}
print("/* Generated from p11-kit's pkcs11.h by gen.py: every v2.40 function, in function-list order.")
print(" * X(name, (parameters), (arguments)) */")
print("#define FAULT_FUNCS(X) \\")
for _, name in order:
    if name == 'C_GetFunctionList':
        continue  # never faulted: the wrapper's own entry point
    params = decls[name]
    args = [re.findall(r'(\w+)\s*$', p.strip())[0] for p in params.split(',') if p.strip() != 'void']
    print(f'    X({name}, ({params}), ({", ".join(args)})) \\')
print()
