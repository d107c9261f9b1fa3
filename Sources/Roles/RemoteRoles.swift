import Cluster
import Foundation
import Models

/// Role calls over a Transport: a `RoleServer` on the hosting rank answers requests from the
/// controller (rank 0); `Remote*` proxies conform to the role protocols and forward each call.
/// Every request names its own response tag, so concurrent calls never take each other's replies.
enum RoleMethod: Int {
    case stop = 0, policyGenerate, policyLogProbs, policyTrain, criticValues, criticTrain, referenceLogProbs,
        rewardScores
    case policySnapshots, policyRestore, criticSnapshots, criticRestore
}

let requestTag = 100

extension WireWriter {
    mutating func options(_ o: SamplingOptions) {
        float(o.temperature)
        int(o.topK)
        float(o.topP)
        int(o.maxNewTokens)
        bool(o.eosTokenId != nil)
        int(Int(o.eosTokenId ?? 0))
        int32s(o.stopTokenIds)
        uint64(o.seed)
    }
    mutating func generation(_ g: GenerationResult) {
        sequences(g.tokens)
        floatRows(g.logProbs)
        bool(g.hiddenStates != nil)
        floatRows(g.hiddenStates ?? [])
        int(g.endedWithEOS.count)
        for e in g.endedWithEOS { bool(e) }
    }
}

extension WireWriter {
    mutating func ints(_ v: [Int]) {
        int(v.count)
        for x in v { int(x) }
    }
    mutating func policyObjective(_ o: PolicyObjective) {
        switch o {
        case .weightedLogLikelihood(let weights):
            int(0)
            floatRows(weights)
        case .ppo(let t):
            int(1)
            ints(t.promptLengths)
            floatRows(t.oldLogProbs)
            floatRows(t.advantages)
            float(t.clipLow)
            float(t.clipHigh)
            float(t.dualClip)
            float(t.entropyCoefficient)
            ints(t.divisors)
            bool(t.sequenceRatio)
        }
    }
    mutating func criticObjective(_ o: CriticObjective) {
        switch o {
        case .regression(let targets, let weights):
            int(0)
            floatRows(targets)
            floatRows(weights)
        case .clippedValue(let lengths, let old, let returns, let clip):
            int(1)
            ints(lengths)
            floatRows(old)
            floatRows(returns)
            float(clip)
        }
    }
    /// name → (parameters, m, v, step), names in sorted order.
    mutating func snapshots(_ s: [String: TrainableSnapshot]) {
        int(s.count)
        for name in s.keys.sorted() {
            let t = s[name]!
            string(name)
            floats(t.parameters)
            floats(t.m)
            floats(t.v)
            int(t.step)
        }
    }
    mutating func stepShape(_ s: StepShape) {
        int(s.microBatch)
        int(s.tokens)
    }
    mutating func stats(_ s: StepStats) {
        float(s.loss)
        float(s.gradNorm)
        float(s.clipFraction)
        float(s.entropy)
        float(s.approxKL)
    }
}

extension WireReader {
    mutating func ints() throws -> [Int] { try (0..<(try count(elementSize: 8))).map { _ in try int() } }
    mutating func policyObjective() throws -> PolicyObjective {
        switch try int() {
        case 0: return .weightedLogLikelihood(weights: try floatRows())
        case 1:
            return .ppo(
                PPOTargets(
                    promptLengths: try ints(), oldLogProbs: try floatRows(), advantages: try floatRows(),
                    clipLow: try float(), clipHigh: try float(), dualClip: try float(), entropyCoefficient: try float(),
                    divisors: try ints(), sequenceRatio: try bool())
            )
        case let k: throw RoleError("unknown policy objective \(k)")
        }
    }
    mutating func criticObjective() throws -> CriticObjective {
        switch try int() {
        case 0: return .regression(targets: try floatRows(), weights: try floatRows())
        case 1:
            return .clippedValue(
                promptLengths: try ints(), oldValues: try floatRows(), returns: try floatRows(), clip: try float())
        case let k: throw RoleError("unknown critic objective \(k)")
        }
    }
    mutating func snapshots() throws -> [String: TrainableSnapshot] {
        var out: [String: TrainableSnapshot] = [:]
        for _ in 0..<(try count(elementSize: 8)) {
            let name = try string()
            out[name] = TrainableSnapshot(parameters: try floats(), m: try floats(), v: try floats(), step: try int())
        }
        return out
    }
    mutating func stepShape() throws -> StepShape {
        let shape = StepShape(microBatch: try int(), tokens: try int())
        guard shape.microBatch >= 0, shape.tokens >= 0 else { throw RoleError("negative step shape \(shape)") }
        return shape
    }
    mutating func stats() throws -> StepStats {
        StepStats(
            loss: try float(), gradNorm: try float(), clipFraction: try float(), entropy: try float(),
            approxKL: try float())
    }
}

