#include "core.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PORT 8080

static volatile sig_atomic_t stopping;

const char *core_version(void) { return "core 1.0"; }

static void on_term(int sig) {
    (void)sig;
    stopping = 1;
}

static int check(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(PORT)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) return 1;
    const char *req = "GET /health HTTP/1.0\r\n\r\n";
    if (write(fd, req, strlen(req)) < 0) return 1;
    char buf[64] = {0};
    if (read(fd, buf, sizeof buf - 1) <= 0) return 1;
    return strncmp(buf, "HTTP/1.0 200", 12) == 0 ? 0 : 1;
}

static void answer(int fd, const struct plugin *plugin, int debug) {
    char req[1024] = {0};
    if (read(fd, req, sizeof req - 1) <= 0) return;
    char body[512];
    int n;
    if (strncmp(req, "GET /health ", 12) == 0) {
        n = snprintf(body, sizeof body, "ok\n");
    } else {
        n = plugin->describe(body, sizeof body);
        n += snprintf(body + n, sizeof body - n, " (%s, %s build)\n", core_version(), debug ? "debug" : "production");
    }
    if (debug) {
        char *eol = strchr(req, '\r');
        if (eol) *eol = 0;
        printf("%s: %s\n", plugin->name, req);
        fflush(stdout);
    }
    char head[128];
    int h = snprintf(head, sizeof head, "HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n", n);
    if (write(fd, head, h) < 0 || write(fd, body, n) < 0) return;
}

int core_main(const struct plugin *plugin, int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--check") == 0) return check();
    int debug = getenv("PLUGIN_DEBUG") != NULL;
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(PORT)};
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 16) != 0) {
        perror("listen");
        return 1;
    }
    printf("%s plugin listening on :%d (%s, %s build)\n", plugin->name, PORT, core_version(),
           debug ? "debug" : "production");
    fflush(stdout);
    while (!stopping) {
        int c = accept(fd, NULL, NULL);
        if (c < 0) continue;
        answer(c, plugin, debug);
        close(c);
    }
    printf("%s plugin stopping\n", plugin->name);
    return 0;
}
