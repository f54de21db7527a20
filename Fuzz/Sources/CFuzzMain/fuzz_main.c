// The entry point of every fuzz-* executable. SwiftPM links an executable target with `--defsym
// main=<module>_main`, a symbol that is never emitted under -parse-as-library (which libFuzzer needs: its
// driver owns main). So each <module>_main here hands the command line to libFuzzer's driver with the
// target's LLVMFuzzerTestOneInput (defined in Swift with @_cdecl), exactly what libFuzzer's own main does.
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#define DAFT_FUZZ_MAIN(module) \
    int module##_main(int argc, char **argv) { return LLVMFuzzerRunDriver(&argc, &argv, LLVMFuzzerTestOneInput); }

DAFT_FUZZ_MAIN(fuzz_safetensors)
DAFT_FUZZ_MAIN(fuzz_npy)
DAFT_FUZZ_MAIN(fuzz_idx)
DAFT_FUZZ_MAIN(fuzz_idxgz)
DAFT_FUZZ_MAIN(fuzz_image)
DAFT_FUZZ_MAIN(fuzz_config)
DAFT_FUZZ_MAIN(fuzz_manifest)
DAFT_FUZZ_MAIN(fuzz_trainer_state)
