#ifndef RLHF_CPU_CHECK_H
#define RLHF_CPU_CHECK_H

/// The instruction-set extensions this build needs and the running CPU lacks, space-separated
/// ("" when it has them all). The binary also checks this itself before main: a binary built with
/// -target-cpu for a newer CPU stops with a clear message instead of SIGILL.
const char *rlhf_cpu_missing_features(void);

/// The -target-cpu the Swift code was compiled for (RLHF_TARGET_CPU, "native" by default).
const char *rlhf_build_target_cpu(void);

/// The commit this binary was built from (RLHF_COMMIT at build time), or "unknown".
const char *rlhf_build_commit(void);

#endif
