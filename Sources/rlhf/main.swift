import Kernels

// Before anything else: get OpenBLAS's AVX-512 kernels if this CPU has them (platform.md fact 5).
FastPath.reexecIfNeeded()
RLHF.main()
