import EmbedTuneData
import EmbedTuneFormats
import EmbedTuneModels
import EmbedTuneSearch
import EmbedTuneTokenizers
import Foundation

/// One reader of outside files under fuzzing: the input is split into `files.count` parts, each
/// written under its name in a fresh directory (an empty part writes no file), and `run` opens
/// them the way the CLI does. A thrown error is a pass; a trap, a sanitizer report or a hang is a
/// finding.
struct FuzzTarget {
    let name: String
    /// The file names the parts are written to, relative to the run directory.
    let files: [String]
    let run: (_ directory: URL, _ parts: [[UInt8]]) throws -> Void

    static let all: [FuzzTarget] = [
        FuzzTarget(name: "safetensors", files: ["model.safetensors"]) { dir, _ in
            let file = try SafetensorsFile(url: dir.appendingPathComponent("model.safetensors"))
            for name in file.names {
                let entry = try file.entry(name)
                _ = file.mappedFloats(entry)
                try withFloats(entry.count) { try file.read(entry, into: $0) }
            }
        },
        FuzzTarget(name: "safetensors-index", files: ["model.safetensors.index.json", "model-00001-of-00001.safetensors"]) { dir, _ in
            let store = try WeightStore(directory: dir)
            for name in store.names {
                guard let shape = store.shape(of: name) else { continue }
                _ = try store.mapped(name, shape: shape)
                try withFloats(shape.reduce(1, *)) { try store.read(name, shape: shape, into: $0) }
            }
        },
        FuzzTarget(name: "gguf", files: ["model.gguf"]) { dir, _ in
            let url = dir.appendingPathComponent("model.gguf")
            let file = try GGUFFile(url: url)
            for info in file.tensors {
                _ = file.rawBytes(info)
                try withFloats(info.count) { try file.read(info, into: $0) }
            }
            let model = try ModelDirectory(url)
            encodeSamples(try model.loadTokenizer(), text: [])
        },
        FuzzTarget(name: "e5s1", files: ["model.e5s1"]) { dir, _ in
            let url = dir.appendingPathComponent("model.e5s1")
            let file = try E5S1.File(url: url)
            for entry in file.tensors { _ = try file.floats(entry.name) }
            _ = try E5S1.precompiledCharsmap(file.normalization)
            let converted = dir.appendingPathComponent("converted")
            _ = try E5S1.convert(file: url, to: converted, overwrite: true)
            encodeSamples(try Tokenizer.load(tokenizerJSON: converted.appendingPathComponent("tokenizer.json")), text: [])
        },
        FuzzTarget(name: "tokenizer-json", files: ["tokenizer.json", "text.txt"]) { dir, parts in
            encodeSamples(try Tokenizer.load(tokenizerJSON: dir.appendingPathComponent("tokenizer.json")), text: parts[1])
        },
        FuzzTarget(name: "tiktoken", files: ["ranks.tiktoken", "text.txt"]) { dir, parts in
            encodeSamples(try Tokenizer.loadTiktoken(dir.appendingPathComponent("ranks.tiktoken")), text: parts[1])
        },
        FuzzTarget(name: "model-config", files: ["config.json", "modules.json", "1_Pooling/config.json", "config_sentence_transformers.json",
                                                "sentence_bert_config.json", "vocab.txt", "tokenizer_config.json"]) { dir, _ in
            let model = try ModelDirectory(dir)
            _ = model.maxSequenceLength
            if ModelDirectory.decoderTypes.contains(model.modelType) { _ = try? model.decodeConfig(QwenConfig.self) }
            else { _ = try? model.decodeConfig(BertConfig.self) }
            // A cross-encoder reads its labels, activation and tokenizer before the (absent) weights.
            _ = try? CrossEncoder(directory: model)
            encodeSamples(try model.loadTokenizer(), text: [])
        },
        FuzzTarget(name: "toml", files: ["config.toml"], run: TrainingFuzzTargets.toml),
        FuzzTarget(name: "rows", files: ["rows.input"], run: runRows),
        FuzzTarget(name: "beir", files: ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"]) { dir, _ in
            _ = try? RetrievalSet.loadBEIRDirectory(dir.path, splits: ["test"])
            _ = try FuzzStore.shared.importDataset(name: "beir", format: .beir, inputs: ImportInputs(input: dir.path), replace: true)
        },
        FuzzTarget(name: "npy", files: ["matrix.npy"]) { dir, _ in
            _ = try NPY.read(dir.appendingPathComponent("matrix.npy"))
        },
        FuzzTarget(name: "peft", files: ["adapter_config.json", "adapter_model.safetensors"]) { dir, _ in
            _ = try PEFTAdapter.load(dir)
            _ = try PEFTAdapter.savedModules(dir)
        },
        FuzzTarget(name: "checkpoint", files: ["trainer_state.json", "state.bin.zst"], run: TrainingFuzzTargets.checkpoint),
        FuzzTarget(name: "index", files: ["index.json", "documents.jsonl", "embeddings.npy"], run: runIndex),
    ]

    static func named(_ name: String) -> FuzzTarget? { all.first { $0.name == name } }

    /// Splits `bytes` into the target's files, writes them into `directory` and runs the reader.
    func callAsFunction(_ bytes: [UInt8], in directory: URL) throws {
        let parts = FuzzParts.split(bytes, into: files.count)
        for (part, name) in zip(parts, files) { FuzzScratch.write(part, name, in: directory) }
        try run(directory, parts)
    }
}

