/// Named tensors packed one after another in a single flat Float32 buffer.
///
/// Parameters, their gradients and the optimizer moments share one layout, so an update, an
/// all-reduce or a checksum is a loop over one contiguous buffer (llm.c's params_memory idea),
/// while names and shapes stay available for checkpoints.
public struct NamedTensor: Sendable, Equatable {
    public let name: String
    public let shape: [Int]
    public let offset: Int
    public var count: Int { shape.reduce(1, *) }
}

public struct TensorLayout: Sendable, Equatable {
    public private(set) var tensors: [NamedTensor] = []
    private var indexByName: [String: Int] = [:]
    public private(set) var totalCount = 0

    public init() {}

    /// Appends a tensor and returns its offset.
    @discardableResult
    public mutating func add(_ name: String, _ shape: [Int]) -> Int {
        precondition(indexByName[name] == nil, "TensorLayout: duplicate tensor \(name)")
        let tensor = NamedTensor(name: name, shape: shape, offset: totalCount)
        indexByName[name] = tensors.count
        tensors.append(tensor)
        totalCount += tensor.count
        return tensor.offset
    }

    public subscript(name: String) -> NamedTensor? { indexByName[name].map { tensors[$0] } }
}
