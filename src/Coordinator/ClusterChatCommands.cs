// Chat against a running cluster: `duck chat --cluster` and `duck test --cluster` through Duck's IChatClient (over
// a silo's gateway with Orleans, or over a silo's HTTP API with --url), and `duck cluster deploy FILE --name NAME`,
// which checks a GGUF model and puts it where the silos look for models. The silos load it on first use.
using System.CommandLine;
using System.Diagnostics;
using System.Text.RegularExpressions;
using Duck.Client;
using Duck.Core.Checkpoints;
using Duck.Grains;
using Duck.Inference.Engine;
using Microsoft.Extensions.AI;

namespace Duck.Coordinator;

public static partial class ClusterChatCommands
{
    public const string DefaultModels = "runs/cluster/models";

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    private static partial Regex ModelName();

    /// <summary>The options that pick a cluster for chat; added to `duck chat` and `duck test`.</summary>
    public sealed record ClusterOptions(Option<bool> Cluster, Option<string> Gateway, Option<string?> Url, Option<string?> Key)
    {
        public static ClusterOptions Create() => new(
            new Option<bool>("--cluster") { Description = "Talk to a running cluster instead of loading --model FILE (--model then names a served model)" },
            new Option<string>("--gateway") { Description = "With --cluster: a silo's gateway, HOST:PORT", DefaultValueFactory = _ => "127.0.0.1:30000" },
            new Option<string?>("--url") { Description = "With --cluster: a silo's HTTP address instead of a gateway, e.g. http://127.0.0.1:8080" },
            new Option<string?>("--key") { Description = "With --url: API key (default: $DUCK_API_KEY)" });

        public void AddTo(Command cmd) { cmd.Options.Add(Cluster); cmd.Options.Add(Gateway); cmd.Options.Add(Url); cmd.Options.Add(Key); }
    }

    /// <summary>A chat client on the cluster and the served model it talks to; dispose to disconnect.</summary>
    public sealed class ClusterChat(IChatClient client, string model, IAsyncDisposable? connection) : IAsyncDisposable
    {
        public IChatClient Client => client;
        public string Model => model;

        /// <summary>Starts a conversation kept by the cluster (a session grain); its id goes in ChatOptions.ConversationId.</summary>
        public Task<string> CreateConversationAsync(ChatOptions options) => client switch
        {
            DuckHttpChatClient http => http.CreateConversationAsync(null, options),
            DuckOrleansChatClient orleans => orleans.CreateConversationAsync(null, options),
            _ => throw new InvalidOperationException("not a Duck chat client"),
        };

        public async ValueTask DisposeAsync()
        {
            client.Dispose();
            if (connection is not null) await connection.DisposeAsync();
        }
    }

