/* Tests of the handle-path exports: compiled policies and authorization with them
 * (tc_policy_*, tc_authorize_answer, tc_try_authorize_answer), an answer's fields without a JSON
 * parser (tc_answer_fields), the server's whole answer (tc_answer_introspection), derived
 * checkers (tc_derive), tc_checker_info and tc_library_info. */

#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tests.h"

#define ALICE "a11ce000-0000-4000-8000-000000000001"
#define ALICE2 "a11ce000-0000-4000-8000-000000000002"
#define ID_URN "urn:globus:auth:identity:"
#define GROUP_URN "urn:globus:groups:id:"
#define G_MEMBER "11111111-1111-4111-8111-111111111111"
#define TEST_SCOPE "urn:globus:auth:scope:test:all"
#define OTHER_SCOPE "urn:globus:auth:scope:other:all"

static tc_checker *make(const char *extra) {
    char cfg[2048];
    snprintf(cfg, sizeof cfg,
             "{\"client_id\":\"test-client\",\"client_secret\":\"test-secret\","
             "\"expected_scopes\":[\"" TEST_SCOPE "\"],\"auth_url\":\"%s\",\"groups_url\":\"%s\"%s}",
             fake_url, fake_url, extra ? extra : "");
    tc_checker *c = NULL;
    char *err = NULL;
    tc_status st = tc_new(cfg, &c, &err);
    if (st != TC_OK) {
        printf("#   tc_new failed: %s %s\n", tc_status_name(st), err ? err : "");
        t_failed = 1;
    }
    tc_string_free(err);
    return c;
}

static tc_policy *policy(const char *request) {
    tc_policy *p = NULL;
    char *err = (char *)"untouched";
    tc_status st = tc_policy_new(request, &p, &err);
    if (st != TC_OK) {
        printf("#   tc_policy_new(%s): %s %s\n", request, tc_status_name(st), err ? err : "");
        t_failed = 1;
    } else if (err != NULL) {
        printf("#   tc_policy_new left out_error set on success\n");
        t_failed = 1;
    }
    return p;
}

