#define _POSIX_C_SOURCE 200809L

#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int t_failed;

void t_diag(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    printf("#   %s:%d: ", file, line);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* ---- JSON substring helpers --------------------------------------------------------- */

int json_has(const char *json, const char *needle) {
    return json != NULL && strstr(json, needle) != NULL;
}

/* Skips the JSON string starting at the quote p; returns the char after its closing quote. */
static const char *skip_string(const char *p) {
    for (p++; *p && *p != '"'; p++)
        if (*p == '\\' && p[1])
            p++;
    return *p ? p + 1 : p;
}

const char *json_member(const char *json, const char *key) {
    const char *p = json ? strchr(json, '{') : NULL;
    if (!p)
        return NULL;
    size_t klen = strlen(key);
    int depth = 0;
    for (; *p; p++) {
        if (*p == '"') {
            const char *end = skip_string(p);
            if (depth == 1 && *end == ':' && (size_t)(end - p) == klen + 2 &&
                strncmp(p + 1, key, klen) == 0)
                return end + 1;
            p = end - 1;
        } else if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            if (--depth == 0)
                break;
        }
    }
    return NULL;
}

long json_int(const char *json, const char *key) {
    const char *p = json_member(json, key);
    if (!p || *p < '0' || *p > '9')
        return -1;
    return strtol(p, NULL, 10);
}

char *json_str(const char *json, const char *key, char *buf, size_t n) {
    const char *p = json_member(json, key);
    if (!p || *p != '"' || n == 0)
        return NULL;
    p++;
    size_t i = 0;
    while (p[i] && p[i] != '"' && i + 1 < n) {
        buf[i] = p[i];
        i++;
    }
    buf[i] = '\0';
    return buf;
}

/* ---- fake-globus process -------------------------------------------------------------- */

char fake_url[256];
static int fake_port;
static pid_t fake_pid = -1;
static int fake_stdin = -1;  /* write end of the fake's stdin: it exits on EOF */
static int fake_stdout = -1; /* read end of its stdout */

void fake_stop(void) {
    if (fake_pid > 0) {
        kill(fake_pid, SIGTERM);
        waitpid(fake_pid, NULL, 0);
        fake_pid = -1;
    }
    if (fake_stdin >= 0)
        close(fake_stdin);
    if (fake_stdout >= 0)
        close(fake_stdout);
    fake_stdin = fake_stdout = -1;
}

void fake_start(const char *binary) {
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) {
        perror("pipe");
        exit(2);
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        dup2(in[0], STDIN_FILENO);
        dup2(out[1], STDOUT_FILENO);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execl(binary, binary, "--exit-on-stdin-eof", (char *)NULL);
        fprintf(stderr, "cannot exec %s: %s\n", binary, strerror(errno));
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    fake_pid = pid;
    fake_stdin = in[1];
    fake_stdout = out[0];
    atexit(fake_stop);

    /* Read the first line, FAKE_GLOBUS_URL=http://127.0.0.1:PORT, within 30 s. */
    char line[256];
    size_t len = 0;
    double deadline = now_ms() + 30000;
    while (len + 1 < sizeof line && (len == 0 || line[len - 1] != '\n')) {
        struct pollfd pfd = {fake_stdout, POLLIN, 0};
        int left = (int)(deadline - now_ms());
        if (left <= 0 || poll(&pfd, 1, left) <= 0)
            break;
        ssize_t r = read(fake_stdout, line + len, 1);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    line[len] = '\0';
    const char *prefix = "FAKE_GLOBUS_URL=";
    if (strncmp(line, prefix, strlen(prefix)) != 0) {
        fprintf(stderr, "fake-globus did not announce its URL (got \"%s\")\n", line);
        exit(2);
    }
    line[strcspn(line, "\r\n")] = '\0';
    snprintf(fake_url, sizeof fake_url, "%s", line + strlen(prefix));
    const char *colon = strrchr(fake_url, ':');
    fake_port = colon ? atoi(colon + 1) : 0;
    if (fake_port <= 0) {
        fprintf(stderr, "bad fake URL %s\n", fake_url);
        exit(2);
    }
}

/* ---- HTTP/1.1 client ------------------------------------------------------------------ */

static int send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Decodes a chunked body in place; returns its length. */
static size_t dechunk(char *body) {
    char *in = body, *out = body;
    for (;;) {
        char *end;
        unsigned long size = strtoul(in, &end, 16);
        char *data = strstr(end, "\r\n");
        if (!data || size == 0)
            break;
        data += 2;
        memmove(out, data, size);
        out += size;
        in = data + size + 2; /* skip the CRLF after the chunk */
    }
    *out = '\0';
    return (size_t)(out - body);
}

int http_request(const char *method, const char *path, const char *body, char **out_body) {
    if (out_body)
        *out_body = NULL;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)fake_port);
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    size_t blen = body ? strlen(body) : 0;
    char head[1024];
    int hlen = snprintf(head, sizeof head,
                        "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
                        "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                        method, path, fake_port, blen);
    if (hlen < 0 || (size_t)hlen >= sizeof head || send_all(fd, head, (size_t)hlen) != 0 ||
        (blen && send_all(fd, body, blen) != 0)) {
        close(fd);
        return -1;
    }
    /* Connection: close, so the answer ends at EOF. */
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1024 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    int status = -1;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
        free(buf);
        return -1;
    }
    char *sep = strstr(buf, "\r\n\r\n");
    char *content = sep ? sep + 4 : buf + len;
    if (sep) {
        *sep = '\0';
        for (char *h = buf; *h; h++) /* lower-case the header block for the search below */
            if (*h >= 'A' && *h <= 'Z')
                *h = (char)(*h - 'A' + 'a');
        if (strstr(buf, "transfer-encoding: chunked"))
            dechunk(content);
    }
    if (out_body) {
        *out_body = strdup(content);
    }
    free(buf);
    return status;
}

