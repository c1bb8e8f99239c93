/* Test cases defined outside test_tokenchecker.c, run by its runner. */
#ifndef TC_TESTS_H
#define TC_TESTS_H

/* test_fork.c */
void test_fork_while_fetching(void);
void test_fork_created_before_any_use(void);
void test_fork_async_in_child(void);
void test_call_timeout_bounds_authorize(void);
void test_call_timeout_config(void);

/* test_handles.c */
void test_policy_new(void);
void test_authorize_answer(void);
void test_answer_fields(void);
void test_answer_introspection(void);
void test_derive(void);
void test_checker_and_library_info(void);

#endif
