// The binding's C helpers (tcgo.c), called through cgo.
#ifndef TCGO_H
#define TCGO_H

#include <stddef.h>
#include <stdint.h>
#include "tokenchecker.h"

enum { TCGO_CHECK, TCGO_AUTHORIZE, TCGO_TRY_CHECK, TCGO_TRY_AUTHORIZE, TCGO_CHECK_ASYNC,
       TCGO_AUTHORIZE_ASYNC, TCGO_DEPENDENT_TOKEN_ASYNC, TCGO_PURGE, TCGO_PURGE_IDENTITY };

// What tcgo_call's op gave.
typedef struct {
	tc_status status;
	// TCGO_CHECK, TCGO_AUTHORIZE: a reference to the answer for the caller (NULL when it was
	// released here, as one the memo holds), its fields (while it lives), id, source and age,
	// and the index of the policy's principal that matched (TC_NO_MATCH for none).
	const tc_answer *answer;
	const tc_fields *fields;
	uint64_t id;
	const char *source;
	uint64_t age_ms;
	size_t matched;
	char *doc; // a result or error document, for the caller to release
	size_t doc_len;
} tcgo_result;

tcgo_result tcgo_call(int op, const tc_checker *c, const char *token, size_t token_len,
                      const char *arg, const tc_policy *policy, uintptr_t handle,
                      const uint64_t *known, uint64_t set_mask);

tc_status tcgo_set_logger(uint32_t level);

#endif
