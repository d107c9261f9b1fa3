import Alignment
import Cluster
import Datasets
import Foundation
import Kernels
import Models
import XCTest

@testable import Training

/// The `dpo` stage: starts at the policy = reference values, data parallelism is exact, resume
/// is exact, and the reference's log-probs are computed once and read back.
final class DPOStageTests: TemporaryDirectoryTestCase {
    func config(out: String, loss: String, resume: String = "never", extra: [String] = []) throws -> DPOConfig {
        try DPOConfig(
            try dpoSchema.resolve(
                file: nil,
                overrides: [
                    "name=dpo", "out=\(out)", "resume=\(resume)", "data.task=arith", "data.eval_size=40",
                    "dpo.loss=\(loss)",
                    "train.steps=8", "train.batch_size=16", "train.micro_batch_size=4", "train.max_length=16",
                    "train.warmup_steps=2",
                    "train.lr=3e-3", "eval.every=0", "checkpoint.every=4", "checkpoint.keep_last=5", "log.every=100",
                ] + extra))
    }
    func metrics(_ run: String, _ key: String) throws -> [Double] {
        try JSONL.objects(path: run + "/metrics.jsonl").compactMap { $0.object[key] as? Double }
    }
    func bytes(_ path: String) -> Data { FileManager.default.contents(atPath: path) ?? Data() }

    func testFirstStepLossIsThePolicyEqualsReferenceValue() async throws {
        // LoRA starts with B = 0, so the policy is the reference: DPO = cDPO = log 2, hinge = 1,
        // IPO = 1/(4τ²) = 25. (Not InSPO: its policy terms are conditioned on the other response,
        // its reference terms are not.)
        for family in testedFamilies {
            for (loss, expected) in [("dpo", log(2.0)), ("cdpo", log(2.0)), ("hinge", 1.0), ("ipo", 25.0)] {
                let out = directory + "/\(loss)-\(family)"
                _ = try await DPOStage(
                    config: try config(out: out, loss: loss, extra: ["train.steps=1", "model.family=\(family)"]),
                    transport: SingleProcessTransport(), say: { _ in }
                ).run()
                XCTAssertEqual(
                    try XCTUnwrap(try metrics(out, "loss").first), expected, accuracy: 1e-4, "\(family) \(loss)")
            }
        }
    }

    func testTwoRanksMatchOneProcess() async throws {
        let threads = BLAS.threads
        BLAS.setThreads(1)
        defer { BLAS.setThreads(threads) }
        // InSPO with its unconditional DPO term on, so both the conditioned and the plain rows are read.
        let runs: [(loss: String, family: String, extra: [String])] = [
            ("dpo", "gpt2", []), ("inspo", "gpt2", ["inspo.mu_dpo=1"]), ("dpo", "llama", []),
        ]
        for (loss, family, extra) in runs {
            let single = directory + "/\(loss)-\(family)-single", double = directory + "/\(loss)-\(family)-dp2"
            _ = try await DPOStage(
                config: try config(out: single, loss: loss, extra: ["model.family=\(family)"] + extra),
                transport: SingleProcessTransport(), say: { _ in }
            ).run()
            let world = EmbeddedWorld(size: 2)
            let c = try config(out: double, loss: loss, extra: ["model.family=\(family)"] + extra)
            _ = try await world.run { transport in
                try await DPOStage(config: c, transport: transport, say: { _ in }).run()
            }
            XCTAssertEqual(world.undelivered, [])
            // The logged loss is a sum over ranks, so its last bit may depend on the grouping;
            // the weights below may not.
            let curve = try metrics(single, "loss"), curve2 = try metrics(double, "loss")
            XCTAssertEqual(curve.count, 8)
            XCTAssertEqual(curve2.count, 8)
            for (x, y) in zip(curve, curve2) { XCTAssertEqual(x, y, accuracy: 1e-12, "\(loss): loss curve") }
            for file in ["adapter/adapter_model.safetensors", "optimizer.safetensors"] {
                let a = bytes(single + "/checkpoints/step-00000008/" + file),
                    b = bytes(double + "/checkpoints/step-00000008/" + file)
                XCTAssertFalse(a.isEmpty, file)
                XCTAssertEqual(a, b, "\(loss): \(file) differs between 1 and 2 ranks")
            }
            XCTAssertEqual(
                bytes(single + "/reference_logps.safetensors"), bytes(double + "/reference_logps.safetensors"),
                "the sharded reference pass gives the same log-probs")
        }
    }

