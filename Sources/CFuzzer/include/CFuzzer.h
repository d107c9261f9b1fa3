#ifndef RLHF_CFUZZER_H
#define RLHF_CFUZZER_H
#include <stddef.h>
#include <stdint.h>

/// libFuzzer's driver, for a program with its own main (LLVM's "using libFuzzer as a library"):
/// linked only into the -sanitize=fuzzer build of rlhf-fuzz, which alone calls it.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
