/* quill serve's playground page: GET / (index.html), /playground.js and /playground.css.
 * The three files of generate/playground/ are compiled into the binary (the Makefile writes
 * each as a C array of its bytes into playground.inc), so that `quill serve` alone serves
 * them, wherever the binary was copied. Only those URLs are ever answered, each mapped to
 * its array by the table below: no part of a URL reaches the filesystem. */
#include <string.h>

#include "serve.h"

/* index_html[], playground_js[] and playground_css[]: the files' bytes (no NUL added) */
#include "playground.inc"

static const ServePage PAGES[] = {
    {"/", index_html, sizeof index_html, "text/html; charset=utf-8"},
    {"/index.html", index_html, sizeof index_html, "text/html; charset=utf-8"},
    {"/playground.js", playground_js, sizeof playground_js, "text/javascript; charset=utf-8"},
    {"/playground.css", playground_css, sizeof playground_css, "text/css; charset=utf-8"},
};

const ServePage *serve_page_find(const char *url)
{
    for (size_t i = 0; i < sizeof PAGES / sizeof *PAGES; i++)
        if (strcmp(PAGES[i].url, url) == 0)
            return &PAGES[i];
    return NULL;
}