static int control(const char *method, const char *path, const char *body) {
    char *answer = NULL;
    int status = http_request(method, path, body, &answer);
    if (status != 200) {
        printf("# control %s %s -> %d %s\n", method, path, status, answer ? answer : "");
        free(answer);
        return -1;
    }
    free(answer);
    return 0;
}

int fake_counters(counters *c) {
    char *body = NULL;
    int status = http_request("GET", "/_control/counters", NULL, &body);
    if (status != 200 || !body) {
        free(body);
        return -1;
    }
    c->introspect = json_int(body, "introspect");
    c->dependent_token = json_int(body, "dependent_token");
    c->groups = json_int(body, "groups");
    free(body);
    return (c->introspect < 0 || c->dependent_token < 0 || c->groups < 0) ? -1 : 0;
}

int fake_reset(void) { return control("POST", "/_control/reset", "{}"); }
int fake_add_tokens(const char *json) { return control("POST", "/_control/tokens", json); }
int fake_set_fault(const char *json) { return control("POST", "/_control/faults", json); }
int fake_clear_faults(void) { return control("DELETE", "/_control/faults", NULL); }

int fake_remove_token(const char *token) {
    char path[512];
    snprintf(path, sizeof path, "/_control/tokens/%s", token);
    return control("DELETE", path, NULL);
}

void new_token(char *buf, size_t n, const char *tag, const char *spec) {
    static int serial;
    snprintf(buf, n, "c%d-%d-%s", (int)getpid(), ++serial, tag);
    size_t len = strlen(buf) + strlen(spec) + 16;
    char *body = malloc(len);
    snprintf(body, len, "{\"%s\":%s}", buf, spec);
    if (fake_add_tokens(body) != 0) {
        printf("# cannot add token %s\n", buf);
        t_failed = 1;
    }
    free(body);
}

/* ---- async callbacks ------------------------------------------------------------------ */

void waiter_init(waiter *w) {
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->creator = pthread_self();
}

void waiter_destroy(waiter *w) {
    tc_string_free(w->json);
    w->json = NULL;
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

void waiter_cb(void *user_data, tc_status status, char *json) {
    waiter *w = user_data;
    pthread_mutex_lock(&w->mu);
    if (pthread_equal(pthread_self(), w->creator))
        w->on_caller = 1;
    if (w->calls == 0) {
        w->status = status;
        w->json = json;
    } else {
        tc_string_free(json);
    }
    w->calls++;
    if (status == TC_OK)
        w->ok++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int waiter_wait(waiter *w, int calls, int timeout_ms) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    int rc = 0;
    pthread_mutex_lock(&w->mu);
    while (w->calls < calls && rc == 0)
        rc = pthread_cond_timedwait(&w->cv, &w->mu, &until);
    int done = w->calls >= calls;
    pthread_mutex_unlock(&w->mu);
    return done ? 0 : -1;
}

int waiter_calls(waiter *w) {
    pthread_mutex_lock(&w->mu);
    int n = w->calls;
    pthread_mutex_unlock(&w->mu);
    return n;
}
