// The binding's C helpers (tcgo.c), called through cgo.
#ifndef TCGO_H
#define TCGO_H

#include <stddef.h>
#include <stdint.h>
#include "tokenchecker.h"

enum { TCGO_ANSWER, TCGO_TRY_CHECK, TCGO_TRY_AUTHORIZE, TCGO_CHECK_ASYNC, TCGO_AUTHORIZE_ASYNC,
       TCGO_DEPENDENT_TOKEN_ASYNC, TCGO_PURGE, TCGO_PURGE_IDENTITY };

// What tcgo_call's op gave.
typedef struct {
	tc_status status;
	const tc_answer *answer; // TCGO_ANSWER: a reference for the caller, NULL when released here
	uint64_t id;             // the answer's id
	const char *text;        // the answer's text (while answer lives), and tc_answer_meta
	const char *source;
	size_t text_len, source_len;
	uint64_t age_ms;
	char *doc; // a result or error document, for the caller to release
	size_t doc_len;
} tcgo_result;

tcgo_result tcgo_call(int op, const tc_checker *c, const char *token, size_t token_len,
                      const char *arg, uintptr_t handle, const uint64_t *known, uint64_t set_mask);

tc_status tcgo_set_logger(uint32_t level);

#endif
