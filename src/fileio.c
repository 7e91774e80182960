#include "fileio.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buffer.h"

/* "<path>.tmp": a fixed name, so that the leftover of a killed writer is simply
 * overwritten by the next one instead of piling up. */
static char *temp_path_for(const char *path)
{
    size_t n = strlen(path) + sizeof ".tmp";
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s.tmp", path);
    return s;
}

int atomic_file_open(AtomicFile *af, const char *path, Error *err)
{
    memset(af, 0, sizeof *af);
    af->path = strdup(path);
    af->tmp_path = temp_path_for(path);
    if (!af->path || !af->tmp_path) {
        atomic_file_abort(af);
        return error_set(err, "%s: out of memory", path);
    }
    af->fp = fopen(af->tmp_path, "wb");
    if (!af->fp) {
        int e = errno;
        atomic_file_abort(af);
        return error_set(err, "%s: cannot create: %s", path, strerror(e));
    }
    return 0;
}

/* rename() is atomic, but only durable once the directory entry itself is on disk. */
static void fsync_parent_dir(const char *path)
{
    char *dir = strdup(path);
    if (!dir)
        return;
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    int fd = open(slash ? dir : ".", O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

int atomic_file_commit(AtomicFile *af, Error *err)
{
    int failed = ferror(af->fp) || fflush(af->fp) != 0 || fsync(fileno(af->fp)) != 0;
    int e = errno;
    failed |= fclose(af->fp) != 0;
    af->fp = NULL;
    if (failed) {
        error_set(err, "%s: write failed: %s", af->path, strerror(e ? e : EIO));
        atomic_file_abort(af);
        return -1;
    }
    if (rename(af->tmp_path, af->path) != 0) {
        error_set(err, "%s: cannot rename into place: %s", af->path, strerror(errno));
        atomic_file_abort(af);
        return -1;
    }
    fsync_parent_dir(af->path);
    free(af->tmp_path);
    free(af->path);
    memset(af, 0, sizeof *af);
    return 0;
}

void atomic_file_abort(AtomicFile *af)
{
    if (!af)
        return;
    if (af->fp)
        fclose(af->fp);
    if (af->tmp_path)
        unlink(af->tmp_path);
    free(af->tmp_path);
    free(af->path);
    memset(af, 0, sizeof *af);
}

int file_write_atomic(const char *path, const void *data, size_t len, Error *err)
{
    AtomicFile af;
    if (atomic_file_open(&af, path, err) != 0)
        return -1;
    if (len && fwrite(data, 1, len, af.fp) != len) {
        atomic_file_abort(&af);
        return error_set(err, "%s: write failed", path);
    }
    return atomic_file_commit(&af, err);
}

int dir_create_all(const char *path, Error *err)
{
    char *partial = strdup(path);
    if (!partial)
        return error_set(err, "out of memory");
    int status = 0;
    /* create each prefix ending before a '/', then the whole path */
    for (char *p = partial + 1; status == 0; p++) {
        bool end = *p == '\0';
        if (*p != '/' && !end)
            continue;
        *p = '\0';
        if (mkdir(partial, 0777) != 0 && errno != EEXIST)
            status = error_set(err, "%s: cannot create directory: %s", partial, strerror(errno));
        if (end)
            break;
        *p = '/';
    }
    free(partial);
    return status;
}

bool file_same(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

bool path_is_directory(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int file_read_all(const char *path, char **data, size_t *len, Error *err)
{
    *data = NULL;
    *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return error_set(err, "%s: %s", path, strerror(errno));
    size_t cap = 0, n = 0;
    char *buf = NULL;
    int read_errno = 0; /* why a read failed: a directory, say, opens but cannot be read */
    Error grow_err = {{0}};
    for (;;) {
        if (buffer_reserve(&buf, &cap, n + (1 << 16), 1 << 16, path, &grow_err) != 0) {
            free(buf);
            buf = NULL;
            break;
        }
        errno = 0;
        size_t room = cap - n - 1;
        size_t got = fread(buf + n, 1, room, fp);
        n += got;
        read_errno = errno;
        if (got < room)
            break;
    }
    int read_error = ferror(fp);
    fclose(fp);
    if (!buf)
        return error_set(err, "%s: out of memory", path);
    if (read_error) {
        free(buf);
        return error_set(err, "%s: %s", path, read_errno ? strerror(read_errno) : "read error");
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;
}

int file_map_fd_readonly(int fd, const char *name, void **map, size_t *size, Error *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return error_set(err, "%s: %s", name, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return error_set(err, "%s: not a regular file", name);
    if (st.st_size == 0)
        return error_set(err, "%s: the file is empty", name);
    if ((uint64_t)st.st_size > SIZE_MAX)
        return error_set(err, "%s: too large to map", name);
    *size = (size_t)st.st_size;
    *map = mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (*map == MAP_FAILED)
        return error_set(err, "%s: cannot map: %s", name, strerror(errno));
    return 0;
}

int file_map_readonly(const char *path, void **map, size_t *size, Error *err)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return error_set(err, "%s: %s", path, strerror(errno));
    int rc = file_map_fd_readonly(fd, path, map, size, err);
    close(fd);
    return rc;
}
