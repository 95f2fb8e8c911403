/* A worker: announces itself, then does a unit of work every second. */
#include <stdio.h>
#include <unistd.h>

int main(void) {
    printf("worker ready\n");
    fflush(stdout);
    for (unsigned long n = 1;; n++) {
        sleep(1);
        printf("worker processed job %lu\n", n);
        fflush(stdout);
    }
}