/* A tc_str equals a C string (NULL: absent). */
static int str_is(tc_str s, const char *want) {
    if (!want)
        return s.ptr == NULL && s.len == 0;
    return s.ptr != NULL && s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

static int list_has(tc_str_list l, const char *want) {
    for (size_t i = 0; i < l.len; i++)
        if (str_is(l.items[i], want))
            return 1;
    return 0;
}

void test_policy_new(void) {
    tc_policy *p = policy("{\"allowed_principals\":[\"" ID_URN ALICE "\",\"" GROUP_URN G_MEMBER
                          "\",\"public\"],\"allow_public\":false}");
    REQUIRE(p != NULL);
    CHECK(tc_policy_len(p) == 3);
    size_t len = 0;
    const char *s = tc_policy_principal(p, 1, &len);
    CHECK(s != NULL && strcmp(s, GROUP_URN G_MEMBER) == 0 && len == strlen(s));
    CHECK(tc_policy_principal(p, 3, &len) == NULL && len == 0);
    CHECK(tc_policy_principal(p, TC_NO_MATCH, NULL) == NULL);
    tc_policy_free(p);
    /* bad input: an error code and document, no policy */
    const char *bad[] = {"", "[]", "{\"allowed_principals\":\"x\"}", "{\"allowed\":[]}",
                         "{\"allowed_principals\":[1]}", "{\"allowed_principals\":[\"a\\u0000b\"]}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tc_policy *q = (tc_policy *)&len;
        char *err = NULL;
        CHECK_STATUS(tc_policy_new(bad[i], &q, &err), TC_INVALID_ARGUMENT);
        CHECK(q == NULL);
        CHECK_ERROR_DOC(err, "TC_INVALID_ARGUMENT");
        tc_string_free(err);
    }
    tc_policy *q = NULL;
    CHECK_STATUS(tc_policy_new(NULL, &q, NULL), TC_INVALID_ARGUMENT);
    CHECK_STATUS(tc_policy_new("{}", NULL, NULL), TC_INVALID_ARGUMENT);
    char invalid_utf8[] = {'{', '"', (char)0xff, '"', ':', '1', '}', 0};
    CHECK_STATUS(tc_policy_new(invalid_utf8, &q, NULL), TC_INVALID_ARGUMENT);
    CHECK(tc_policy_len(NULL) == 0);
    CHECK(tc_policy_principal(NULL, 0, NULL) == NULL);
    tc_policy_free(NULL);
}

void test_authorize_answer(void) {
    tc_checker *c = make(NULL);
    REQUIRE(c != NULL);
    char tok[128];
    new_token(tok, sizeof tok, "authz",
              "{\"identity_set\":[\"" ALICE "\",\"" ALICE2 "\"],\"groups\":[\"" G_MEMBER "\"]}");
    tc_policy *by_group = policy("{\"allowed_principals\":[\"" ID_URN "nobody\",\"" GROUP_URN G_MEMBER "\"]}");
    tc_policy *by_id = policy("{\"allowed_principals\":[\"" GROUP_URN "other\",\"" ID_URN ALICE2 "\"]}");
    tc_policy *nobody = policy("{\"allowed_principals\":[\"" ID_URN "nobody\"]}");
    REQUIRE(by_group && by_id && nobody);
    const tc_answer *a = NULL;
    tc_answer_meta meta = {NULL, 0};
    size_t matched = 0;
    char *err = NULL;
    /* a miss: the try variant would block */
    CHECK_STATUS(tc_try_authorize_answer(c, tok, by_group, &a, &meta, &matched, &err), TC_WOULD_BLOCK);
    CHECK(a == NULL && matched == TC_NO_MATCH);
    CHECK_ERROR_DOC(err, "TC_WOULD_BLOCK");
    tc_string_free(err);
    /* blocking: introspection, then groups (only a group can decide) */
    counters before;
    REQUIRE(fake_counters(&before) == 0);
    CHECK_STATUS(tc_authorize_answer(c, tok, by_group, &a, &meta, &matched, &err), TC_OK);
    REQUIRE(a != NULL);
    CHECK(err == NULL);
    CHECK(matched == 1);
    CHECK(strcmp(tc_policy_principal(by_group, matched, NULL), GROUP_URN G_MEMBER) == 0);
    CHECK(strcmp(meta.source, "network") == 0);
    uint64_t id = tc_answer_id(a);
    tc_answer_free(a);
    /* now cached, groups included: the try variant answers with the same answer */
    CHECK_STATUS(tc_try_authorize_answer(c, tok, by_group, &a, &meta, &matched, NULL), TC_OK);
    REQUIRE(a != NULL);
    CHECK(tc_answer_id(a) == id && matched == 1 && strcmp(meta.source, "memory") == 0);
    tc_answer_free(a);
    counters after;
    REQUIRE(fake_counters(&after) == 0);
    CHECK(after.introspect - before.introspect == 1);
    CHECK(after.groups - before.groups == 1);
    /* by identity, in the identity set's order; no groups needed */
    CHECK_STATUS(tc_try_authorize_answer(c, tok, by_id, &a, NULL, &matched, NULL), TC_OK);
    CHECK(matched == 1);
    tc_answer_free(a);
    /* nobody matches: no answer, the error document, TC_NO_MATCH */
    a = (const tc_answer *)&meta;
    CHECK_STATUS(tc_authorize_answer(c, tok, nobody, &a, NULL, &matched, &err), TC_NOT_AUTHORIZED);
    CHECK(a == NULL && matched == TC_NO_MATCH);
    CHECK_ERROR_DOC(err, "TC_NOT_AUTHORIZED");
    tc_string_free(err);
    /* a failed check fails the authorization alike */
    CHECK_STATUS(tc_authorize_answer(c, "tok-inactive", by_id, &a, NULL, &matched, NULL), TC_INACTIVE_TOKEN);
    CHECK(a == NULL);
    /* NULL arguments; out_meta, out_matched and out_error are optional */
    CHECK_STATUS(tc_authorize_answer(c, tok, NULL, &a, NULL, NULL, &err), TC_INVALID_ARGUMENT);
    CHECK_ERROR_DOC(err, "TC_INVALID_ARGUMENT");
    tc_string_free(err);
    CHECK_STATUS(tc_authorize_answer(NULL, tok, by_id, &a, NULL, NULL, NULL), TC_INVALID_ARGUMENT);
    CHECK_STATUS(tc_try_authorize_answer(c, NULL, by_id, &a, NULL, NULL, NULL), TC_INVALID_ARGUMENT);
    CHECK_STATUS(tc_try_authorize_answer(c, tok, by_id, NULL, NULL, NULL, NULL), TC_INVALID_ARGUMENT);
    CHECK_STATUS(tc_try_authorize_answer(c, tok, by_id, &a, NULL, NULL, NULL), TC_OK);
    tc_answer_free(a);
    tc_policy_free(by_group);
    tc_policy_free(by_id);
    tc_policy_free(nobody);
    tc_free(c);
}

void test_answer_fields(void) {
    tc_checker *c = make(NULL);
    REQUIRE(c != NULL);
    char tok[128];
    /* escapes and non-ASCII in the strings: the fields are unescaped UTF-8 */
    new_token(tok, sizeof tok, "fields",
              "{\"identity_set\":[\"" ALICE "\",\"" ALICE2 "\"],\"username\":\"alice@example.org\","
              "\"name\":\"Al \\\"Q\\\" \\\\ Z\\u00e9\",\"email\":null,\"aud\":[\"test-client\",\"x\"]}");
    const tc_answer *a = NULL;
    CHECK_STATUS(tc_check_answer(c, tok, &a, NULL, NULL), TC_OK);
    REQUIRE(a != NULL);
    const tc_fields *f = tc_answer_fields(a);
    REQUIRE(f != NULL);
    CHECK(f->active && f->has_identity_set && f->has_exp && f->exp > 0);
    CHECK(str_is(f->sub, ALICE));
    CHECK(str_is(f->username, "alice@example.org"));
    CHECK(str_is(f->name, "Al \"Q\" \\ Z\xc3\xa9"));
    CHECK(str_is(f->client_id, "test-client") || f->client_id.ptr != NULL);
    CHECK(f->identities.len == 2 && str_is(f->identities.items[0], ALICE) &&
          str_is(f->identities.items[1], ALICE2));
    CHECK(list_has(f->scopes, TEST_SCOPE) && list_has(f->scopes, "openid"));
    CHECK(f->aud.len == 2 && list_has(f->aud, "x"));
    /* the same pointer every time, from any reference to the answer */
    const tc_answer *b = NULL;
    CHECK_STATUS(tc_try_check_answer(c, tok, &b, NULL, NULL), TC_OK);
    CHECK(tc_answer_fields(b) == f);
    tc_answer_free(a);
    CHECK(str_is(tc_answer_fields(b)->sub, ALICE)); /* lives as long as one reference does */
    tc_answer_free(b);
    CHECK(tc_answer_fields(NULL) == NULL);
    tc_free(c);
}

void test_answer_introspection(void) {
    const tc_answer *a = NULL;
    CHECK_STATUS(tc_check_answer(NULL, "tok-valid", &a, NULL, NULL), TC_INVALID_ARGUMENT);
    tc_checker *c = make(NULL);
    REQUIRE(c != NULL);
    char tok[128];
    new_token(tok, sizeof tok, "whole", "{\"identity_set\":[\"" ALICE "\"]}");
    CHECK_STATUS(tc_check_answer(c, tok, &a, NULL, NULL), TC_OK);
    REQUIRE(a != NULL);
    char *json = NULL;
    CHECK_STATUS(tc_answer_introspection(a, &json), TC_OK);
    /* what the library reads, in the server's shape, and what it does not (the fake sends
     * token_type and iss) */
    CHECK_HAS(json, "\"active\":true");
    CHECK_HAS(json, "\"scope\":\"" TEST_SCOPE " openid\"");
    CHECK_HAS(json, "\"identity_set\":[\"" ALICE "\"]");
    CHECK_HAS(json, "\"token_type\":\"Bearer\"");
    CHECK_HAS(json, "\"iss\":");
    CHECK_LACKS(json, tok);
    tc_string_free(json);
    CHECK_STATUS(tc_answer_introspection(NULL, &json), TC_INVALID_ARGUMENT);
    CHECK_ERROR_DOC(json, "TC_INVALID_ARGUMENT");
    tc_string_free(json);
    CHECK_STATUS(tc_answer_introspection(a, NULL), TC_INVALID_ARGUMENT);
    tc_answer_free(a);
    tc_free(c);
}

void test_derive(void) {
    tc_checker *parent = make(NULL);
    REQUIRE(parent != NULL);
    char tok[128];
    new_token(tok, sizeof tok, "derive", "{\"scope\":\"" OTHER_SCOPE "\"}");
    /* the parent wants TEST_SCOPE: the error names the token's scopes */
    char *json = NULL;
    CHECK_STATUS(tc_check(parent, tok, &json), TC_INSUFFICIENT_SCOPE);
    CHECK_HAS(json, "\"token_scopes\":[\"" OTHER_SCOPE "\"]");
    tc_string_free(json);
    counters before;
    REQUIRE(fake_counters(&before) == 0);
    tc_checker *d = NULL;
    char *err = (char *)"untouched";
    CHECK_STATUS(tc_derive(parent, "{\"expected_scopes\":[\"" OTHER_SCOPE "\"]}", &d, &err), TC_OK);
    REQUIRE(d != NULL);
    CHECK(err == NULL);
    /* the derived checker passes the token from the shared cache: no new introspection */
    CHECK_STATUS(tc_check(d, tok, &json), TC_OK);
    CHECK_HAS(json, "\"source\":\"memory\"");
    tc_string_free(json);
    counters after;
    REQUIRE(fake_counters(&after) == 0);
    CHECK(after.introspect == before.introspect);
    /* its info says its rules, the parent's the parent's */
    CHECK_STATUS(tc_checker_info(d, &json), TC_OK);
    CHECK_HAS(json, "\"expected_scopes\":[\"" OTHER_SCOPE "\"]");
    tc_string_free(json);
    /* independent lifetimes: the parent goes first, the derived one goes on (and fetches) */
    tc_free(parent);
    char tok2[128];
    new_token(tok2, sizeof tok2, "derive2", "{\"scope\":\"" OTHER_SCOPE "\"}");
    CHECK_STATUS(tc_check(d, tok2, &json), TC_OK);
    CHECK_HAS(json, "\"source\":\"network\"");
    tc_string_free(json);
    /* only the rules may change */
    tc_checker *e = (tc_checker *)&json;
    CHECK_STATUS(tc_derive(d, "{\"auth_url\":\"http://127.0.0.1:1\"}", &e, &err), TC_INVALID_CONFIG);
    CHECK(e == NULL);
    CHECK_HAS(err, "auth_url");
    tc_string_free(err);
    CHECK_STATUS(tc_derive(d, "{\"expected_scopes\":[]}", &e, NULL), TC_INVALID_CONFIG);
    CHECK_STATUS(tc_derive(d, "not json", &e, NULL), TC_INVALID_CONFIG);
    CHECK_STATUS(tc_derive(NULL, "{}", &e, NULL), TC_INVALID_ARGUMENT);
    CHECK_STATUS(tc_derive(d, NULL, &e, NULL), TC_INVALID_ARGUMENT);
    CHECK_STATUS(tc_derive(d, "{}", NULL, NULL), TC_INVALID_ARGUMENT);
    /* a derived checker of a derived checker, with nothing changed */
    CHECK_STATUS(tc_derive(d, "{}", &e, NULL), TC_OK);
    tc_free(e);
    tc_free(d);
}

void test_checker_and_library_info(void) {
    tc_checker *c = make(",\"fetch_groups\":\"eager\"");
    REQUIRE(c != NULL);
    char *json = NULL;
    CHECK_STATUS(tc_checker_info(c, &json), TC_OK);
    CHECK_HAS(json, "\"client_id\":\"test-client\"");
    CHECK_HAS(json, "\"expected_scopes\":[\"" TEST_SCOPE "\"]");
    CHECK_HAS(json, "\"fetch_groups\":\"eager\"");
    CHECK_HAS(json, "\"scope_match\":\"any\"");
    CHECK_LACKS(json, "test-secret");
    tc_string_free(json);
    CHECK_STATUS(tc_checker_info(NULL, &json), TC_INVALID_ARGUMENT);
    CHECK_ERROR_DOC(json, "TC_INVALID_ARGUMENT");
    tc_string_free(json);
    CHECK_STATUS(tc_checker_info(c, NULL), TC_INVALID_ARGUMENT);
    tc_free(c);
    CHECK_STATUS(tc_library_info(&json), TC_OK);
    CHECK_HAS(json, "\"TC_OK\":0");
    CHECK_HAS(json, "\"TC_WOULD_BLOCK\":11");
    CHECK_HAS(json, "\"stale\"");
    CHECK_HAS(json, "\"cache_config\"");
    CHECK_HAS(json, "\"rule_keys\":[");
    char want[64];
    CHECK_HAS(json, "\"log_levels\":{");
    snprintf(want, sizeof want, "\"warn\":%d", (int)TC_LOG_WARN);
    CHECK_HAS(json, want);
    snprintf(want, sizeof want, "\"debug\":%d", (int)TC_LOG_DEBUG);
    CHECK_HAS(json, want);
    snprintf(want, sizeof want, "\"abi_version\":%u", (unsigned)TOKENCHECKER_ABI_VERSION);
    CHECK_HAS(json, want);
    tc_string_free(json);
    CHECK_STATUS(tc_library_info(NULL), TC_INVALID_ARGUMENT);
}
