// Compiled for the baseline x86-64 (no -target-cpu): it must run on any CPU, to say what the
// Swift code, compiled for the build's target CPU, needs that this CPU lacks. Package.swift
// defines RLHF_NEED_<FEATURE> for each extension the target CPU has (for "native": the build
// machine's /proc/cpuinfo flags).
#include "CPUCheck.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RLHF_STR2(x) #x
#define RLHF_STR(x) RLHF_STR2(x)

static char missing[512];

/// Whether `name` is a whole word of RLHF_PRETEND_CPU_LACKS ("avx512f avx512bw" or "avx512f,avx512bw").
static int pretends_lacking(const char *name) {
    const char *list = getenv("RLHF_PRETEND_CPU_LACKS");
    size_t n = strlen(name);
    for (const char *p = list; p && *p; ) {
        while (*p == ' ' || *p == ',') p++;
        size_t k = strcspn(p, " ,");
        if (k == n && strncmp(p, name, n) == 0) return 1;
        p += k;
    }
    return 0;
}

const char *rlhf_build_target_cpu(void) {
#ifdef RLHF_TARGET_CPU_NAME
    return RLHF_STR(RLHF_TARGET_CPU_NAME);
#else
    return "unknown";
#endif
}

const char *rlhf_build_commit(void) {
#ifdef RLHF_BUILD_COMMIT
    return RLHF_STR(RLHF_BUILD_COMMIT);
#else
    return "unknown";
#endif
}

const char *rlhf_cpu_missing_features(void) {
    missing[0] = 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    // RLHF_PRETEND_CPU_LACKS="avx512f …" simulates an older CPU, for tests of this refusal.
#define RLHF_LACKS(name) (!__builtin_cpu_supports(name) || pretends_lacking(name))
#define RLHF_NEED(name) if (RLHF_LACKS(name)) { strncat(missing, missing[0] ? " " name : name, sizeof(missing) - strlen(missing) - 1); }
#ifdef RLHF_NEED_AVX
    RLHF_NEED("avx")
#endif
#ifdef RLHF_NEED_AVX2
    RLHF_NEED("avx2")
#endif
#ifdef RLHF_NEED_FMA
    RLHF_NEED("fma")
#endif
#ifdef RLHF_NEED_BMI2
    RLHF_NEED("bmi2")
#endif
#ifdef RLHF_NEED_AVX512F
    RLHF_NEED("avx512f")
#endif
#ifdef RLHF_NEED_AVX512BW
    RLHF_NEED("avx512bw")
#endif
#ifdef RLHF_NEED_AVX512DQ
    RLHF_NEED("avx512dq")
#endif
#ifdef RLHF_NEED_AVX512VL
    RLHF_NEED("avx512vl")
#endif
#ifdef RLHF_NEED_AVX512VNNI
    RLHF_NEED("avx512vnni")
#endif
#ifdef RLHF_NEED_AVX512BF16
    RLHF_NEED("avx512bf16")
#endif
#ifdef RLHF_NEED_AVX512VBMI
    RLHF_NEED("avx512vbmi")
#endif
#endif
    return missing;
}

/// Before main (and before any Swift code compiled for the target CPU runs).
__attribute__((constructor)) static void rlhf_check_cpu(void) {
    if (getenv("RLHF_SKIP_CPU_CHECK")) return;
    const char *lacks = rlhf_cpu_missing_features();
    if (lacks[0] == 0) return;
    fprintf(stderr,
            "error: this rlhf binary was built for the CPU '%s' (RLHF_TARGET_CPU at build time), and this CPU lacks %s.\n"
            "Rebuild it on this machine (scripts/run.sh or scripts/test.sh do), or build for an older baseline, e.g.\n"
            "  RLHF_TARGET_CPU=x86-64-v3 swift build -c release   (AVX2 machines)\n",
            rlhf_build_target_cpu(), lacks);
    exit(3);
}
