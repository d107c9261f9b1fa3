import Cluster
import Foundation

/// Every decoder of the role protocol run over one message, for the fuzzer (`rlhf-fuzz wire`): a
/// damaged or hostile message from another rank must end in a thrown error, never a crash.
package enum RoleWireFuzzing {
    package static func decodeEverything(_ data: Data) {
        let decoders: [(inout WireReader) throws -> Void] = [
            { _ = try $0.policyObjective() }, { _ = try $0.criticObjective() }, { _ = try $0.snapshots() },
            { _ = try $0.stats() }, { _ = try $0.stepShape() },
            { _ = try $0.options() }, { _ = try $0.generation() }, { _ = try $0.sequences() },
            { _ = try $0.floatRows() },
            { _ = try $0.ints() }, { _ = try $0.string() },
        ]
        for decode in decoders {
            guard var reader = try? WireReader(data) else { return }
            try? decode(&reader)
        }
    }
}
