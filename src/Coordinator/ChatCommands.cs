// `duck chat`: an interactive conversation with a GGUF model on stdin/stdout, streaming each reply as it is
// generated; with --cluster, with a model served by a running cluster (ClusterChatCommands). `quit` or end of
// input ends it. The prompt format is ChatTemplate's; this file only does I/O.
using System.CommandLine;
using Duck.Inference.Engine;

namespace Duck.Coordinator;

public static class ChatCommands
{
    public static Command Chat()
    {
        var model = new Option<string?>("--model") { Description = "GGUF model file (with --cluster: the served model's name)" };
        var temperature = new Option<float>("--temperature") { Description = "0 = greedy", DefaultValueFactory = _ => 0.8f };
        var topK = new Option<int>("--top-k") { Description = "0 disables", DefaultValueFactory = _ => 40 };
        var topP = new Option<float>("--top-p") { Description = "Nucleus sampling mass in (0, 1]", DefaultValueFactory = _ => 0.95f };
        var penalty = new Option<float>("--repetition-penalty") { Description = "1 disables", DefaultValueFactory = _ => 1.1f };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Most tokens per reply", DefaultValueFactory = _ => 128 };
        var seed = new Option<int?>("--seed") { Description = "Sampling seed (random when absent)" };
        var cmd = new Command("chat", "Chat with a model; type quit or press Ctrl-D to leave.");
        foreach (var o in new Option[] { model, temperature, topK, topP, penalty, maxTokens, seed }) cmd.Options.Add(o);
        var cluster = ClusterChatCommands.ClusterOptions.Create();
        cluster.AddTo(cmd);
        cmd.SetAction(async (ParseResult pr, CancellationToken ct) =>
        {
            if (pr.GetValue(cluster.Cluster))
            {
                await using var chat = await ClusterChatCommands.ConnectAsync(pr, cluster, pr.GetValue(model), ct);
                var chatOptions = new Microsoft.Extensions.AI.ChatOptions
                {
                    Temperature = pr.GetValue(temperature), TopK = pr.GetValue(topK), TopP = pr.GetValue(topP), MaxOutputTokens = pr.GetValue(maxTokens), Seed = pr.GetValue(seed),
                };
                return await ClusterChatCommands.ChatAsync(chat, chatOptions, ct);
            }
            if (pr.GetValue(model) is null) throw new UserErrorException("--model FILE is required (or --cluster to chat with a running cluster)");
            var options = new SamplingOptions
            {
                Temperature = pr.GetValue(temperature), TopK = pr.GetValue(topK), TopP = pr.GetValue(topP),
                RepetitionPenalty = pr.GetValue(penalty), MaxTokens = pr.GetValue(maxTokens), Seed = pr.GetValue(seed),
            }.Validate();
            using var m = InferenceModel.Load(pr.GetValue(model)!);
            var result = ChatLoop.Run(m, options, Console.In, Console.Out, ct);
            if (result.EndOfInput && result.Replies == 0)
                throw new UserErrorException("standard input is closed: duck chat reads messages from a terminal or piped lines");
            return 0;
        });
        return cmd;
    }
}
