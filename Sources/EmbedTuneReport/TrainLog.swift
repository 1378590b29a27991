import EmbedTuneFormats
import Foundation

/// OUTPUT_DIR/train_log.jsonl as the trainer writes it: one JSON object per line, either a step
/// record (step, epoch, loss, lr, tau, grad_norm, ms_per_step, tokens_per_s) or a held-out
/// evaluation (step, loss, margin, ndcg@10, recall@5, mrr@10, rows, documents). Non-finite
/// numbers are the strings "nan", "inf", "-inf".
public struct TrainLog {
    public struct Step {
        public var step: Int
        public var epoch, loss, lr, tau, gradNorm, msPerStep, tokensPerSecond: Double
    }

    public struct Evaluation {
        public var step: Int
        public var loss, margin, ndcg10, recall5, mrr10: Double
        public var rows: Int
    }

    public var steps: [Step] = []
    public var evaluations: [Evaluation] = []

    public static func load(_ url: URL) throws -> TrainLog {
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw FormatError(url: url, "missing (is this a training output directory?)")
        }
        return try TrainLog(text: try TextFile.read(url.path), file: url.path)
    }

    /// Every error names `file:line`. A resumed run logs again the steps after its checkpoint; the
    /// later record of a step wins.
    public init(text: String, file: String) throws {
        var steps = [Int: Step](), evaluations = [Int: Evaluation]()
        for (number, line) in TextFile.lines(text) {
            guard !line.allSatisfy(\.isWhitespace) else { continue }
            let origin = "\(file):\(number)"
            let record: JSONValue
            do { record = try JSONValue.parse(Data(line.utf8), file: origin) } catch let error as FormatError {
                throw FormatError(file: origin, error.problem.replacingOccurrences(of: "at line 1, ", with: "at "))
            }
            let fields = Fields(record: record, origin: origin)
            if record["ndcg@10"] != nil {
                let e = Evaluation(step: try fields.int("step"), loss: try fields.number("loss"), margin: try fields.number("margin"),
                                   ndcg10: try fields.number("ndcg@10"), recall5: try fields.number("recall@5"),
                                   mrr10: try fields.number("mrr@10"), rows: try fields.int("rows"))
                evaluations[e.step] = e
            } else if record["lr"] != nil {
                let s = Step(step: try fields.int("step"), epoch: try fields.number("epoch"), loss: try fields.number("loss"),
                             lr: try fields.number("lr"), tau: try fields.number("tau"), gradNorm: try fields.number("grad_norm"),
                             msPerStep: try fields.number("ms_per_step"), tokensPerSecond: try fields.number("tokens_per_s"))
                steps[s.step] = s
            } else {
                throw FormatError(file: origin, "neither a step record (with \"lr\") nor an evaluation (with \"ndcg@10\")")
            }
        }
        self.steps = steps.values.sorted { $0.step < $1.step }
        self.evaluations = evaluations.values.sorted { $0.step < $1.step }
    }

    /// Typed field access with errors naming the line and the field.
    struct Fields {
        let record: JSONValue, origin: String

        func number(_ key: String) throws -> Double {
            switch record[key] {
            case .int(let i)?: return Double(i)
            case .double(let d)?: return d
            case .string("nan")?: return .nan
            case .string("inf")?: return .infinity
            case .string("-inf")?: return -.infinity
            case nil: throw FormatError(file: origin, item: key, "missing")
            default: throw FormatError(file: origin, item: key, "not a number")
            }
        }

        func int(_ key: String) throws -> Int {
            guard let value = record[key] else { throw FormatError(file: origin, item: key, "missing") }
            guard let i = value.int else { throw FormatError(file: origin, item: key, "not an integer") }
            return i
        }
    }
}
