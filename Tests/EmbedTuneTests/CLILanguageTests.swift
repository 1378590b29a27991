import EmbedTuneFormats
import EmbedTuneTraining
import Foundation
import Testing

/// Every training key, written out so that a key dropped from the table is noticed.
let everyTrainingKeyConfig = """
model = "models/m"
task_type = "reranker"
train_type = "lora"
loss_type = "infonce"
lora_r = 4
lora_alpha = 16
lora_dropout = 0.1
target_modules = ["q_proj", "v_proj"]
use_rslora = true
backbone_dropout = true
base_precision = "bf16"
dataset = "data/d.jsonl"
db = "store.sqlite"
db_dataset = "agri"
db_split = "dev"
split_dataset_ratio = 0.1
max_length = 64
num_negatives = 2
skip_bad_rows = true
query_prompt = "query: "
document_prompt = "passage: "
output_dir = "out"
learning_rate = 2e-4
num_train_epochs = 3
max_steps = 10
per_device_train_batch_size = 2
global_batch_size = 8
gradient_accumulation_steps = 2
warmup_ratio = 0.05
warmup_steps = 3
lr_scheduler_type = "linear"
weight_decay = 0.01
max_grad_norm = 0.5
adam_beta1 = 0.8
adam_beta2 = 0.99
adam_epsilon = 1e-6
eval_steps = 5
save_steps = 5
save_total_limit = 1
dataloader_drop_last = false
batch_sampler = "no_duplicates"
no_duplicates_resample_passes = 5
seed = 7
use_batch = false
mask_fake_negative = true
fake_negative_margin = 0.2
include_qq = true
include_dd = true
mask_duplicates = false
temperature_mode = "learnable"
temperature = 0.03
temperature_end = 0.01
temperature_min = 0.005
temperature_max = 0.5
adaptive_base = 0.09
adaptive_step = 0.02
adaptive_floor = 0.04
adaptive_terms = ["rice", "wheat"]
matryoshka_dims = [32, 16]
matryoshka_weights = [1, 0.5]
gradcache_mini_batch = 4
gather_across_ranks = false
balance_ranks = false
threads = 1
collective_timeout = 60.0
fusion_adapters = ["a1"]
fusion_dev = ["dev/own", "dev/a1"]
preserve_data = "other.jsonl"
preserve_weight = 10
preserve_batch = 8
refresh_negatives_steps = 5
range_min = 1
range_max = 20
max_score = 0.95
min_score = 0.1
absolute_margin = 0.02
relative_margin = 0.05
sampling_strategy = "random"
reranker = "rerankers/r"
reranker_adapter = "rerankers/a"
max_reranker_score = 0.9
reranker_relative_margin = 0.1
num_labels = 1
reranker_loss = "bce"

"""

/// The long names of every option of every command, from ArgumentParser's own description.
func commandOptions() throws -> [(command: String, names: [String], valueName: String?)] {
    let dump = try runCLI(["--experimental-dump-help"])
    #expect(dump.status == 0, "\(dump.stderr)")
    var out = [(command: String, names: [String], valueName: String?)]()
    func walk(_ command: JSONValue, _ path: String) {
        for argument in command["arguments"]?.array ?? [] where ["option", "flag"].contains(argument["kind"]?.string) {
            let names = (argument["names"]?.array ?? []).filter { $0["kind"]?.string == "long" }.compactMap { $0["name"]?.string }
            out.append((path, names, argument["valueName"]?.string))
        }
        for sub in command["subcommands"]?.array ?? [] { walk(sub, path + " " + (sub["commandName"]?.string ?? "?")) }
    }
    walk(try JSONValue.parse(Data(dump.stdout.utf8), file: "dump-help")["command"] ?? .null, "embedtune")
    return out
}