/// Rows as `train --dataset FILE` and `data import` read them. The input's first byte picks the
/// file's extension (jsonl, csv, tsv), the import layout and whether bad rows are skipped; the
/// rest is the file.
private func runRows(_ dir: URL, _ parts: [[UInt8]]) throws {
    let selector = Int(parts[0].first ?? 0)
    let ext = ["jsonl", "csv", "tsv"][selector % 3]
    let format: ImportFormat = [.pairs, .msSwift, .sentenceTransformers][(selector / 3) % 3]
    let path = FuzzScratch.write(Array(parts[0].dropFirst()), "rows.\(ext)", in: dir, keepEmpty: true).path
    _ = try? TripletReader.read(path, skipBadRows: selector & 0x80 != 0)
    _ = try FuzzStore.shared.importDataset(name: "rows", format: format, inputs: ImportInputs(input: path), replace: true)
}

/// An index directory as `search` and `serve` open it: the manifest, documents and float rows come
/// from the input; index.faiss is a valid FAISS file (4 rows: float Flat of 8 dimensions, or
/// binary BFlat of 16 bits when the manifest says binary), since FAISS's own reader is not ours to
/// fuzz. An index that opens is searched.
private func runIndex(_ dir: URL, _ parts: [[UInt8]]) throws {
    let binary = String(decoding: parts[0], as: UTF8.self).contains("binary")
    FuzzScratch.write(binary ? FuzzIndexFiles.binary : FuzzIndexFiles.float, "index.faiss", in: dir)
    let index = try VectorIndex(directory: dir)
    let dim = index.manifest.dimension
    guard dim > 0 && dim <= 4096 else { return }
    _ = try index.search(queries: (0..<(2 * dim)).map { Float($0 % 7) - 3 }, k: 3, rescoreMultiplier: 2)
}

/// The two fixed FAISS files of the index target, made once per process (read back with POSIX
/// calls: Data(contentsOf:)'s buffer shows as a first-run leak, see fuzz/lsan.supp).
enum FuzzIndexFiles {
    static let float: [UInt8] = make(binary: false)
    static let binary: [UInt8] = make(binary: true)

    static func make(binary: Bool) -> [UInt8] {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("embedtune-fuzz-\(getpid())-\(binary).faiss")
        do {
            let index = try FaissIndex(factory: binary ? "BFlat" : "Flat", dim: binary ? 16 : 8, binary: binary)
            let rows: [UInt8] = binary ? (0..<8).map { UInt8($0 * 37 & 0xFF) } : (0..<32).flatMap { i in withUnsafeBytes(of: Float(i % 5) - 2) { Array($0) } }
            try rows.withUnsafeBytes { try index.add(rows: 4, $0.baseAddress!, ids: [0, 1, 2, 3]) }
            try index.write(to: url)
            defer { try? FileManager.default.removeItem(at: url) }
            guard let file = fopen(url.path, "rb") else { fatalError("cannot read \(url.path)") }
            defer { fclose(file) }
            var bytes = [UInt8](), chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let got = fread(&chunk, 1, chunk.count, file)
                if got == 0 { break }
                bytes += chunk[0..<got]
            }
            return bytes
        } catch { fatalError("cannot make the fuzz target's FAISS file: \(error)") }
    }
}

/// One dataset store per process, outside the run directory: opening SQLite per input would
/// spend most of each run on the schema.
enum FuzzStore {
    nonisolated(unsafe) static let shared: DatasetStore = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("embedtune-fuzz-\(getpid())/store.sqlite")
        try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        do { return try DatasetStore(path: url.path) } catch { fatalError("cannot create the fuzz dataset store: \(error)") }
    }()
}

/// Encodes fixed strings that reach the normaliser, pre-tokeniser, model and post-processor
/// paths, plus the input's own text, and decodes the ids back. One text at a time: encodeBatch's
/// worker threads keep an allocation past each run, which makes libFuzzer run a full leak check
/// after every input (ten times slower), and add thread scheduling to the coverage.
func encodeSamples(_ tokenizer: Tokenizer, text: [UInt8]) {
    let samples = ["Hello, world!", "  héllo\tWORLD ünïcödé 你好 🙂 ﬁ ＡＢＣ", "", "a", String(repeating: "ab ", count: 40),
                   "<|endoftext|>[CLS] <s> </s> [UNK]", "\u{0}\u{7F}\u{200B}\u{FEFF}\r\n", String(decoding: text, as: UTF8.self)]
    for sample in samples {
        let ids = tokenizer.encode(sample)
        _ = tokenizer.decode(ids, skipSpecialTokens: true)
        _ = tokenizer.encode(sample, addSpecialTokens: false, maxLength: 8)
        for maxLength in [nil, 3, 8] { _ = try? tokenizer.encodePair(sample, samples[1], maxLength: maxLength) }
    }
    _ = tokenizer.pad(samples.map { tokenizer.encode($0) })
}

/// Calls `body` with room for `count` floats. The readers bound `count` by the file's size
/// before they hand it out, so this allocates what the input justifies.
func withFloats(_ count: Int, _ body: (UnsafeMutablePointer<Float>) throws -> Void) throws {
    let buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
    defer { buffer.deallocate() }
    try body(buffer)
}
