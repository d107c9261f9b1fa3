import Cluster
import Config
import Datasets
import Foundation

/// A reward computed outside the trainer (issue 29): a long-lived command spoken to in JSON lines,
/// or an HTTP endpoint taking OpenRLHF's remote reward request (`ExternalRewardRequest`), so that a
/// Python function (`scripts/reward_server.py` wraps TRL's `reward(prompts, completions, **kwargs)`)
/// or a served model rewards the policy without a rebuild. Every rank asks for its own batch.
package final class ExternalRewardSource: RewardSource {
    package static let weight = Key<Double>(
        "rewards.external", 0, "weight of the external reward (rewards.external_command or rewards.external_url)")
    package static let command = Key<String>(
        "rewards.external_command", "",
        "a command run by /bin/sh in the working folder for the whole run: one JSON request line per batch on its "
            + "stdin, one reply line {\"rewards\": [...]} on its stdout (e.g. python3 scripts/reward_server.py "
            + "my_rewards.py:reward)"
    )
    package static let url = Key<String>(
        "rewards.external_url", "",
        "an http:// endpoint POSTed one JSON request per batch (OpenRLHF's remote reward model: query, prompts, "
            + "labels), replying {\"rewards\": [...]}"
    )
    package static let timeout = Key<Double>(
        "rewards.external_timeout", 600, "seconds an external reward may take to reply to one batch", .positive)
    package static let registration = RewardSourceRegistration(
        name: "external", keys: [weight.declaration, command.declaration, url.declaration, timeout.declaration],
        validate: { try check($0.resolved) },
        // Any of its keys set makes it active, so that validation refuses a key set without the others.
        isActive: { c in
            (c.resolved.optional(weight) ?? 0) != 0 || !(c.resolved.optional(command) ?? "").isEmpty
                || !(c.resolved.optional(url) ?? "").isEmpty
                || (c.resolved.optional(timeout) ?? timeout.defaultValue) != timeout.defaultValue
        }
    ) { try make($0) }

    /// Where the rewards come from.
    package enum Server {
        case command(ExternalRewardCommand)
        case http(HTTPEndpoint)
    }

    package let name = "external", weight: Double
    let server: Server, timeout: Double
    /// Each prompt's other dataset fields (`PPOPrompt.extras`), by the prompt's index.
    let extras: [[String: String]]
    private var batchesSent = 0, rewards: [Double] = []

    init(server: Server, weight: Double, timeout: Double, extras: [[String: String]]) {
        self.server = server
        self.weight = weight
        self.timeout = timeout
        self.extras = extras
    }

    /// One of the two servers, with a weight: anything else names the keys.
    static func check(_ c: ResolvedConfig) throws {
        let weight = c[Self.weight], command = c[Self.command], url = c[Self.url]
        guard command.isEmpty || url.isEmpty else {
            throw ConfigError("give rewards.external_command or rewards.external_url, not both")
        }
        guard !(command.isEmpty && url.isEmpty) else {
            throw ConfigError("rewards.external needs rewards.external_command or rewards.external_url")
        }
        guard weight != 0 else {
            let key = command.isEmpty ? "rewards.external_url" : "rewards.external_command"
            throw ConfigError("\(key) is set but rewards.external is 0, so it would never be asked: set a weight")
        }
        if !url.isEmpty { _ = try HTTPEndpoint(url) }
    }

    static func make(_ context: RewardSourceContext) throws -> ExternalRewardSource {
        let c = context.config.resolved
        try check(c)
        let extras = context.prompts.map(\.extras)
        for (i, fields) in extras.enumerated() {
            if let clash = fields.keys.sorted().first(where: ExternalRewardRequest.reservedKeys.contains) {
                let place = context.prompts[i].source.isEmpty ? "prompt \(i + 1)" : context.prompts[i].source
                throw ConfigError(
                    "\(place): its field '\(clash)' has the name of a key of the external reward's request; "
                        + "rename it in the data")
            }
        }
        let server: Server =
            c[Self.url].isEmpty
            ? .command(try ExternalRewardCommand(command: c[Self.command])) : .http(try HTTPEndpoint(c[Self.url]))
        return ExternalRewardSource(server: server, weight: c[Self.weight], timeout: c[Self.timeout], extras: extras)
    }

    /// The request for `batch`, the `number`th this rank sends.
    func request(_ batch: RewardBatch, number: Int) -> ExternalRewardRequest {
        var request = ExternalRewardRequest(
            batch: number, iteration: batch.iteration, prompts: batch.questions, completions: batch.texts,
            answers: batch.answers, tasks: batch.tasks)
        let rows = batch.promptIndices.map { $0 < extras.count ? extras[$0] : [:] }
        for key in Set(rows.flatMap(\.keys)) { request.extras[key] = rows.map { $0[key] } }
        return request
    }

    /// Asks the server on a thread of its own (the wait may be long and must not hold one of the
    /// few threads the roles' tasks run on).
    package func prepare(_ batch: RewardBatch, replicas: (any Transport)?) async throws {
        batchesSent += 1
        let number = batchesSent, line = request(batch, number: number).json(), count = batch.texts.count
        let server = server, timeout = timeout
        rewards = try await withCheckedThrowingContinuation { continuation in
            Thread {
                continuation.resume(
                    with: Result { try Self.ask(server, line, count: count, batch: number, timeout: timeout) })
            }.start()
        }
    }

    /// The `count` rewards the server gives for `line`, the request of this rank's `batch`th batch.
    static func ask(_ server: Server, _ line: String, count: Int, batch: Int, timeout: Double) throws -> [Double] {
        switch server {
        case .command(let command):
            let reply = try command.exchange(line, batch: batch, timeout: timeout)
            return try ExternalRewardReply.rewards(
                reply, count: count, batch: batch, from: "command '\(command.command)'")
        case .http(let endpoint):
            let address = "http://\(endpoint.host):\(endpoint.port)\(endpoint.path)"
            let (status, body): (Int, Data)
            do { (status, body) = try HTTPPost.send(Data(line.utf8), to: endpoint, timeout: timeout) } catch {
                throw ExternalRewardError("external reward (\(address)), batch \(batch): \(error)")
            }
            let text = String(decoding: body, as: UTF8.self)
            guard status == 200 else {
                throw ExternalRewardError(
                    "external reward (\(address)), batch \(batch): HTTP \(status): \(text.prefix(300))")
            }
            return try ExternalRewardReply.rewards(text, count: count, batch: batch, from: address)
        }
    }

    package func scores(_ batch: RewardBatch) throws -> [Double] { rewards }
}
