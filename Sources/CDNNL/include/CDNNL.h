#ifndef RLHF_CDNNL_H
#define RLHF_CDNNL_H
#include <stddef.h>
#include <stdint.h>

/// One oneDNN matmul primitive for a fixed shape: C[m×n] = alpha · op(A) · op(B) + beta · C, row-major,
/// A and B in bf16 (uint16_t bit patterns), C in fp32. op(A) is m×k (stored k×m when trans_a), op(B) is
/// k×n (stored n×k when trans_b); lda, ldb, ldc are row strides in elements.
typedef struct rlhf_bf16_matmul rlhf_bf16_matmul;

/// Creates the primitive; returns NULL and writes the reason to `error` when oneDNN cannot (for
/// example on a CPU without AVX-512, where oneDNN 2.6 has no bf16 matmul).
rlhf_bf16_matmul *rlhf_bf16_matmul_create(int64_t m, int64_t n, int64_t k, int trans_a, int trans_b, int64_t lda,
                                          int64_t ldb, int64_t ldc, float alpha, float beta, char *error,
                                          size_t error_size);

/// Runs it on `threads` OpenMP threads (set on the calling thread: libgomp keeps the setting per
/// thread); swift-rlhf passes 1 and splits products over its own kernel threads. Safe to call
/// concurrently, also for one primitive (each call has its own scratchpad and stream). Returns 0
/// on success, else oneDNN's status.
int rlhf_bf16_matmul_execute(rlhf_bf16_matmul *matmul, const uint16_t *a, const uint16_t *b, float *c, int threads);

void rlhf_bf16_matmul_destroy(rlhf_bf16_matmul *matmul);

/// "major.minor.patch" of the loaded oneDNN, and the instruction set it dispatches to (its
/// dnnl_cpu_isa_t value; see rlhf_dnnl_isa_name).
const char *rlhf_dnnl_version(void);
const char *rlhf_dnnl_isa_name(void);

#endif
