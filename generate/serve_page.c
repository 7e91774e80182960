/* quill serve's playground page: GET / (index.html), /playground.js and /playground.css,
 * the files of generate/playground/ in the checkout the binary was built in. The folder is
 * found once at start from the binary's own path (/proc/self/exe): bin/quill and
 * build/<variant>/quill both sit below the checkout's root. Only those names are ever
 * served, each mapped to its file by the table below: no part of a URL becomes a path. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "serve.h"

static const ServePage PAGES[] = {
    {"/", "index.html", "text/html; charset=utf-8"},
    {"/index.html", "index.html", "text/html; charset=utf-8"},
    {"/playground.js", "playground.js", "text/javascript; charset=utf-8"},
    {"/playground.css", "playground.css", "text/css; charset=utf-8"},
};

const ServePage *serve_page_find(const char *url)
{
    for (size_t i = 0; i < sizeof PAGES / sizeof *PAGES; i++)
        if (strcmp(PAGES[i].url, url) == 0)
            return &PAGES[i];
    return NULL;
}

/* The checkout's generate/playground/ (with its index.html) one or two folders above the
 * binary's, into dir; false when neither has it. */
bool serve_page_dir(char *dir, size_t cap)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return false;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return false;
    *slash = '\0';
    const char *ups[] = {"..", "../.."};
    for (int i = 0; i < 2; i++) {
        char candidate[PATH_MAX + 64];
        snprintf(candidate, sizeof candidate, "%s/%s/generate/playground/index.html", exe, ups[i]);
        if (access(candidate, R_OK) == 0) {
            candidate[strlen(candidate) - strlen("/index.html")] = '\0';
            return (size_t)snprintf(dir, cap, "%s", candidate) < cap;
        }
    }
    return false;
}

int serve_page(const Server *s, const ServePage *page, ServeReply *r, ApiError *e)
{
    if (!s->page_dir[0])
        return serve_error(e, 404, NULL, "the playground's files (generate/playground/) are "
                           "not in the checkout this binary was built in");
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", s->page_dir, page->file);
    if (file_read_all(path, &r->raw, &r->n_raw, &e->err) != 0)
        return serve_error(e, 404, NULL, "%s", e->err.msg);
    r->content_type = page->content_type;
    return 0;
}
