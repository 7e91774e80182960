/* A client of an installed libquill, built by `make test-install` with nothing but what
 * `pkg-config --cflags --libs quill` says: <quill.h> from the install's include folder, its
 * libquill.so. It checks that the library it loaded is the version the header states. */
#include <quill.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    char expected[32];
    snprintf(expected, sizeof expected, "%d.%d.%d", QUILL_VERSION_MAJOR, QUILL_VERSION_MINOR,
             QUILL_VERSION_PATCH);
    if (strcmp(quill_version(), expected) != 0) {
        fprintf(stderr, "client: the library is version %s, the header %s\n", quill_version(),
                expected);
        return 1;
    }
    printf("libquill %s: %s\n", quill_version(), quill_cpu_features());
    return 0;
}
