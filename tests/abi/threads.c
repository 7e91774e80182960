/* An ABI test of the header's thread-safety promise: two contexts on one model, each
 * generating greedily on its own thread at the same time (one computing on 1 thread, the
 * other on 2: the compute thread count is the calling thread's), both get llama.cpp's
 * greedy bytes. */
#include <pthread.h>

#include "reference.h"

enum { THREADS = 2 };

typedef struct {
    quill_model *model;
    const char *want;
    size_t n;
    int n_threads;
    char name[16];
    int failed;
} Worker;

static void *work(void *arg)
{
    Worker *w = arg;
    w->failed = generate_and_compare(w->model, w->n_threads, w->name, w->want, w->n);
    return NULL;
}

int main(void)
{
    Reference r;
    int status = load_reference(&r);
    if (status != 0)
        return status;
    Worker workers[THREADS];
    pthread_t ids[THREADS];
    for (int i = 0; i < THREADS; i++) {
        workers[i] = (Worker){.model = r.model, .want = r.want, .n = r.n, .n_threads = 1 + i};
        snprintf(workers[i].name, sizeof workers[i].name, "thread %d", i);
        if (pthread_create(&ids[i], NULL, work, &workers[i]) != 0) {
            fprintf(stderr, "threads: pthread_create failed\n");
            return 1;
        }
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(ids[i], NULL);
        status |= workers[i].failed;
    }
    if (status == 0)
        printf("threads: %d contexts on one model, each on its own thread: llama.cpp's %zu "
               "bytes on each\n", THREADS, r.n);
    reference_free(&r);
    return status;
}
