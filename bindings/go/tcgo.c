// The binding's C side: one cgo call per operation, and the trampolines from the library's
// callbacks to the exported Go functions (tcgoComplete in check.go, tcgoLog in logger.go).
#define _DEFAULT_SOURCE // explicit_bzero
#include <stdlib.h>
#include <string.h>
#include "tcgo.h"

extern void tcgoComplete(uintptr_t handle, tc_status status, char *json);
extern void tcgoLog(tc_log_level level, char *message);

static void tcgo_trampoline(void *user_data, tc_status status, char *json) {
	tcgoComplete((uintptr_t)user_data, status, json);
}

// Runs op with the token, which comes as Go bytes with a length: it is NUL-terminated here on
// the C stack (no C.CString: no malloc, no free; the copy is wiped afterwards). arg is op's
// request, scope or NULL; policy TCGO_AUTHORIZE's; handle the async ops' user_data. known is
// the binding's memo's table, four words per set, the first two the ids of the answers it
// holds (memo.go): TCGO_CHECK and
// TCGO_AUTHORIZE release a reference to one of those here, saving Go a cgo call (NULL: they
// always keep it, with the answer's fields).
tcgo_result tcgo_call(int op, const tc_checker *c, const char *token, size_t token_len,
                      const char *arg, const tc_policy *policy, uintptr_t handle,
                      const uint64_t *known, uint64_t set_mask) {
	char on_stack[1024];
	char *tok = token_len < sizeof on_stack ? on_stack : malloc(token_len + 1);
	if (tok == NULL) {
		abort(); // as C.CString would
	}
	if (token_len > 0) {
		memcpy(tok, token, token_len);
	}
	tok[token_len] = 0;
	tcgo_result r = {0};
	r.matched = TC_NO_MATCH;
	void *h = (void *)handle;
	switch (op) {
	case TCGO_CHECK:
	case TCGO_AUTHORIZE: {
		tc_answer_meta meta = {0};
		if (op == TCGO_CHECK) {
			r.status = tc_try_check_answer(c, tok, &r.answer, &meta, &r.doc);
		} else {
			r.status = tc_try_authorize_answer(c, tok, policy, &r.answer, &meta, &r.matched, &r.doc);
		}
		if (r.answer == NULL) {
			break;
		}
		r.id = tc_answer_id(r.answer);
		r.source = meta.source;
		r.age_ms = meta.age_ms;
		const uint64_t *set = known == NULL ? NULL : known + 4 * (r.id & set_mask);
		if (set != NULL && (__atomic_load_n(&set[0], __ATOMIC_ACQUIRE) == r.id ||
		                    __atomic_load_n(&set[1], __ATOMIC_ACQUIRE) == r.id)) {
			tc_answer_free(r.answer);
			r.answer = NULL;
		} else {
			r.fields = tc_answer_fields(r.answer);
		}
		break;
	}
	case TCGO_TRY_CHECK:
		r.status = tc_try_check(c, tok, &r.doc);
		break;
	case TCGO_TRY_AUTHORIZE:
		r.status = tc_try_authorize(c, tok, arg, &r.doc);
		break;
	case TCGO_CHECK_ASYNC:
		r.status = tc_check_async(c, tok, tcgo_trampoline, h);
		break;
	case TCGO_AUTHORIZE_ASYNC:
		r.status = tc_authorize_async(c, tok, arg, tcgo_trampoline, h);
		break;
	case TCGO_DEPENDENT_TOKEN_ASYNC:
		r.status = tc_dependent_token_async(c, tok, arg, tcgo_trampoline, h);
		break;
	case TCGO_PURGE:
		r.status = tc_purge(c, tok);
		break;
	case TCGO_PURGE_IDENTITY:
		r.status = tc_purge_identity(c, tok);
		break;
	}
	explicit_bzero(tok, token_len);
	if (tok != on_stack) {
		free(tok);
	}
	r.doc_len = r.doc == NULL ? 0 : strlen(r.doc);
	return r;
}

static void tcgo_log_trampoline(void *user_data, tc_log_level level, const char *message) {
	(void)user_data;
	tcgoLog(level, (char *)message);
}

// Sends the library's log messages at level and more severe to tcgoLog (TC_LOG_OFF: nowhere).
tc_status tcgo_set_logger(uint32_t level) {
	return tc_set_logger(level == TC_LOG_OFF ? NULL : tcgo_log_trampoline, NULL, level);
}
