/* A tiny HTTP server: answers every request with a greeting, /health with "ok". */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define GREETING "hello from api v1"

int main(void) {
    const char *port = getenv("PORT") ? getenv("PORT") : "18080";
    const char *replica = getenv("KILN_REPLICA") ? getenv("KILN_REPLICA") : "0";
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 64) != 0) {
        perror("api: cannot listen");
        return 1;
    }
    printf("api replica %s listening on 127.0.0.1:%s\n", replica, port);
    fflush(stdout);
    for (;;) {
        int c = accept(fd, NULL, NULL);
        if (c < 0) continue;
        char req[1024] = {0};
        ssize_t n = read(c, req, sizeof req - 1);
        const char *body = (n > 0 && strncmp(req, "GET /health", 11) == 0) ? "ok\n" : GREETING "\n";
        char resp[256];
        int len = snprintf(resp, sizeof resp,
                           "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                           strlen(body), body);
        write(c, resp, (size_t)len);
        close(c);
    }
}
