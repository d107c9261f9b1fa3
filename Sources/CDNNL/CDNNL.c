// The few oneDNN 2.6 calls swift-rlhf needs: a bf16 × bf16 → fp32 matmul primitive per shape
// (docs/platform.md §9). oneDNN's 2.x C API takes memory descriptors by pointer; its primitives are
// created once per shape (the Swift side caches them) and executed many times, concurrently from
// the Swift side's kernel threads: each execution brings its own scratchpad (user scratchpad mode)
// and runs on its thread's own stream, so nothing is shared between two running products.
#include "CDNNL.h"
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>

void omp_set_num_threads(int);

struct rlhf_bf16_matmul {
    dnnl_engine_t engine;
    dnnl_primitive_t primitive;
    dnnl_memory_desc_t a, b, c, scratchpad;
    size_t scratchpad_bytes;
};

/// This thread's stream (a CPU stream is a handle on the engine; one per thread keeps executions apart).
static dnnl_stream_t thread_stream(dnnl_engine_t engine) {
    static __thread dnnl_stream_t stream = NULL;
    if (stream == NULL && dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success) {
        stream = NULL;
    }
    return stream;
}

static dnnl_engine_t shared_engine(void) {
    static dnnl_engine_t engine = NULL;
    static int tried = 0;
    if (!tried) {
        tried = 1;
        if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) engine = NULL;
    }
    return engine;
}

static int fail(char *error, size_t size, const char *what, dnnl_status_t status) {
    snprintf(error, size, "%s failed (oneDNN status %d)", what, (int)status);
    return 0;
}

rlhf_bf16_matmul *rlhf_bf16_matmul_create(int64_t m, int64_t n, int64_t k, int trans_a, int trans_b, int64_t lda,
                                          int64_t ldb, int64_t ldc, float alpha, float beta, char *error,
                                          size_t error_size) {
    // The engine is made once, under the Swift side's lock.
    dnnl_engine_t engine = shared_engine();
    if (engine == NULL) {
        fail(error, error_size, "dnnl_engine_create", dnnl_runtime_error);
        return NULL;
    }
    rlhf_bf16_matmul *mm = calloc(1, sizeof *mm);
    if (mm == NULL) return NULL;
    mm->engine = engine;
    dnnl_dims_t a_dims = {m, k}, b_dims = {k, n}, c_dims = {m, n};
    dnnl_dims_t a_strides = {trans_a ? 1 : lda, trans_a ? lda : 1};
    dnnl_dims_t b_strides = {trans_b ? 1 : ldb, trans_b ? ldb : 1};
    dnnl_dims_t c_strides = {ldc, 1};
    dnnl_status_t s;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t post = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_matmul_desc_t desc;
    if ((s = dnnl_memory_desc_init_by_strides(&mm->a, 2, a_dims, dnnl_bf16, a_strides)) != dnnl_success ||
        (s = dnnl_memory_desc_init_by_strides(&mm->b, 2, b_dims, dnnl_bf16, b_strides)) != dnnl_success ||
        (s = dnnl_memory_desc_init_by_strides(&mm->c, 2, c_dims, dnnl_f32, c_strides)) != dnnl_success) {
        fail(error, error_size, "dnnl_memory_desc_init_by_strides", s);
        goto failed;
    }
    if ((s = dnnl_matmul_desc_init(&desc, &mm->a, &mm->b, NULL, &mm->c)) != dnnl_success) {
        fail(error, error_size, "dnnl_matmul_desc_init", s);
        goto failed;
    }
    if ((s = dnnl_primitive_attr_create(&attr)) != dnnl_success) goto attr_failed;
    if ((s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user)) != dnnl_success) {
        goto attr_failed;
    }
    if (alpha != 1.0f) {
        const float scales[1] = {alpha};
        if ((s = dnnl_primitive_attr_set_output_scales(attr, 1, 0, scales)) != dnnl_success) goto attr_failed;
    }
    if (beta != 0.0f) {
        // dst = alpha·AB + beta·dst: oneDNN's sum post-op adds the old destination scaled by beta.
        if ((s = dnnl_post_ops_create(&post)) != dnnl_success) goto attr_failed;
        if ((s = dnnl_post_ops_append_sum(post, beta)) != dnnl_success) goto attr_failed;
        if ((s = dnnl_primitive_attr_set_post_ops(attr, post)) != dnnl_success) goto attr_failed;
    }
    if ((s = dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL)) != dnnl_success) {
        fail(error, error_size, "dnnl_primitive_desc_create (bf16 matmul; oneDNN 2.6 needs AVX-512 for it)", s);
        goto failed;
    }
    if ((s = dnnl_primitive_create(&mm->primitive, pd)) != dnnl_success) {
        fail(error, error_size, "dnnl_primitive_create", s);
        goto failed;
    }
    const dnnl_memory_desc_t *scratchpad = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (scratchpad != NULL) {
        mm->scratchpad = *scratchpad;
        mm->scratchpad_bytes = dnnl_memory_desc_get_size(scratchpad);
    }
    dnnl_primitive_desc_destroy(pd);
    if (post) dnnl_post_ops_destroy(post);
    dnnl_primitive_attr_destroy(attr);
    return mm;
