// The models a silo serves: a DI singleton that loads each named model once (memory-mapped GGUF) with its
// continuous batcher, shared by every chat grain on the silo. Models are "NAME.gguf" files in the models location,
// a folder or "azure:container[/prefix]" (downloaded once to a local cache, then mapped); `duck cluster deploy`
// puts them there. Not the grains and not the HTTP API.
using System.Collections.Concurrent;
using System.Text.RegularExpressions;
using Duck.Core.Checkpoints;
using Duck.Inference.Engine;
using Duck.Inference.Kernels;
using Microsoft.Extensions.Logging;

namespace Duck.Grains.Chat;

/// <summary>How a silo serves chat; the host binds it from "Duck:Chat" (as part of the chat API's options).</summary>
public record ChatServingOptions
{
    /// <summary>Where the models are: a folder of NAME.gguf files or "azure:container[/prefix]".</summary>
    public string Models { get; init; } = Path.Combine("runs", "cluster", "models");
    /// <summary>Inference threads per model (0: all cores).</summary>
    public int Threads { get; init; }
    /// <summary>Most generations advanced in one batched decode pass per model.</summary>
    public int MaxBatchSize { get; init; } = 64;
    /// <summary>Reply length when the request does not say.</summary>
    public int DefaultMaxTokens { get; init; } = ChatGenerationSettings.DefaultMaxTokens;
    /// <summary>Largest max_tokens a request may ask for.</summary>
    public int MaxTokensLimit { get; init; } = 1024;
    /// <summary>Local folder for models downloaded from Azure Blob storage (default: the temp folder).</summary>
    public string? CacheFolder { get; init; }
    /// <summary>
    /// How sessions' KV caches store keys and values: Int8 (the default: half of Bf16's bytes per cached token, which
    /// a batched decode streams for every session; the persona evaluation's reply loss moved by 0.004 %, see
    /// docs/benchmarks.md) or Bf16.
    /// </summary>
    public KvCacheType KvCache { get; init; } = KvCacheType.Int8;
    /// <summary>
    /// Shortest run of cached tokens a new prompt may reuse after a removed span (a conversation's window moving past
    /// its oldest exchanges): the run moves down in the KV cache instead of being prefilled again. 0 turns it off,
    /// so a moved window is prefilled anew (exact, slower).
    /// </summary>
    public int CacheShiftMinTokens { get; init; } = ContinuousBatcher.DefaultShiftMinTokens;
}

/// <summary>A loaded model and the batcher that runs it.</summary>
public sealed record ServedModel(string Name, InferenceModel Model, ContinuousBatcher Batcher);

/// <summary>Loads models by name on first use and keeps them for the life of the silo.</summary>
public sealed partial class ChatModelHost(ChatServingOptions options, ILogger<ChatModelHost> logger) : IDisposable
{
    const string Extension = ".gguf";
    readonly ConcurrentDictionary<string, Lazy<Task<ServedModel>>> models = new(StringComparer.Ordinal);

    public ChatServingOptions Options => options;
    /// <summary>The models loaded on this silo so far.</summary>
    public IEnumerable<ServedModel> Loaded => models.Values.Where(l => l.IsValueCreated && l.Value.IsCompletedSuccessfully).Select(l => l.Value.Result);

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    private static partial Regex ModelName();

    /// <summary>The names of the models in the models location, sorted.</summary>
    public async Task<string[]> ListAsync(CancellationToken ct = default)
    {
        if (IsAzure)
        {
            var files = await CheckpointStores.Open(options.Models).ListAsync("", ct);
            return files.Where(f => !f.Contains('/') && f.EndsWith(Extension, StringComparison.Ordinal)).Select(f => f[..^Extension.Length]).Order(StringComparer.Ordinal).ToArray();
        }
        if (!Directory.Exists(options.Models)) return [];
        return Directory.GetFiles(options.Models, "*" + Extension).Select(f => Path.GetFileName(f)[..^Extension.Length])
            .Where(n => ModelName().IsMatch(n)).Order(StringComparer.Ordinal).ToArray();
    }

    /// <summary>The model called <paramref name="name"/>, loading it on first use; ChatException (ModelNotFound) when there is none.</summary>
    public async Task<ServedModel> GetAsync(string name)
    {
        if (!ModelName().IsMatch(name ?? "")) throw new ChatException(ChatErrorKind.ModelNotFound, $"model '{name}' does not exist (names are letters, digits, '.', '_' and '-')");
        var lazy = models.GetOrAdd(name, n => new Lazy<Task<ServedModel>>(() => Task.Run(() => LoadAsync(n))));
        try { return await lazy.Value; }
        catch
        {
            models.TryRemove(new KeyValuePair<string, Lazy<Task<ServedModel>>>(name, lazy)); // a later deploy may add it
            throw;
        }
    }

    bool IsAzure => options.Models.StartsWith("azure:", StringComparison.OrdinalIgnoreCase);

    async Task<ServedModel> LoadAsync(string name)
    {
        string path;
        if (IsAzure)
        {
            var data = await CheckpointStores.Open(options.Models).ReadAsync(name + Extension) ?? throw NotFound(name);
            string folder = Path.Combine(options.CacheFolder ?? Path.Combine(Path.GetTempPath(), "duck-models"), Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(options.Models)))[..16]);
            Directory.CreateDirectory(folder);
            path = Path.Combine(folder, name + Extension);
            await File.WriteAllBytesAsync(path + ".tmp", data);
            File.Move(path + ".tmp", path, overwrite: true);
        }
        else
        {
            path = Path.Combine(Path.GetFullPath(options.Models), name + Extension);
            if (!File.Exists(path)) throw NotFound(name);
        }
        int threads = options.Threads > 0 ? options.Threads : Environment.ProcessorCount;
        var model = InferenceModel.Load(path, threads);
        model.KvCacheType = options.KvCache;
        model.KernelPath = TernaryMatMul.BestBatched; // many sessions' decode rows share each pass
        model.PrepareLookup();
        Log.ChatModelLoaded(logger, name, path, model.Config.NumLayers, model.Config.ModelDim, model.Config.ContextLength, threads);
        var batcher = new ContinuousBatcher(model, options.MaxBatchSize, name) { ShiftMinTokens = options.CacheShiftMinTokens };
        DuckMetrics.TrackBatcher(name, batcher);
        return new ServedModel(name, model, batcher);
    }

    ChatException NotFound(string name)
    {
        string known = string.Join(", ", ListAsync().GetAwaiter().GetResult());
        return new ChatException(ChatErrorKind.ModelNotFound, $"model '{name}' does not exist in {options.Models} (served: {(known.Length > 0 ? known : "none")})");
    }

    public void Dispose()
    {
        foreach (var m in Loaded)
        {
            DuckMetrics.ForgetBatcher(m.Batcher);
            m.Batcher.Dispose();
            m.Model.Dispose();
        }
    }
}