extension WireReader {
    mutating func options() throws -> SamplingOptions {
        var o = SamplingOptions(temperature: try float(), topK: try int(), topP: try float(), maxNewTokens: try int())
        let hasEOS = try bool(), eos = try int()
        guard let eosId = Int32(exactly: eos) else { throw RoleError("end-of-sequence id \(eos) is not a token id") }
        o.eosTokenId = hasEOS ? eosId : nil
        o.stopTokenIds = try int32s()
        o.seed = try uint64()
        return o
    }
    mutating func generation() throws -> GenerationResult {
        let tokens = try sequences(), logProbs = try floatRows()
        let hasHidden = try bool(), hidden = try floatRows()
        let n = try count(elementSize: 1)
        return GenerationResult(
            tokens: tokens, logProbs: logProbs, hiddenStates: hasHidden ? hidden : nil,
            endedWithEOS: try (0..<n).map { _ in try bool() })
    }
}

/// Serves the roles this rank hosts until the controller sends `stop`.
public final class RoleServer: @unchecked Sendable {
    let transport: any Transport
    let controller: Int
    let policy: (any PolicyRole)?, critic: (any CriticRole)?, reference: (any ReferenceRole)?, reward: (any RewardRole)?

    public init(
        transport: any Transport, controller: Int = 0, policy: (any PolicyRole)? = nil, critic: (any CriticRole)? = nil,
        reference: (any ReferenceRole)? = nil, reward: (any RewardRole)? = nil
    ) {
        self.transport = transport
        self.controller = controller
        self.policy = policy
        self.critic = critic
        self.reference = reference
        self.reward = reward
    }

    /// Answers requests until `stop`; returns how many it served.
    @discardableResult
    public func serve() async throws -> Int {
        var served = 0
        while true {
            var request = try WireReader(try await transport.receive(from: controller, tag: requestTag))
            guard let method = RoleMethod(rawValue: try request.int()) else { throw RoleError("unknown role method") }
            let replyTag = try request.int()
            if method == .stop { return served }
            var reply = WireWriter()
            do {
                let payload = try await answer(method, &request)
                reply.bool(true)
                reply = payload(reply)
            } catch {
                reply = WireWriter()
                reply.bool(false)
                reply.string("rank \(transport.rank) (\(method.role)): \(error)")
            }
            try await transport.send(reply.data, to: controller, tag: replyTag)
            served += 1
        }
    }

    private func hosted<R>(_ role: R?, _ kind: RoleKind) throws -> R {
        guard let role else { throw RoleError("this rank does not host the \(kind.rawValue) role") }
        return role
    }

    /// A reply that writes what `body` writes.
    private func writing(_ body: @escaping (inout WireWriter) -> Void) -> (WireWriter) -> WireWriter {
        { writer in
            var w = writer
            body(&w)
            return w
        }
    }

    private func answer(_ method: RoleMethod, _ r: inout WireReader) async throws -> (WireWriter) -> WireWriter {
        switch method {
        case .policyGenerate:
            let prompts = try r.sequences(), options = try r.options()
            let g = try await hosted(policy, .policy).generate(prompts: prompts, options: options)
            return writing { $0.generation(g) }
        case .policyLogProbs:
            let rows = try await hosted(policy, .policy).logProbs(try r.sequences())
            return writing { $0.floatRows(rows) }
        case .policyTrain:
            let s = try r.sequences(), objective = try r.policyObjective(), shape = try r.stepShape()
            let lr = try r.float(), clip = try r.float()
            let stats = try await hosted(policy, .policy).trainStep(
                s, objective: objective, shape: shape, learningRate: lr, maxGradNorm: clip)
            return writing { $0.stats(stats) }
        case .criticValues:
            let rows = try await hosted(critic, .critic).values(try r.sequences())
            return writing { $0.floatRows(rows) }
        case .criticTrain:
            let s = try r.sequences(), objective = try r.criticObjective(), shape = try r.stepShape()
            let lr = try r.float(), clip = try r.float()
            let stats = try await hosted(critic, .critic).trainStep(
                s, objective: objective, shape: shape, learningRate: lr, maxGradNorm: clip)
            return writing { $0.stats(stats) }
        case .referenceLogProbs:
            let rows = try await hosted(reference, .reference).logProbs(try r.sequences())
            return writing { $0.floatRows(rows) }
        case .rewardScores:
            let scores = try await hosted(reward, .reward).scores(try r.sequences())
            return writing { $0.floats(scores) }
        case .policySnapshots:
            let s = try await hosted(policy, .policy).snapshots()
            return writing { $0.snapshots(s) }
        case .policyRestore:
            try await hosted(policy, .policy).restore(try r.snapshots())
            return { $0 }
        case .criticSnapshots:
            let s = try await hosted(critic, .critic).snapshots()
            return writing { $0.snapshots(s) }
        case .criticRestore:
            try await hosted(critic, .critic).restore(try r.snapshots())
            return { $0 }
        case .stop:
            return { $0 }
        }
    }
}