attr_failed:
    fail(error, error_size, "dnnl primitive attributes", s);
failed:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (post) dnnl_post_ops_destroy(post);
    if (attr) dnnl_primitive_attr_destroy(attr);
    rlhf_bf16_matmul_destroy(mm);
    return NULL;
}

int rlhf_bf16_matmul_execute(rlhf_bf16_matmul *mm, const uint16_t *a, const uint16_t *b, float *c, int threads) {
    dnnl_memory_t ma = NULL, mb = NULL, mc = NULL, ms = NULL;
    void *scratch = NULL;
    dnnl_status_t s = dnnl_out_of_memory;
    dnnl_stream_t stream = thread_stream(mm->engine);
    if (stream == NULL) return (int)dnnl_runtime_error;
    if (mm->scratchpad_bytes > 0 && posix_memalign(&scratch, 64, mm->scratchpad_bytes) != 0) return (int)s;
    if ((s = dnnl_memory_create(&ma, &mm->a, mm->engine, (void *)a)) != dnnl_success ||
        (s = dnnl_memory_create(&mb, &mm->b, mm->engine, (void *)b)) != dnnl_success ||
        (s = dnnl_memory_create(&mc, &mm->c, mm->engine, c)) != dnnl_success ||
        (scratch && (s = dnnl_memory_create(&ms, &mm->scratchpad, mm->engine, scratch)) != dnnl_success)) {
        goto done;
    }
    omp_set_num_threads(threads > 0 ? threads : 1);
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}, {DNNL_ARG_SCRATCHPAD, ms}};
    if ((s = dnnl_primitive_execute(mm->primitive, stream, ms ? 4 : 3, args)) != dnnl_success) goto done;
    s = dnnl_stream_wait(stream);
done:
    if (ma) dnnl_memory_destroy(ma);
    if (mb) dnnl_memory_destroy(mb);
    if (mc) dnnl_memory_destroy(mc);
    if (ms) dnnl_memory_destroy(ms);
    free(scratch);
    return (int)s;
}

void rlhf_bf16_matmul_destroy(rlhf_bf16_matmul *mm) {
    if (mm == NULL) return;
    if (mm->primitive) dnnl_primitive_destroy(mm->primitive);
    free(mm);
}

const char *rlhf_dnnl_version(void) {
    static char text[32];
    const dnnl_version_t *v = dnnl_version();
    snprintf(text, sizeof text, "%d.%d.%d", v->major, v->minor, v->patch);
    return text;
}

const char *rlhf_dnnl_isa_name(void) {
    switch (dnnl_get_effective_cpu_isa()) {
        case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
        case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
        case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
        case dnnl_cpu_isa_avx512_core: return "avx512_core";
        case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
        case dnnl_cpu_isa_avx2: return "avx2";
        case dnnl_cpu_isa_avx: return "avx";
        case dnnl_cpu_isa_sse41: return "sse41";
        default: return "other";
    }
}
