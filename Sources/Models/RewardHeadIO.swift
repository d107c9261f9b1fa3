import Foundation
import Kernels

/// Scalar heads saved beside a model folder, named like TRL's AutoModelForCausalLMWithValueHead
/// (`v_head.summary.weight` [1, C], `v_head.summary.bias` [1]).
public enum ScalarHeadIO {
    public static let fileName = "reward_head.safetensors"

    public static func save(_ head: ScalarHead, directory: String, fileName: String = fileName) throws {
        try SafeTensorsFile.write(
            path: (directory as NSString).appendingPathComponent(fileName),
            tensors: [
                (
                    name: "v_head.summary.weight", shape: [1, head.channels],
                    data: UnsafePointer(head.parameters.pointer)
                ),
                (name: "v_head.summary.bias", shape: [1], data: UnsafePointer(head.parameters.pointer + head.channels)),
            ])
    }

    public static func load(directory: String, channels: Int, fileName: String = fileName) throws -> ScalarHead {
        let file = try SafeTensorsFile(path: (directory as NSString).appendingPathComponent(fileName))
        let head = ScalarHead(channels: channels)
        try file.read("v_head.summary.weight", into: head.parameters.pointer, count: channels)
        try file.read("v_head.summary.bias", into: head.parameters.pointer + channels, count: 1)
        return head
    }
}
