/* The redis plugin: its own logic, served by the core. */
#include <stdio.h>

#include "core.h"

static int describe(char *out, int size) { return snprintf(out, size, "redis plugin: cache warm"); }

int main(int argc, char **argv) {
    static const struct plugin plugin = {"redis", describe};
    return core_main(&plugin, argc, argv);
}