    func testResumeIsBitIdenticalWithLoRAAndFullFineTuning() async throws {
        for (name, extra, model) in [
            ("lora", [String](), "adapter/adapter_model.safetensors"),
            ("full", ["lora.rank=0", "train.lr=3e-4"], "model.safetensors"),
            ("llama-lora", ["model.family=llama"], "adapter/adapter_model.safetensors"),
        ] {
            let a = directory + "/\(name)-a", b = directory + "/\(name)-b"
            _ = try await DPOStage(
                config: try config(out: a, loss: "cpl", extra: extra), transport: SingleProcessTransport(),
                say: { _ in }
            ).run()
            _ = try await DPOStage(
                config: try config(out: b, loss: "cpl", extra: extra), transport: SingleProcessTransport(),
                say: { _ in }
            ).run()
            // a crash after step 4's checkpoint
            try FileManager.default.removeItem(atPath: b + "/checkpoints/step-00000008")
            var messages: [String] = []
            _ = try await DPOStage(
                config: try config(out: b, loss: "cpl", resume: "auto", extra: extra),
                transport: SingleProcessTransport(),
                say: { messages.append($0) }
            ).run()
            XCTAssertTrue(messages.contains { $0.contains("at step 4") }, "\(messages)")
            XCTAssertTrue(
                messages.contains { $0.contains("reference log-probs") && $0.contains("read from") },
                "the cache is reused: \(messages)")
            for file in [model, "optimizer.safetensors", "training_state.json"] {
                let left = bytes(a + "/checkpoints/step-00000008/" + file),
                    right = bytes(b + "/checkpoints/step-00000008/" + file)
                XCTAssertFalse(left.isEmpty, "\(name): \(file)")
                XCTAssertEqual(left, right, "\(name): \(file) differs after resume")
            }
            XCTAssertEqual(try metrics(b, "loss"), try metrics(a, "loss"), "\(name): loss curve")
            XCTAssertNotEqual(
                bytes(a + "/checkpoints/step-00000004/" + model), bytes(a + "/checkpoints/step-00000008/" + model))
        }
    }

    /// Defaults as the papers have them: InSPO without an unconditional DPO term (neither its paper
    /// nor its code has one), CPL-BC with λ = 1 and bc_coeff 1 (official state configs); our
    /// additions show in the loss's name.
    func testPreferenceDefaultsFollowThePapers() throws {
        let inspo = try config(out: directory, loss: "inspo").objective
        XCTAssertEqual(inspo.muDPO, 0)
        XCTAssertFalse(inspo.needsUnconditional, "InSPO reads only the conditioned sequences")
        XCTAssertEqual(inspo.name, "inspo-dpo23")
        XCTAssertEqual(try config(out: directory, loss: "inspo", extra: ["inspo.mu_dpo=1"]).objective.muDPO, 1)
        let cplBC = try config(out: directory, loss: "cpl_bc").objective
        XCTAssertEqual(cplBC.kind, .cplBC)
        XCTAssertEqual(cplBC.cplBCCoefficient, 1)
        XCTAssertEqual(cplBC.nllCoefficient, 0)
        XCTAssertEqual(cplBC.name, "cpl_bc")
        XCTAssertEqual(
            try config(out: directory, loss: "cpl_bc", extra: ["cpl.bc_coef=1.5"]).objective.cplBCCoefficient, 1.5)
        XCTAssertEqual(try config(out: directory, loss: "cpl").objective.name, "cpl")
        let cplNLL = try config(out: directory, loss: "cpl", extra: ["dpo.nll_coef=1"]).objective
        XCTAssertEqual(cplNLL.name, "cpl+nll", "CPL with NLL on the chosen is neither CPL nor CPL-BC")
        XCTAssertTrue(DPOStage.describe(cplNLL).hasPrefix("cpl+nll"), DPOStage.describe(cplNLL))
    }

    func testBadSettingsAreNamed() throws {
        XCTAssertThrowsError(try config(out: directory, loss: "cdpo", extra: ["dpo.label_smoothing=0.5"])) {
            XCTAssertTrue("\($0)".contains("dpo.label_smoothing"), "\($0)")
        }
        XCTAssertThrowsError(try config(out: directory, loss: "cpl", extra: ["cpl.lambda=0"])) {
            XCTAssertTrue("\($0)".contains("cpl.lambda"), "\($0)")
        }
        XCTAssertThrowsError(try config(out: directory, loss: "cpl_bc", extra: ["cpl.lambda=0.5"])) {
            XCTAssertTrue("\($0)".contains("dpo.loss cpl_bc has none"), "\($0)")
        }
        XCTAssertThrowsError(try config(out: directory, loss: "kto")) {
            XCTAssertTrue("\($0)".contains("dpo.loss"), "\($0)")
        }
    }
}
