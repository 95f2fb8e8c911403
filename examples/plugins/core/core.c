#include <stdio.h>
#include "core.h"

int core_announce(const struct plugin *p) {
    return printf("plugin %s ready on port %d\n", p->name, p->default_port) < 0;
}
/* note */