extension RoleMethod {
    var role: String {
        switch self {
        case .policyGenerate, .policyLogProbs, .policyTrain, .policySnapshots, .policyRestore: return "policy"
        case .criticValues, .criticTrain, .criticSnapshots, .criticRestore: return "critic"
        case .referenceLogProbs: return "reference"
        case .rewardScores: return "reward"
        case .stop: return "server"
        }
    }
}

/// The controller's end of one hosting rank.
public final class RoleClient: @unchecked Sendable {
    let transport: any Transport
    public let host: Int
    private let lock = NSLock()
    private var next = 0

    public init(transport: any Transport, host: Int) {
        self.transport = transport
        self.host = host
    }

    func call(_ method: RoleMethod, _ build: (inout WireWriter) -> Void) async throws -> WireReader {
        let tag = lock.withLock {
            next += 1
            return 1000 + next % 30000
        }
        var request = WireWriter()
        request.int(method.rawValue)
        request.int(tag)
        build(&request)
        try await transport.send(request.data, to: host, tag: requestTag)
        var reply = try WireReader(try await transport.receive(from: host, tag: tag))
        guard try reply.bool() else { throw RoleError(try reply.string()) }
        return reply
    }

    /// Ends the server loop on the host.
    public func stop() async throws {
        var request = WireWriter()
        request.int(RoleMethod.stop.rawValue)
        request.int(0)
        try await transport.send(request.data, to: host, tag: requestTag)
    }
}

public struct RemotePolicy: PolicyRole {
    let client: RoleClient
    public init(_ client: RoleClient) { self.client = client }
    public func generate(prompts: [[Int32]], options: SamplingOptions) async throws -> GenerationResult {
        var r = try await client.call(.policyGenerate) {
            $0.sequences(prompts)
            $0.options(options)
        }
        return try r.generation()
    }
    public func logProbs(_ sequences: [[Int32]]) async throws -> [[Float]] {
        var r = try await client.call(.policyLogProbs) { $0.sequences(sequences) }
        return try r.floatRows()
    }
    public func trainStep(
        _ sequences: [[Int32]], objective: PolicyObjective, shape: StepShape, learningRate: Float, maxGradNorm: Float
    ) async throws -> StepStats {
        var r = try await client.call(.policyTrain) {
            $0.sequences(sequences)
            $0.policyObjective(objective)
            $0.stepShape(shape)
            $0.float(learningRate)
            $0.float(maxGradNorm)
        }
        return try r.stats()
    }
    public func snapshots() async throws -> [String: TrainableSnapshot] {
        var r = try await client.call(.policySnapshots) { _ in }
        return try r.snapshots()
    }
    public func restore(_ snapshots: [String: TrainableSnapshot]) async throws {
        _ = try await client.call(.policyRestore) { $0.snapshots(snapshots) }
    }
}

public struct RemoteCritic: CriticRole {
    let client: RoleClient
    public init(_ client: RoleClient) { self.client = client }
    public func values(_ sequences: [[Int32]]) async throws -> [[Float]] {
        var r = try await client.call(.criticValues) { $0.sequences(sequences) }
        return try r.floatRows()
    }
    public func trainStep(
        _ sequences: [[Int32]], objective: CriticObjective, shape: StepShape, learningRate: Float, maxGradNorm: Float
    ) async throws -> StepStats {
        var r = try await client.call(.criticTrain) {
            $0.sequences(sequences)
            $0.criticObjective(objective)
            $0.stepShape(shape)
            $0.float(learningRate)
            $0.float(maxGradNorm)
        }
        return try r.stats()
    }
    public func snapshots() async throws -> [String: TrainableSnapshot] {
        var r = try await client.call(.criticSnapshots) { _ in }
        return try r.snapshots()
    }
    public func restore(_ snapshots: [String: TrainableSnapshot]) async throws {
        _ = try await client.call(.criticRestore) { $0.snapshots(snapshots) }
    }
}

public struct RemoteReference: ReferenceRole {
    let client: RoleClient
    public init(_ client: RoleClient) { self.client = client }
    public func logProbs(_ sequences: [[Int32]]) async throws -> [[Float]] {
        var r = try await client.call(.referenceLogProbs) { $0.sequences(sequences) }
        return try r.floatRows()
    }
}

public struct RemoteReward: RewardRole {
    let client: RoleClient
    public init(_ client: RoleClient) { self.client = client }
    public func scores(_ sequences: [[Int32]]) async throws -> [Float] {
        var r = try await client.call(.rewardScores) { $0.sequences(sequences) }
        return try r.floats()
    }
}