@Suite("one command-line language")
struct CLILanguageTests {
    @Test("every long option of every command is snake_case, and each snake_case name has its kebab-case twin")
    func spellings() throws {
        let options = try commandOptions()
        #expect(options.count > 100)
        for (command, names, _) in options {
            for name in names where name.contains("-") {
                #expect(names.contains(name.replacingOccurrences(of: "-", with: "_")), "\(command) --\(name) has no snake_case twin")
            }
            for name in names where name.contains("_") {
                #expect(names.contains(name.replacingOccurrences(of: "_", with: "-")), "\(command) --\(name) has no kebab-case twin")
            }
        }
        let help = try runCLI(["train", "--help"]).stdout
        for option in TrainingOption.all {
            #expect(help.contains("--\(option.key), --\(option.key.replacingOccurrences(of: "_", with: "-"))") || help.contains("--\(option.key) <"),
                    "train --help does not list --\(option.key)")
        }
    }

    @Test("one name per concept: hard negatives are --num_negatives and a store dataset is --db_dataset wherever they appear")
    func oneNamePerConcept() throws {
        let all = try commandOptions()
        func options(of command: String) -> [String] { all.filter { $0.command == command }.flatMap(\.names) }
        for (command, names, _) in all {
            if names.contains(where: { $0.contains("negatives") }) { #expect(names.first == "num_negatives", "\(command): \(names)") }
            // --dataset is a file everywhere; a store's dataset is --db_dataset beside --db.
            if names.contains("db") && command != "embedtune data list" {
                #expect(options(of: command).contains("db_dataset"), "\(command): --db without --db_dataset")
            }
        }
        let keys = TrainingOption.all.map(\.key)
        #expect(keys.contains("num_negatives") && keys.contains("db_dataset") && !keys.contains("hard_negatives"))
    }

    @Test("a TOML config with every training key loads, and so does each key as a flag in either spelling")
    func everyKey() throws {
        let literalKeys = everyTrainingKeyConfig.split(separator: "\n").map { String($0.split(separator: " ")[0]) }
        #expect(Set(literalKeys) == Set(TrainingOption.all.map(\.key)) && literalKeys.count == TrainingOption.all.count)
        var fromConfig = TrainingOptions()
        try fromConfig.apply(config: TOML.parse(everyTrainingKeyConfig, file: "every.toml"), file: "every.toml")
        for option in TrainingOption.all where !["train_type", "loss_type"].contains(option.key) {  // one valid value each
            #expect(option.value(fromConfig) != option.value(TrainingOptions()), "\(option.key) kept its default")
        }
        // The table writes it back as TOML and as flags; both read back to the same options.
        var fromText = TrainingOptions(), fromSnake = TrainingOptions(), fromKebab = TrainingOptions()
        try fromText.apply(config: TOML.parse(fromConfig.tomlText, file: "written.toml"), file: "written.toml")
        #expect(fromText == fromConfig)
        for option in TrainingOption.all {
            let value = try #require(option.argumentText(fromConfig))
            try fromSnake.apply(arguments: ["--\(option.key)", value])
            try fromKebab.apply(arguments: ["--\(option.key.replacingOccurrences(of: "_", with: "-"))=\(value)"])
        }
        #expect(fromSnake == fromConfig && fromKebab == fromConfig)
        let decoded = try JSONDecoder().decode(TrainingOptions.self, from: JSONEncoder().encode(fromConfig))
        #expect(decoded == fromConfig)
        // Through the CLI: every key but dataset (the config names a store instead).
        let tmp = try Paths.temporaryDirectory()
        let config = tmp.appendingPathComponent("every.toml")
        try everyTrainingKeyConfig.replacingOccurrences(of: "dataset = \"data/d.jsonl\"\n", with: "")
            .write(to: config, atomically: true, encoding: .utf8)
        let r = try runCLI(["train", "--config", config.path, "--print_config"])
        #expect(r.status == 0, "\(r.stderr)")
        var printed = TrainingOptions()
        try printed.apply(config: TOML.parse(r.stdout, file: "printed"), file: "printed")
        fromConfig.dataset = ""
        #expect(printed == fromConfig)
    }

    @Test("the [infonce] table and the hard_negatives spelling of the shipped configs load")
    func shippedConfigs() throws {
        for name in ["minilm-faq", "e5-agri-zh", "qwen3-embedding-agri"] {
            let url = Paths.repository.appendingPathComponent("configs/\(name).toml")
            var o = TrainingOptions()
            try o.apply(config: TOML.parse(String(contentsOf: url, encoding: .utf8), file: url.path), file: url.path)
            #expect(o.infonce.maskFakeNegative && o.numNegatives > 0, "\(name)")
        }
        var o = TrainingOptions()
        try o.apply(config: TOML.parse("hard_negatives = 4\n[infonce]\ninclude_qq = true\n", file: "old.toml"), file: "old.toml")
        #expect(o.numNegatives == 4 && o.infonce.includeQQ)
    }

    @Test("--backbone_dropout, --backbone_dropout true and --backbone_dropout false all parse, in both spellings")
    func booleans() throws {
        let base = ["train", "--model", "m", "--dataset", "d.jsonl", "--print_config"]
        for (words, expected) in [(["--backbone_dropout"], true), (["--backbone_dropout", "true"], true), (["--backbone_dropout", "false"], false),
                                  (["--backbone-dropout", "--lora_r", "3"], true), (["--backbone_dropout=false"], false),
                                  (["--backbone_dropout", "yes"], true), (["--use_rslora", "--backbone_dropout"], true)] {
            let r = try runCLI(base + words)
            #expect(r.status == 0 && r.stdout.contains("backbone_dropout = \(expected)"), "\(words): \(r.stderr)")
        }
        // An ArgumentParser-declared boolean of another command: info --json.
        let model = Paths.fixtures.appendingPathComponent("tiny-qwen3").path
        for (words, json) in [(["--json"], true), (["--json", "true"], true), (["--json", "false"], false), (["--json", "--model", model], true)] {
            let r = try runCLI(["info"] + words)
            #expect(r.status == 0 && r.stdout.hasPrefix("{") == json, "\(words): \(r.stderr)")
        }
    }

    @Test("bad training options: unknown keys and flags, wrong types and out-of-range values are one-line errors with exit 1")
    func badOptions() throws {
        let tmp = try Paths.temporaryDirectory()
        let config = tmp.appendingPathComponent("bad.toml")
        let base = ["train", "--model", "m", "--dataset", "d.jsonl", "--print_config"]
        for (toml, message) in [("lora_rank = 4\n", "bad.toml: lora_rank: unknown option"),
                                ("lora_r = \"four\"\n", "bad.toml: lora_r: expected integer, got \"four\""),
                                ("[infonce]\nuse_batches = true\n", "bad.toml: infonce.use_batches: unknown option"),
                                ("target_modules = \"q\"\n", "bad.toml: target_modules: expected list of strings"),
                                ("lora_dropout = 1.5\n", "--lora_dropout must be in [0, 1) (got 1.5)")] {
            try toml.write(to: config, atomically: true, encoding: .utf8)
            let r = try runCLI(base + ["--config", config.path])
            #expect(r.status == 1 && r.stderr.contains(message) && r.stderr.split(separator: "\n").count == 1, "\(toml): \(r.stderr)")
        }
        for (words, message) in [(["--lora_rank", "4"], "--lora_rank: unknown option"), (["--lora_r", "x"], "--lora_r: expected integer, got \"x\""),
                                 (["--max_steps"], "--max_steps: needs a value"), (["--db", "s.sqlite"], "--dataset FILE or --db STORE")] {
            let r = try runCLI(base + words)
            #expect(r.status == 1 && r.stderr.contains(message), "\(words): \(r.stderr)")
        }
    }

    @Test("threads from a TOML config sets the compute threads of the run")
    func threadsFromConfig() throws {
        let tmp = try Paths.temporaryDirectory()
        let data = tmp.appendingPathComponent("d.jsonl"), config = tmp.appendingPathComponent("run.toml")
        try tinyDataset(data, rows: 8)
        try """
        model = "\(Paths.fixtures.appendingPathComponent("tiny-qwen3").path)"
        dataset = "\(data.path)"
        output_dir = "\(tmp.appendingPathComponent("out").path)"
        max_steps = 1
        threads = 3
        """.write(to: config, atomically: true, encoding: .utf8)
        let r = try runCLI(["train", "--config", config.path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains(" × 3)"), "\(r.stdout)")
    }
}
