#include "core.h"

int main(void) {
    struct plugin self = { "postgres", 5432 };
    return core_announce(&self);
}
