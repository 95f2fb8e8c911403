/* The postgres plugin: its own logic, served by the core. */
#include <stdio.h>

#include "core.h"

static int describe(char *out, int size) { return snprintf(out, size, "postgres plugin: 3 tables replicated"); }

int main(int argc, char **argv) {
    static const struct plugin plugin = {"postgres", describe};
    return core_main(&plugin, argc, argv);
}
