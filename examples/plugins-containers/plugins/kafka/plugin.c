/* The kafka plugin: its own logic, served by the core. */
#include <stdio.h>

#include "core.h"

static int describe(char *out, int size) { return snprintf(out, size, "kafka plugin: 2 topics consumed"); }

int main(int argc, char **argv) {
    static const struct plugin plugin = {"kafka", describe};
    return core_main(&plugin, argc, argv);
}
