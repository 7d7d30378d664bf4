/* SPDX-License-Identifier: Apache-2.0 */
/* Pieces that ddsmctl and ddsm-bench both need, with the same behaviour in both. */
#ifndef DDSM_TOOL_H
#define DDSM_TOOL_H

#include <stddef.h>
#include <stdio.h>

/* Write text to f as a JSON string: quotes, backslashes and control characters escaped (\n, \r,
 * \t by name, the others and DEL as \u00XX); invalid UTF-8 becomes U+FFFD, so the output is
 * always valid JSON. */
void tool_json_str(FILE *f, const char *text);

/* What tool_pin_prompt_secret read. */
typedef enum tool_pin_prompt {
    TOOL_PIN_OK,
    TOOL_PIN_NO_TERMINAL, /* the terminal settings cannot be read (errno says why) */
    TOOL_PIN_TOO_LONG,    /* more than cap bytes were typed */
    TOOL_PIN_EMPTY,       /* an empty line, or end of input */
} tool_pin_prompt;

/* Ask on stderr for the HSM user PIN of token_label and read one line from stdin (a terminal)
 * with echo off, byte by byte with read(2) so that no stdio buffer keeps a copy, into buf (a
 * secret: at least cap bytes, the caller's secure memory; not NUL-terminated), a trailing '\r'
 * dropped. The terminal is restored before returning, and also when SIGINT, SIGTERM or SIGHUP
 * arrives meanwhile (the signal is then delivered as before). *len is set on TOOL_PIN_OK. */
tool_pin_prompt tool_pin_prompt_secret(const char *token_label, char *buf, size_t cap,
                                       size_t *len);

#endif
