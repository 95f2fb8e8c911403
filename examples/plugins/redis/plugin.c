#include "core.h"

int main(void) {
    struct plugin self = { "redis", 6379 };
    return core_announce(&self);
}
