#ifndef CORE_H
#define CORE_H

/* A plugin describes itself; the core prints a banner for it. */
struct plugin {
    const char *name;
    int default_port;
};

int core_announce(const struct plugin *p);

#endif
