/* The core library every plugin links: a tiny HTTP server and the plugin protocol. */
#ifndef CORE_H
#define CORE_H

/* What a plugin tells the core about itself. */
struct plugin {
    const char *name;
    /* Fills `out` with the answer to GET /; returns its length. */
    int (*describe)(char *out, int size);
};

const char *core_version(void);

/* Serves the plugin on 0.0.0.0:8080 until SIGTERM; `--check` instead asks a running
 * instance for /health and exits 0 if it answered 200. */
int core_main(const struct plugin *plugin, int argc, char **argv);

#endif
