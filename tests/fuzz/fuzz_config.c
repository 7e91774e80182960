/* libFuzzer harness: a training config file, as `quill train --config` reads it, then
 * resolved as a run would resolve it. */
#include <stdint.h>

#include "../../train/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    TrainConfig c;
    Error err;
    config_init(&c);
    if (config_apply_json(&c, (const char *)data, size, "fuzz.json", &err) == 0)
        config_resolve(&c, &err);
    config_free(&c);
    return 0;
}