    public static async Task<ClusterChat> ConnectAsync(ParseResult pr, ClusterOptions o, string? model, CancellationToken ct)
    {
        IChatClient client;
        Func<Task<string[]>> list;
        ClusterConnection? connection = null;
        if (pr.GetValue(o.Url) is { } url)
        {
            if (!Uri.TryCreate(url.EndsWith('/') ? url : url + "/", UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
                throw new UserErrorException($"--url must be an http(s) address like http://127.0.0.1:8080, got '{url}'");
            var http = new DuckHttpChatClient(uri, model ?? "", pr.GetValue(o.Key) ?? Environment.GetEnvironmentVariable("DUCK_API_KEY"));
            (client, list) = (http, () => http.ListModelsAsync(ct));
        }
        else
        {
            connection = await ClusterConnection.ConnectAsync(pr.GetValue(o.Gateway)!, ct);
            var orleans = new DuckOrleansChatClient(connection.Client, model ?? "");
            (client, list) = (orleans, orleans.ListModelsAsync);
        }
        try
        {
            string[] served = await list();
            if (model is null && served.Length != 1)
                throw new UserErrorException(served.Length == 0 ? "the cluster serves no model yet: run `duck cluster deploy FILE --name NAME`"
                    : $"the cluster serves several models ({string.Join(", ", served)}): pick one with --model NAME");
            model ??= served[0];
            if (!served.Contains(model)) throw new UserErrorException($"the cluster does not serve '{model}' (served: {string.Join(", ", served)})");
            return new ClusterChat(client, model, connection);
        }
        catch (DuckApiException e) { client.Dispose(); throw new UserErrorException($"the server refused: {e.Message} (HTTP {e.Status})"); }
        catch (HttpRequestException e) { client.Dispose(); throw new UserErrorException($"cannot reach {pr.GetValue(o.Url)}: {e.Message}"); }
        catch { client.Dispose(); if (connection is not null) await connection.DisposeAsync(); throw; }
    }

    /// <summary>The interactive loop of `duck chat --cluster`: a conversation kept by the cluster (a session grain), so
    /// only each new message travels and follow-up turns reuse the server's KV cache.</summary>
    public static async Task<int> ChatAsync(ClusterChat chat, ChatOptions options, CancellationToken ct)
    {
        options = options.Clone();
        options.ModelId = chat.Model;
        options.ConversationId = await chat.CreateConversationAsync(options);
        Console.WriteLine($"Duck cluster, model {chat.Model}, conversation {options.ConversationId}. Type quit to leave.");
        int replies = 0;
        while (!ct.IsCancellationRequested)
        {
            Console.Write("you> ");
            string? line = Console.ReadLine();
            if (line is null) { Console.WriteLine(); break; }
            line = line.Trim();
            if (line.Length == 0) continue;
            if (line is "quit" or "exit") return 0;
            Console.Write("duck>");
            try
            {
                await foreach (var update in chat.Client.GetStreamingResponseAsync([new(ChatRole.User, line)], options, ct)) Console.Write(update.Text);
                Console.WriteLine();
                replies++;
            }
            catch (Exception e) when (e is DuckApiException or ChatException) { Console.WriteLine($"\n(not sent: {e.Message})"); }
        }
        if (replies == 0) throw new UserErrorException("standard input is closed: duck chat reads messages from a terminal or piped lines");
        return 0;
    }

    /// <summary>`duck test --cluster`: each personality prompt as a new conversation on the cluster.</summary>
    public static async Task<int> TestAsync(ClusterChat chat, ChatOptions options, bool asJson, CancellationToken ct)
    {
        options = options.Clone();
        options.ModelId = chat.Model;
        double totalMs = 0, totalTokens = 0;
        foreach (var prompt in InferenceCommands.PersonalityPrompts)
        {
            var clock = Stopwatch.StartNew();
            var response = await chat.Client.GetResponseAsync([new(ChatRole.User, prompt)], options, ct);
            double ms = clock.Elapsed.TotalMilliseconds;
            long tokens = response.Usage?.OutputTokenCount ?? 0;
            double tps = ms > 0 ? tokens / (ms / 1000) : 0;
            totalMs += ms;
            totalTokens += tokens;
            string reply = response.Text.Trim();
            if (asJson) Cli.WriteJson(new { prompt, reply, latency_ms = Math.Round(ms, 1), tokens_per_s = Math.Round(tps, 1), tokens, model = chat.Model });
            else Console.WriteLine($"> {prompt}\n{reply}\n  [{ms:F0} ms, {tokens} tokens, {tps:F1} tokens/s]\n");
        }
        double avg = totalMs > 0 ? totalTokens / (totalMs / 1000) : 0;
        if (asJson) Cli.WriteJson(new { summary = true, prompts = InferenceCommands.PersonalityPrompts.Length, total_ms = Math.Round(totalMs, 1), tokens_per_s = Math.Round(avg, 1), model = chat.Model });
        else Console.WriteLine($"summary: {InferenceCommands.PersonalityPrompts.Length} prompts on the cluster ({chat.Model}), {totalTokens} tokens in {totalMs / 1000:F2} s, {avg:F1} tokens/s");
        return 0;
    }

    public static Command Deploy()
    {
        var file = new Argument<string>("FILE") { Description = "GGUF model file (from duck export)" };
        var name = new Option<string>("--name") { Description = "The model's name in the cluster (the API's \"model\")", Required = true };
        var models = new Option<string>("--models") { Description = "The silos' models location (Duck:Chat:Models): a folder or azure:container[/prefix]", DefaultValueFactory = _ => DefaultModels };
        var cmd = new Command("deploy", "Deploy a GGUF model to the cluster's models location under a name") { file, name, models };
        cmd.SetAction(async (ParseResult pr, CancellationToken ct) =>
        {
            string path = pr.GetValue(file)!, modelName = pr.GetValue(name)!, location = pr.GetValue(models)!;
            if (!ModelName().IsMatch(modelName)) throw new UserErrorException($"--name must be letters, digits, '.', '_' or '-' (at most 64), got '{modelName}'");
            if (!File.Exists(path)) throw new UserErrorException($"model file '{path}' does not exist");
            int layers, context;
            using (var model = InferenceModel.Load(path, threads: 1)) (layers, context) = (model.Config.NumLayers, model.Config.ContextLength);
            string target;
            if (location.StartsWith("azure:", StringComparison.OrdinalIgnoreCase))
            {
                await CheckpointStores.Open(location).WriteAsync(modelName + ".gguf", await File.ReadAllBytesAsync(path, ct), ct);
                target = $"{location.TrimEnd('/')}/{modelName}.gguf";
            }
            else
            {
                Directory.CreateDirectory(location);
                target = Path.Combine(Path.GetFullPath(location), modelName + ".gguf");
                File.Copy(path, target + ".tmp", overwrite: true);
                File.Move(target + ".tmp", target, overwrite: true);
            }
            Console.WriteLine($"deployed {path} as '{modelName}' ({layers} layers, context {context}) to {target}; silos load it on first use (a silo that already serves '{modelName}' keeps its loaded copy until it restarts)");
            return 0;
        });
        return cmd;
    }
}
