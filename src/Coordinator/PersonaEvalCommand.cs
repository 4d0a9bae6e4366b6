// `duck eval persona`: does a fine-tuned model speak as Duck? On the held-out persona conversations it compares
// the per-token loss on Duck's replies before (the base checkpoint) and after fine-tuning, measures how many generated
// replies end their turn, and shows both models' replies to the eight personality prompts side by side.
using System.CommandLine;
using Duck.Core.Text;
using Duck.Inference.Engine;
using Duck.Inference.Export;
using Duck.Inference.Gguf;
using Spectre.Console;

namespace Duck.Coordinator;

public static class PersonaEvalCommand
{
    public static Command Command()
    {
        var model = new Option<string>("--model") { Description = "The fine-tuned GGUF model", Required = true };
        var baseModel = new Option<string?>("--base") { Description = "The model before fine-tuning: a GGUF file or a checkpoint (default: the base checkpoint recorded in MODEL by duck export)" };
        var data = new Option<string?>("--data") { Description = "Held-out conversations (default: the .heldout.jsonl sibling of the persona file)" };
        var seed = new Option<int>("--seed") { Description = "Sampling seed of the replies (temperature 0.8, top-k 40, as duck test)", DefaultValueFactory = _ => 42 };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Most tokens per generated reply", DefaultValueFactory = _ => 64 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var kv = new Option<string>("--kv-cache") { Description = "KV cache element type of both models: bf16 or int8", DefaultValueFactory = _ => "bf16" };
        var cmd = new Command("persona", "Held-out persona loss before/after fine-tuning, clean turn endings, and the 8 prompts side by side")
        {
            model, baseModel, data, seed, maxTokens, json, kv,
        };
        cmd.SetAction((pr, ct) =>
        {
            string modelPath = pr.GetValue(model)!;
            if (!File.Exists(modelPath)) throw new UserErrorException($"model file '{modelPath}' does not exist");
            string dataPath = pr.GetValue(data) ?? FinetuneCommands.HeldOutSibling(Path.GetFullPath(FinetuneCommands.DefaultPersonaFile))
                              ?? throw new UserErrorException($"no held-out persona file next to {FinetuneCommands.DefaultPersonaFile}; pass --data");
            var conversations = FinetuneCommands.LoadPersona(dataPath);
            string baseSource = pr.GetValue(baseModel) ?? RecordedBase(modelPath)
                ?? throw new UserErrorException($"'{modelPath}' does not record the checkpoint it was fine-tuned from; pass --base (a GGUF file or checkpoint)");
            var sampling = new SamplingOptions { Temperature = 0.8f, TopK = 40, Seed = pr.GetValue(seed), MaxTokens = pr.GetValue(maxTokens) };
            try { sampling.Validate(); }
            catch (ArgumentException e) { throw new UserErrorException(e.Message); }

            using var after = InferenceModel.Load(modelPath);
            using var before = LoadBase(baseSource);
            before.KvCacheType = after.KvCacheType = Cli.ParseKvCache(pr.GetValue(kv)!);
            if (before.Config with { Ternary = after.Config.Ternary } != after.Config)
                throw new UserErrorException($"the base model ({baseSource}) and '{modelPath}' have different architectures");
            var lossBefore = PersonaEvaluation.ReplyLoss(before, conversations);
            var lossAfter = PersonaEvaluation.ReplyLoss(after, conversations);
            var repliesAfter = PersonaEvaluation.Replies(after, conversations, sampling, ct).ToList();
            var repliesBefore = PersonaEvaluation.Replies(before, conversations, sampling, ct).ToList();
            var prompts = InferenceCommands.PersonalityPrompts.Select(p => new Conversation(ChatMessage.User(p), ChatMessage.Assistant("-"))).ToList();
            var eightBefore = PersonaEvaluation.Replies(before, prompts, sampling, ct).ToList();
            var eightAfter = PersonaEvaluation.Replies(after, prompts, sampling, ct).ToList();

            double cleanAfter = repliesAfter.Count(r => r.EndedCleanly) / (double)repliesAfter.Count;
            double cleanBefore = repliesBefore.Count(r => r.EndedCleanly) / (double)repliesBefore.Count;
            double reduction = 1 - lossAfter.Loss / lossBefore.Loss;
            if (pr.GetValue(json))
            {
                Cli.WriteJson(new
                {
                    model = modelPath, @base = baseSource, data = dataPath, conversations = conversations.Count, reply_tokens = lossAfter.Tokens,
                    loss_before = lossBefore.Loss, loss_after = lossAfter.Loss, loss_reduction = reduction,
                    clean_end_rate = cleanAfter, clean_end_rate_before = cleanBefore, seed = sampling.Seed,
                    replies = eightAfter.Zip(eightBefore, (a, b) => new { prompt = a.Prompt, before = b.Reply, after = a.Reply, ended_cleanly = a.EndedCleanly }),
                    held_out_replies = repliesAfter.Select(r => new { prompt = r.Prompt, reply = r.Reply, ended_cleanly = r.EndedCleanly }),
                });
                return Task.FromResult(0);
            }
            Console.WriteLine($"held-out persona: {conversations.Count} conversations, {lossAfter.Tokens:N0} reply tokens ({dataPath})");
            Console.WriteLine($"reply loss: before {lossBefore.Loss:F3} ({baseSource}), after {lossAfter.Loss:F3} ({modelPath}): {reduction:P1} lower");
            Console.WriteLine($"replies that end their turn: before {cleanBefore:P0}, after {cleanAfter:P0} (seed {sampling.Seed}, at most {sampling.MaxTokens} tokens)");
            var table = new Table().AddColumns("prompt", "before fine-tuning", "after fine-tuning");
            foreach (var (a, b) in eightAfter.Zip(eightBefore))
                table.AddRow(Markup.Escape(a.Prompt), Markup.Escape(b.Reply), Markup.Escape(a.Reply));
            AnsiConsole.Write(table);
            return Task.FromResult(0);
        });
        return cmd;
    }

    static string? RecordedBase(string ggufPath)
    {
        using var file = GgufFile.Open(ggufPath);
        return file.Metadata.TryGetValue(CheckpointReader.FinetuneBaseKey, out var value) ? value as string : null;
    }

    /// <summary>A GGUF file as is; a checkpoint exported to a temporary GGUF first (deleted once mapped).</summary>
    static InferenceModel LoadBase(string source)
    {
        if (File.Exists(source)) return InferenceModel.Load(source);
        var (config, tensors, _) = CheckpointReader.Read(source);
        string tmp = Path.Combine(Path.GetTempPath(), $"duck-base-{Environment.ProcessId}-{Guid.NewGuid():N}.gguf");
        try
        {
            using (var stream = File.Create(tmp)) GgufExporter.Export(config, tensors, stream);
            return InferenceModel.Load(tmp);
        }
        finally { File.Delete(tmp); }
    }
}
