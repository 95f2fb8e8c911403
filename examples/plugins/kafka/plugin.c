#include "core.h"

int main(void) {
    struct plugin self = { "kafka", 9092 };
    return core_announce(&self);
}
