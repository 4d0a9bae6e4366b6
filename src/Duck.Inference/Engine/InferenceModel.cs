// A loaded Duck model: config, embedding, per-block norms and linear layers, head, RoPE tables and the worker
// pool. Loaded once from a GGUF file (ternary tensors repacked into PackedTernary) or made of random packed
// weights for benchmarks; read-only afterwards, so sessions on several threads can share it. The forward pass
// lives in InferenceModel.Forward.cs; per-conversation state lives in InferenceSession.
using System.Runtime.InteropServices;
using System.Text.Json;
using Duck.Core.Model;
using Duck.Inference.Gguf;
using Duck.Inference.Kernels;
using Duck.Inference.Quant;

namespace Duck.Inference.Engine;

/// <summary>The weights of one transformer block.</summary>
public sealed class BlockWeights
{
    public required float[] AttnNorm, AttnSubNorm, FfnNorm, FfnSubNorm;
    public required Linear Q, K, V, O, Gate, Up, Down;

    public IEnumerable<Linear> Linears => [Q, K, V, O, Gate, Up, Down];
}

/// <summary>Shared, immutable model weights plus the thread pool that runs them.</summary>
public sealed partial class InferenceModel : IDisposable
{
    readonly GgufFile? file;

    public ModelConfig Config { get; }
    public EmbeddingTable Embedding { get; }
    public IReadOnlyList<BlockWeights> Blocks { get; }
    public float[] FinalNorm { get; }
    /// <summary>The LM head: a TernaryLinear, or the embedding itself when the head is tied.</summary>
    public Linear Head { get; }
    /// <summary>
    /// Kernel path used by every ternary layer (tests force one; default the fastest single-stream path). With
    /// <see cref="KernelPath.Avx512Lookup"/> the weights' lookup layout is built on first use, or by <see cref="PrepareLookup"/>.
    /// </summary>
    public KernelPath KernelPath { get; set; } = TernaryMatMul.Best;

    /// <summary>
    /// Builds every ternary layer's lookup layout now (<see cref="PackedTernary.Triples"/>, 1.78 bits per weight), so a
    /// silo's first busy pass does not; does nothing where the lookup path is not supported.
    /// </summary>
    public void PrepareLookup()
    {
        if (!TernaryMatMul.IsSupported(KernelPath.Avx512Lookup)) return;
        foreach (var l in Blocks.SelectMany(b => b.Linears).Append(Head))
            if (l is TernaryLinear t) t.Weights.PrepareLookup();
    }
    /// <summary>Element type of the KV caches of sessions created from now on (existing sessions keep theirs).</summary>
    public KvCacheType KvCacheType { get; set; } = KvCacheType.Bf16;
    /// <summary>Size of the file it was loaded from (or would be written as, for random weights).</summary>
    public long FileBytes { get; init; }

    internal WorkerPool Pool { get; }
    internal float[] RopeCos { get; }
    internal float[] RopeSin { get; }

    InferenceModel(ModelConfig config, EmbeddingTable embedding, List<BlockWeights> blocks, float[] finalNorm, Linear head, int threads, GgufFile? file)
    {
        Config = config;
        Embedding = embedding;
        Blocks = blocks;
        FinalNorm = finalNorm;
        Head = head;
        this.file = file;
        Pool = new WorkerPool(threads);
        (RopeCos, RopeSin) = VectorMath.RopeTables(config.ContextLength, config.HeadDim, config.RopeTheta);
    }

