import EmbedTuneFormats
import Foundation

extension ModelCard {
    /// The card of a merge's output: a fused PEFT adapter, or (`folded`) the base model with the
    /// fused ΔW added, which sentence-transformers loads as it is. `searchTable` is the per-domain
    /// dev table of a metric-driven search, when one chose the recipe.
    public static func merge(base: String, adapters: [String], spec: MergeSpec, folded: Bool, searchTable: String? = nil) -> ModelCard {
        let baseName = URL(fileURLWithPath: base).lastPathComponent
        let weights = spec.weights ?? Array(repeating: 1, count: adapters.count)
        var card = ModelCard(
            title: folded ? "\(baseName) with \(adapters.count) LoRA adapters fused in" : "Fused LoRA adapter for \(baseName)",
            library: folded ? .sentenceTransformers : .peft, baseModel: base,
            summary: folded
                ? "The base model with the \(spec.method.rawValue) fusion of \(adapters.count) LoRA adapters added to its weights (ΔW = scale·B·A, exact), written by EmbedTune as a Hugging Face + sentence-transformers directory."
                : "A PEFT LoRA adapter: the \(spec.method.rawValue) fusion of \(adapters.count) adapters on ΔW, written by EmbedTune.")
        card.extraTags = ["merge", spec.method.rawValue]
        card.commandLine = currentCommandLine
        var options: [String: JSONValue] = [
            "method": .string(spec.method.rawValue), "adapters": .array(adapters.map(JSONValue.string)),
            "weights": .array(weights.map(JSONValue.double)), "density": .double(spec.density),
            "majority_sign": .string(spec.majoritySign.rawValue), "seed": .int(Int(truncatingIfNeeded: spec.seed)),
        ]
        if let rank = spec.rank { options["rank"] = .int(rank) }
        card.options = .object(options)
        let recipe = Table(header: ["adapter", "weight"], rows: zip(adapters, weights).map { [$0, String(format: "%.3f", $1)] })
        card.sections.append(("Merge recipe", "Method `\(spec.method.rawValue)`, density \(spec.density).\n\n" + recipe.markdown()))
        if let searchTable { card.sections.append(("Fusion search (dev NDCG@10)", searchTable)) }
        return card
    }
}
