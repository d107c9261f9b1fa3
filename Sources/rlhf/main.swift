import ArgumentParser
import Cluster
import Kernels

// Before anything else: get OpenBLAS's AVX-512 kernels if this CPU has them (docs/platform.md fact 5).
FastPath.reexecIfNeeded()

// Called from inside an async function, `RLHF.main()` resolves to AsyncParsableCommand's entry
// point; written directly at top level it resolves to the synchronous one, which prints help for
// async subcommands instead of running them.
func start() async {
    await RLHF.main()  // exits the process itself on errors
    await MPIRuntime.shared.finalize()
}
await start()