    /// <summary>Loads a GGUF written by <c>duck export</c> (or llama.cpp's bitnet layout with a tied head).</summary>
    public static unsafe InferenceModel Load(string path, int threads = 2)
    {
        var file = GgufFile.Open(path);
        try
        {
            string arch = file.Metadata.TryGetValue("general.architecture", out var a) ? (string)a : "?";
            if (arch != "bitnet") throw new InvalidDataException($"{path}: general.architecture is '{arch}', expected 'bitnet'");
            var config = ReadConfig(file);
            var embd = file.Require("token_embd.weight");
            CheckDims(file, embd, config.ModelDim, config.VocabSize);
            var embedding = new EmbeddingTable(embd.Type, file.DataPointer(embd), config.VocabSize, config.ModelDim, ownsData: false);
            var blocks = new List<BlockWeights>();
            for (int l = 0; l < config.NumLayers; l++)
            {
                string p = $"blk.{l}.";
                blocks.Add(new BlockWeights
                {
                    AttnNorm = LoadVector(file, p + "attn_norm.weight", config.ModelDim),
                    AttnSubNorm = LoadVector(file, p + "attn_sub_norm.weight", config.ModelDim),
                    FfnNorm = LoadVector(file, p + "ffn_norm.weight", config.ModelDim),
                    FfnSubNorm = LoadVector(file, p + "ffn_sub_norm.weight", config.FfnDim),
                    Q = LoadLinear(file, p + "attn_q.weight", config.ModelDim, config.ModelDim),
                    K = LoadLinear(file, p + "attn_k.weight", config.ModelDim, config.ModelDim),
                    V = LoadLinear(file, p + "attn_v.weight", config.ModelDim, config.ModelDim),
                    O = LoadLinear(file, p + "attn_output.weight", config.ModelDim, config.ModelDim),
                    Gate = LoadLinear(file, p + "ffn_gate.weight", config.FfnDim, config.ModelDim),
                    Up = LoadLinear(file, p + "ffn_up.weight", config.FfnDim, config.ModelDim),
                    Down = LoadLinear(file, p + "ffn_down.weight", config.ModelDim, config.FfnDim),
                });
            }
            var finalNorm = LoadVector(file, "output_norm.weight", config.ModelDim);
            Linear head = config.TiedHead ? embedding : LoadLinear(file, "output.weight", config.VocabSize, config.ModelDim);
            return new InferenceModel(config, embedding, blocks, finalNorm, head, threads, file) { FileBytes = file.FileBytes };
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    static ModelConfig ReadConfig(GgufFile file)
    {
        ModelConfig config;
        if (file.Metadata.TryGetValue("duck.config", out var json) && json is string s)
        {
            try { config = JsonSerializer.Deserialize<ModelConfig>(s) ?? throw new InvalidDataException("null"); }
            catch (JsonException e) { throw new InvalidDataException($"{file.Path}: duck.config is not a valid model config ({e.Message})"); }
        }
        else
        {
            var embd = file.Require("token_embd.weight");
            config = new ModelConfig
            {
                VocabSize = (int)embd.Dims[1],
                ModelDim = file.Get<int>("bitnet.embedding_length"),
                NumLayers = file.Get<int>("bitnet.block_count"),
                NumHeads = file.Get<int>("bitnet.attention.head_count"),
                FfnDim = file.Get<int>("bitnet.feed_forward_length"),
                ContextLength = file.Get<int>("bitnet.context_length"),
                RopeTheta = file.Get<float>("bitnet.rope.freq_base"),
                NormEps = file.Get<float>("bitnet.attention.layer_norm_rms_epsilon"),
                TiedHead = file.Find("output.weight") is null,
                Ternary = file.Require("blk.0.attn_q.weight").Type is GgmlType.TQ1_0 or GgmlType.TQ2_0,
            };
        }
        try { return config.Validate(); }
        catch (ArgumentException e) { throw new InvalidDataException($"{file.Path}: model config is invalid: {e.Message}"); }
    }

    static void CheckDims(GgufFile file, GgufTensorInfo t, long ne0, long rows)
    {
        if (t.Dims.Length > 2 || t.Ne0 != ne0 || t.Rows != rows)
            throw new InvalidDataException($"{file.Path}: tensor '{t.Name}' has dims [{string.Join(", ", t.Dims)}], expected [{ne0}, {rows}]");
    }

    static float[] LoadVector(GgufFile file, string name, int length)
    {
        var t = file.Require(name);
        CheckDims(file, t, length, 1);
        if (t.Type != GgmlType.F32) throw new InvalidDataException($"{file.Path}: tensor '{name}' is {t.Type}, expected F32");
        return MemoryMarshal.Cast<byte, float>(file.Data(t)).ToArray();
    }

    static unsafe Linear LoadLinear(GgufFile file, string name, int rows, int cols)
    {
        var t = file.Require(name);
        switch (t.Type)
        {
            case GgmlType.F32:
                CheckDims(file, t, cols, rows);
                return new DenseLinear(MemoryMarshal.Cast<byte, float>(file.Data(t)).ToArray(), rows, cols);
            case GgmlType.F16:
                CheckDims(file, t, cols, rows);
                var halves = MemoryMarshal.Cast<byte, Half>(file.Data(t));
                var w = new float[halves.Length];
                for (int i = 0; i < w.Length; i++) w[i] = (float)halves[i];
                return new DenseLinear(w, rows, cols);
            case GgmlType.TQ1_0 or GgmlType.TQ2_0:
                CheckDims(file, t, PackedTernary.RoundUp(cols), rows);
                return new TernaryLinear(Repack(file, t, rows, cols));
            default:
                throw new InvalidDataException($"{file.Path}: tensor '{name}' has type {t.Type}; linear layers need TQ2_0, TQ1_0, F16 or F32");
        }
    }

    /// <summary>
    /// Repacks TQ blocks into the kernel layout; every block must carry the same scale (or 0 for an all-zero block).
    /// Reads through a file handle rather than the mapping so the file's pages do not stay in this process's RSS.
    /// </summary>
    static unsafe PackedTernary Repack(GgufFile file, GgufTensorInfo t, int rows, int cols)
    {
        int blockBytes = GgmlTypes.BlockBytes(t.Type);
        int blocksPerRow = PackedTernary.RoundUp(cols) / GgmlTypes.QK_K;
        int rowBytes = blocksPerRow * blockBytes;
        int rowsPerRead = Math.Max(1, (1 << 20) / rowBytes);
        var buffer = new byte[rowsPerRead * rowBytes];
        var packed = new PackedTernary(rows, cols, 0f);
        Span<sbyte> codes = stackalloc sbyte[GgmlTypes.QK_K];
        float scale = float.NaN;
        using var handle = File.OpenHandle(file.Path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
        for (int r0 = 0; r0 < rows; r0 += rowsPerRead)
        {
            int n = Math.Min(rowsPerRead, rows - r0);
            var chunk = buffer.AsSpan(0, n * rowBytes);
            if (RandomAccess.Read(handle, chunk, t.FileOffset + (long)r0 * rowBytes) != chunk.Length)
                throw new InvalidDataException($"{file.Path}: tensor '{t.Name}' could not be read in full (file changed while loading?)");
            for (int r = 0; r < n; r++)
            {
                byte* dst = packed.RowPointer(r0 + r);
                for (int b = 0; b < blocksPerRow; b++)
                {
                    var block = chunk.Slice(r * rowBytes + b * blockBytes, blockBytes);
                    float d = (float)BitConverter.ToHalf(block[^2..]);
                    if (t.Type == GgmlType.TQ2_0) GgmlQuants.UnpackTq2Block(block, codes);
                    else GgmlQuants.UnpackTq1Block(block, codes);
                    if (d == 0) codes.Clear();
                    else if (float.IsNaN(scale)) scale = d;
                    else if (d != scale)
                        throw new InvalidDataException($"{file.Path}: tensor '{t.Name}' has per-block scales ({scale} and {d}); this engine needs one per-tensor scale as duck export writes");
                    PackBlock(codes, dst + b * 64);
                }
            }
        }
        packed.Scale = float.IsNaN(scale) ? 0f : scale;
        return packed;
    }

    /// <summary>Writes 256 ternary values into one 64-byte block of the kernel layout (column 64l+m at byte m, bits 2l).</summary>
    internal static unsafe void PackBlock(ReadOnlySpan<sbyte> t, byte* dst)
    {
        for (int m = 0; m < 64; m++)
            dst[m] = (byte)((t[m] + 1) | ((t[64 + m] + 1) << 2) | ((t[128 + m] + 1) << 4) | ((t[192 + m] + 1) << 6));
    }

    public void Dispose()
    {
        Pool.Dispose();
        foreach (var b in Blocks)
            foreach (var l in b.Linears) l.Dispose();
        if (Head != Embedding) Head.Dispose();
        Embedding.Dispose();
        file?.Dispose();
    }
}
