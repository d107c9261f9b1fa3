import Foundation
import XCTest

@testable import Kernels

/// The OpenBLAS core from CPU flags, on flag sets recorded from real machines (the flags that
/// matter, from their /proc/cpuinfo), against what OpenBLAS 0.3.21 picks on its own for them.
final class KernelChoiceTests: XCTestCase {
    static let avx2 = "fpu sse sse2 ssse3 sse4_1 sse4_2 popcnt avx f16c fma bmi1 bmi2 avx2"
    static let avx512 = avx2 + " avx512f avx512dq avx512cd avx512bw avx512vl"
    static let machines: [(name: String, flags: String, openblas: String, expected: KernelChoice.Decision)] = [
        (
            "AMD EPYC Zen 5 (this machine's kind)", avx512 + " avx512_bf16 avx512_vnni avx512vbmi", "Haswell",
            .init(
                reexecWith: "SkylakeX",
                reason:
                    "OpenBLAS chose Haswell; this CPU has avx512f, avx512bw, avx512dq, avx512vl, avx2, fma, so "
                    + "SkylakeX kernels"
            )
        ),
        (
            "AMD EPYC Zen 4", avx512 + " avx512_bf16 avx512_vnni", "Zen",
            .init(
                reexecWith: "SkylakeX",
                reason:
                    "OpenBLAS chose Zen; this CPU has avx512f, avx512bw, avx512dq, avx512vl, avx2, fma, so SkylakeX "
                    + "kernels"
            )
        ),
        (
            "Intel Xeon Emerald Rapids (family 6, model 207)", avx512 + " avx512_bf16 avx512_fp16 amx_tile", "Prescott",
            .init(
                reexecWith: "SkylakeX",
                reason:
                    "OpenBLAS chose Prescott; this CPU has avx512f, avx512bw, avx512dq, avx512vl, avx2, fma, so "
                    + "SkylakeX kernels"
            )
        ),
        (
            "Intel Xeon Sapphire Rapids", avx512 + " avx512_bf16", "Cooperlake",
            .init(
                reexecWith: nil,
                reason:
                    "OpenBLAS chose Cooperlake, the best this CPU runs (avx512f, avx512bw, avx512dq, avx512vl, avx2, "
                    + "fma)"
            )
        ),
        (
            "Intel Xeon Skylake-SP", avx512, "SkylakeX",
            .init(
                reexecWith: nil,
                reason:
                    "OpenBLAS chose SkylakeX, the best this CPU runs (avx512f, avx512bw, avx512dq, avx512vl, avx2, fma)"
            )
        ),
        (
            "Intel Haswell", avx2, "Haswell",
            .init(reexecWith: nil, reason: "OpenBLAS chose Haswell, the best this CPU runs (avx2, fma)")
        ),
        (
            "an AVX2 CPU OpenBLAS does not know", avx2, "Prescott",
            .init(reexecWith: "Haswell", reason: "OpenBLAS chose Prescott; this CPU has avx2, fma, so Haswell kernels")
        ),
        (
            "an SSE-only CPU", "fpu sse sse2 ssse3 sse4_1 sse4_2", "Prescott",
            .init(reexecWith: nil, reason: "OpenBLAS chose Prescott, the best this CPU runs (no AVX)")
        ),
    ]

    func testDecisionFromRecordedFlagSets() {
        for m in Self.machines {
            let cpu = CPUFeatures(flags: Set(m.flags.split(separator: " ").map(String.init)), modelName: m.name)
            XCTAssertEqual(KernelChoice.decide(detected: m.openblas, userSetting: nil, cpu: cpu), m.expected, m.name)
        }
    }

    /// A user's OPENBLAS_CORETYPE is kept, with a note when the CPU could run faster kernels.
    func testTheUsersSettingIsKeptAndNamedWhenSlower() {
        let zen5 = CPUFeatures(flags: Set(Self.machines[0].flags.split(separator: " ").map(String.init)))
        let slow = KernelChoice.decide(detected: "Haswell", userSetting: "Haswell", cpu: zen5)
        XCTAssertNil(slow.reexecWith)
        XCTAssertTrue(
            slow.reason.contains("OPENBLAS_CORETYPE=Haswell is set in the environment; this CPU runs SkylakeX kernels"),
            slow.reason)
        XCTAssertEqual(
            KernelChoice.decide(detected: "SkylakeX", userSetting: "SkylakeX", cpu: zen5).reason,
            "OPENBLAS_CORETYPE=SkylakeX from the environment")
    }

    func testCPUInfoParsing() {
        let cpu = CPUFeatures(
            cpuinfo:
                "processor\t: 0\nmodel name\t: AMD EPYC 9B45\nflags\t\t: fpu avx2 fma avx512f\n\nprocessor\t: "
                + "1\nflags\t\t: fpu\n"
        )
        XCTAssertEqual(cpu.modelName, "AMD EPYC 9B45")
        XCTAssertEqual(cpu.flags, ["fpu", "avx2", "fma", "avx512f"], "the first processor's flags")
        XCTAssertEqual(cpu.summary, "AMD EPYC 9B45", "no family line: the name alone")
        let vm = CPUFeatures(cpuinfo: "processor\t: 0\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n")
        XCTAssertEqual([vm.family, vm.model, vm.modelName], ["26", "2", "AMD EPYC"], "'model' is not 'model name'")
        XCTAssertEqual(vm.summary, "AMD EPYC family 26 model 2")
    }

}
