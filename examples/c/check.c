/*
 * check.c: checks bearer tokens with tokenchecker, one per line of standard input.
 *
 *   check [CONFIG_FILE]
 *
 * The configuration (JSON, see the README) comes from CONFIG_FILE, or else from the environment:
 * TC_CONFIG (the JSON itself) or TC_CONFIG_FILE (a path). For every non-empty input line it prints
 * one line: "<line number> <status name> <result or error document>". The token itself is never
 * printed. Exit status: 0 when every token was valid, 1 when one was not, 2 on a usage or
 * configuration error.
 *
 * Build against an installed tokenchecker:
 *   cc -o check check.c $(pkg-config --cflags --libs tokenchecker)          (shared)
 *   cc -o check check.c $(pkg-config --cflags --libs tokenchecker-static)   (static)
 */
#define _POSIX_C_SOURCE 200809L /* strdup */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tokenchecker.h>

/* Reads a whole file into a NUL-terminated buffer (free it), NULL on error. */
static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
        if (len + 1 == cap) {
            char *bigger = realloc(buf, cap * 2);
            if (bigger == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    int failed = ferror(f);
    fclose(f);
    if (buf == NULL || failed) {
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

int main(int argc, char **argv) {
    if (argc > 2 || (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))) {
        fprintf(stderr, "usage: %s [CONFIG_FILE] < tokens  (or TC_CONFIG / TC_CONFIG_FILE in the environment)\n",
                argv[0]);
        return 2;
    }
    if (tc_abi_version() != TOKENCHECKER_ABI_VERSION) {
        fprintf(stderr, "built for tokenchecker ABI %d, but the library (%s) has ABI %u\n",
                TOKENCHECKER_ABI_VERSION, tc_version(), (unsigned)tc_abi_version());
        return 2;
    }

    const char *path = argc == 2 ? argv[1] : getenv("TC_CONFIG_FILE");
    char *config = NULL;
    if (path != NULL) {
        config = read_file(path);
        if (config == NULL) {
            perror(path);
            return 2;
        }
    } else if (getenv("TC_CONFIG") != NULL) {
        config = strdup(getenv("TC_CONFIG"));
    }
    if (config == NULL) {
        fprintf(stderr, "no configuration: give CONFIG_FILE, TC_CONFIG or TC_CONFIG_FILE\n");
        return 2;
    }

    tc_checker *checker = NULL;
    char *err = NULL;
    tc_status st = tc_new(config, &checker, &err);
    free(config);
    if (st != TC_OK) {
        fprintf(stderr, "tc_new: %s %s\n", tc_status_name(st), err ? err : "");
        tc_string_free(err);
        return 2;
    }

    int all_valid = 1;
    char line[20000]; /* longer than the default max_token_bytes (16384) */
    for (unsigned long n = 1; fgets(line, sizeof line, stdin) != NULL; n++) {
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            /* Too long for the buffer: skip the rest of the line, report it as invalid. */
            int c;
            while ((c = getchar()) != EOF && c != '\n')
                ;
            printf("%lu %s {\"error\":{\"code\":\"TC_INVALID_ARGUMENT\",\"message\":\"line too long\"}}\n", n,
                   tc_status_name(TC_INVALID_ARGUMENT));
            all_valid = 0;
            continue;
        }
        /* Surrounding white space (a CRLF line end, an indented line) is not part of the token. */
        while (len > 0 && strchr(" \t\r\n", line[len - 1]) != NULL)
            line[--len] = '\0';
        const char *token = line + strspn(line, " \t");
        if (*token == '\0')
            continue;
        char *json = NULL;
        st = tc_check(checker, token, &json);
        printf("%lu %s %s\n", n, tc_status_name(st), json ? json : "");
        fflush(stdout);
        tc_string_free(json);
        if (st != TC_OK)
            all_valid = 0;
    }
    memset(line, 0, sizeof line); /* don't leave the last token lying around */
    tc_free(checker);
    return all_valid ? 0 : 1;
}
