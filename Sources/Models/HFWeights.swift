import Foundation

/// The weights of a Hugging Face model folder: `model.safetensors`, or the shards listed by
/// `model.safetensors.index.json` (its `weight_map` names each tensor's file), as
/// `save_pretrained` writes them. F32, F16 and BF16 tensors are read as Float32.
public struct HFWeights {
    /// Every tensor by its full name, with the file that holds it.
    public let entries: [String: (file: SafeTensorsFile, entry: SafeTensorsEntry)]
    /// What errors name: the single file or the index.
    public let path: String

    public init(directory: String) throws {
        let single = (directory as NSString).appendingPathComponent("model.safetensors")
        let index = (directory as NSString).appendingPathComponent("model.safetensors.index.json")
        let fm = FileManager.default
        if fm.fileExists(atPath: single) {
            let file = try SafeTensorsFile(path: single)
            entries = file.entries.mapValues { (file: file, entry: $0) }
            path = single
            return
        }
        guard fm.fileExists(atPath: index) else {
            let bin = ["pytorch_model.bin", "pytorch_model.bin.index.json"].first {
                fm.fileExists(atPath: (directory as NSString).appendingPathComponent($0))
            }
            throw ModelError.checkpoint(
                path: directory,
                reason: bin.map {
                    "has \($0) only: PyTorch pickles are not read (save with safe_serialization=True, or convert to "
                        + "safetensors)"
                }
                    ?? "no model.safetensors or model.safetensors.index.json")
        }
        guard let data = fm.contents(atPath: index),
            let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
            let map = json["weight_map"] as? [String: String]
        else {
            throw ModelError.checkpoint(path: index, reason: "not a JSON object with a 'weight_map' of tensor → file")
        }
        var files: [String: SafeTensorsFile] = [:]
        var entries: [String: (file: SafeTensorsFile, entry: SafeTensorsEntry)] = [:]
        for (name, shard) in map.sorted(by: { $0.key < $1.key }) {
            guard !shard.contains("/") && !shard.hasPrefix(".") else {
                throw ModelError.checkpoint(path: index, reason: "shard '\(shard)' is not a file of this folder")
            }
            if files[shard] == nil {
                files[shard] = try SafeTensorsFile(path: (directory as NSString).appendingPathComponent(shard))
            }
            guard let entry = files[shard]!.entries[name] else {
                throw ModelError.checkpoint(
                    path: index, reason: "weight_map puts '\(name)' in \(shard), which has no such tensor")
            }
            entries[name] = (file: files[shard]!, entry: entry)
        }
        self.entries = entries
        path = index
    }

    /// Copies tensor `name` (count floats) into `destination`.
    public func read(_ name: String, into destination: UnsafeMutablePointer<Float>, count: Int) throws {
        guard let e = entries[name] else { throw ModelError.checkpoint(path: path, reason: "no tensor '\(name)'") }
        try e.file.read(name, into: destination, count: count)
    }

    public func floats(_ name: String) throws -> [Float] {
        guard let e = entries[name] else { throw ModelError.checkpoint(path: path, reason: "no tensor '\(name)'") }
        return try e.file.floats(name)
    }
}
