// Turns a Duck model (config + fp32 tensors by checkpoint key) into a GGUF file: ternary BitLinear weights as
// TQ2_0 or TQ1_0 with every block's scale set to the tensor's absmean gamma (fp16-rounded), the embedding as
// Q8_0, norms as F32, llama.cpp tensor names and bitnet metadata plus the GPT-2 tokenizer. Inner dimensions that
// are not a multiple of 256 (tiny, mini) are zero-padded per row; the engine reads the logical size from duck.config.
// Not the checkpoint reader (CheckpointReader).
using System.Text.Json;
using Duck.Core.Model;
using Duck.Core.Text;
using Duck.Inference.Gguf;
using Duck.Inference.Kernels;
using Duck.Inference.Quant;

namespace Duck.Inference.Export;

/// <summary>How to export.</summary>
public sealed record ExportOptions
{
    /// <summary>TQ2_0 (2.06 bits/weight, faster to unpack) or TQ1_0 (1.69 bits/weight).</summary>
    public GgmlType TernaryType { get; init; } = GgmlType.TQ2_0;
    /// <summary>Write exactly what llama.cpp's bitnet architecture loads (needs a tied head and 256-multiple dims).</summary>
    public bool LlamaCpp { get; init; }
    /// <summary>Token embedding type: Q8_0 (default, small file), F16 or F32 (exact; a tied head then matches the trainer closely).</summary>
    public GgmlType EmbeddingType { get; init; } = GgmlType.Q8_0;
    /// <summary>Include the GPT-2 tokens and merges (tests may skip them for speed).</summary>
    public bool IncludeTokenizer { get; init; } = true;
    /// <summary>More string metadata to write (e.g. duck.finetune.base: the checkpoint a fine-tune started from).</summary>
    public IReadOnlyDictionary<string, string> ExtraMetadata { get; init; } = new Dictionary<string, string>();
}

/// <summary>Duck model → GGUF.</summary>
public static class GgufExporter
{
    /// <summary>Writes the model; throws <see cref="ArgumentException"/> naming a missing or mis-shaped tensor.</summary>
    public static void Export(ModelConfig config, IReadOnlyDictionary<string, float[]> tensors, Stream output, ExportOptions? options = null)
    {
        options ??= new ExportOptions();
        config = config.Validate();
        if (options.EmbeddingType is not (GgmlType.Q8_0 or GgmlType.F16 or GgmlType.F32))
            throw new ArgumentException($"embedding type must be Q8_0, F16 or F32, got {options.EmbeddingType}");
        if (options.TernaryType is not (GgmlType.TQ1_0 or GgmlType.TQ2_0))
            throw new ArgumentException($"ternary type must be TQ1_0 or TQ2_0, got {options.TernaryType}");
        if (options.LlamaCpp)
        {
            if (!config.TiedHead) throw new ArgumentException("--llama-cpp needs a model trained with a tied head (--tied-head)");
            if (!config.Ternary) throw new ArgumentException("--llama-cpp exports ternary models only; this is the FP32 twin");
            if (config.ModelDim % 256 != 0 || config.FfnDim % 256 != 0)
                throw new ArgumentException($"--llama-cpp needs ModelDim ({config.ModelDim}) and FfnDim ({config.FfnDim}) to be multiples of 256 (TQ block size)");
        }
        foreach (var (key, count) in ExpectedTensors(config)) Checked(Require(tensors, key, config), key, count);
        var specs = TensorSpecs(config, options.TernaryType, name => Require(tensors, name, config), options.EmbeddingType);
        GgufWriter.Write(output, Metadata(config, options), specs);
    }

    /// <summary>The exact size of the file <see cref="Export"/> would write with the tokenizer (for benchmarks of random weights).</summary>
    public static long EstimateFileBytes(ModelConfig config, GgmlType ternaryType)
    {
        var specs = TensorSpecs(config, ternaryType, _ => []);
        long header = GgufWriter.HeaderBytes(Metadata(config, new ExportOptions { TernaryType = ternaryType }), specs);
        return header + specs.Sum(s => GgufWriter.Align(s.SizeBytes, GgufWriter.DefaultAlignment));
    }

    /// <summary>Every checkpoint key the config needs, with its element count.</summary>
    public static IEnumerable<(string Key, long Count)> ExpectedTensors(ModelConfig c)
    {
        long d = c.ModelDim, f = c.FfnDim;
        yield return (TensorNames.Embedding, c.VocabSize * d);
        yield return (TensorNames.FinalNorm, d);
        if (!c.TiedHead) yield return (TensorNames.Head, c.VocabSize * d);
        for (int l = 0; l < c.NumLayers; l++)
        {
            foreach (var k in new[] { TensorNames.AttnNorm(l), TensorNames.AttnSubNorm(l), TensorNames.FfnNorm(l) }) yield return (k, d);
            yield return (TensorNames.FfnSubNorm(l), f);
            foreach (var k in new[] { TensorNames.Q(l), TensorNames.K(l), TensorNames.V(l), TensorNames.O(l) }) yield return (k, d * d);
            foreach (var k in new[] { TensorNames.Gate(l), TensorNames.Up(l), TensorNames.Down(l) }) yield return (k, d * f);
        }
    }

    static float[] Require(IReadOnlyDictionary<string, float[]> tensors, string name, ModelConfig config) =>
        tensors.TryGetValue(name, out var t) ? t : throw new ArgumentException($"checkpoint has no tensor '{name}' (the config says NumLayers={config.NumLayers}, TiedHead={config.TiedHead})");

    static List<KeyValuePair<string, object>> Metadata(ModelConfig c, ExportOptions o)
    {
        var m = new List<KeyValuePair<string, object>>
        {
            new("general.architecture", "bitnet"),
            new("general.name", "duck"),
            new("general.alignment", (uint)GgufWriter.DefaultAlignment),
            new("bitnet.context_length", (uint)c.ContextLength),
            new("bitnet.embedding_length", (uint)c.ModelDim),
            new("bitnet.block_count", (uint)c.NumLayers),
            new("bitnet.feed_forward_length", (uint)c.FfnDim),
            new("bitnet.attention.head_count", (uint)c.NumHeads),
            new("bitnet.attention.head_count_kv", (uint)c.NumHeads),
            new("bitnet.rope.freq_base", c.RopeTheta),
            new("bitnet.attention.layer_norm_rms_epsilon", c.NormEps),
            new("bitnet.vocab_size", (uint)c.VocabSize),
            new("duck.config", JsonSerializer.Serialize(c)),
            new("duck.tied_head", c.TiedHead),
            new("duck.ternary", c.Ternary),
        };
        if (o.IncludeTokenizer && c.VocabSize == Gpt2Tokenizer.VocabSize)
        {
            var vocab = Gpt2Vocabulary.Shared;
            var types = new int[c.VocabSize];
            Array.Fill(types, 1);
            types[Gpt2Tokenizer.EndOfText] = 3;
            m.Add(new("tokenizer.ggml.model", "gpt2"));
            m.Add(new("tokenizer.ggml.pre", "gpt-2"));
            m.Add(new("tokenizer.ggml.tokens", vocab.ByteLevelTokens()));
            m.Add(new("tokenizer.ggml.token_type", types));
            m.Add(new("tokenizer.ggml.merges", vocab.Merges.ToArray()));
            m.Add(new("tokenizer.ggml.bos_token_id", (uint)Gpt2Tokenizer.EndOfText));
            m.Add(new("tokenizer.ggml.eos_token_id", (uint)Gpt2Tokenizer.EndOfText));
            m.Add(new("tokenizer.chat_template", ChatFormat.JinjaTemplate));
        }
        foreach (var (key, value) in o.ExtraMetadata) m.Add(new(key, value));
        return m;
    }

    static List<GgufTensorSpec> TensorSpecs(ModelConfig c, GgmlType ternaryType, Func<string, float[]> get, GgmlType embeddingType = GgmlType.Q8_0)
    {
        int d = c.ModelDim, f = c.FfnDim, v = c.VocabSize;
        var specs = new List<GgufTensorSpec>();
        GgmlType embType = embeddingType == GgmlType.Q8_0 && d % GgmlTypes.QK8_0 != 0 ? GgmlType.F32 : embeddingType;
        specs.Add(new("token_embd.weight", [d, v], embType, s => WriteEmbedding(s, get(TensorNames.Embedding), d, embType)));
        specs.Add(Vector("output_norm.weight", TensorNames.FinalNorm, d, get));
        if (!c.TiedHead) specs.Add(Matrix("output.weight", TensorNames.Head, v, d, c, ternaryType, get));
        for (int l = 0; l < c.NumLayers; l++)
        {
            string p = $"blk.{l}.";
            specs.Add(Vector(p + "attn_norm.weight", TensorNames.AttnNorm(l), d, get));
            specs.Add(Matrix(p + "attn_q.weight", TensorNames.Q(l), d, d, c, ternaryType, get));
            specs.Add(Matrix(p + "attn_k.weight", TensorNames.K(l), d, d, c, ternaryType, get));
            specs.Add(Matrix(p + "attn_v.weight", TensorNames.V(l), d, d, c, ternaryType, get));
            specs.Add(Vector(p + "attn_sub_norm.weight", TensorNames.AttnSubNorm(l), d, get));
            specs.Add(Matrix(p + "attn_output.weight", TensorNames.O(l), d, d, c, ternaryType, get));
            specs.Add(Vector(p + "ffn_norm.weight", TensorNames.FfnNorm(l), d, get));
            specs.Add(Matrix(p + "ffn_gate.weight", TensorNames.Gate(l), f, d, c, ternaryType, get));
            specs.Add(Matrix(p + "ffn_up.weight", TensorNames.Up(l), f, d, c, ternaryType, get));
            specs.Add(Vector(p + "ffn_sub_norm.weight", TensorNames.FfnSubNorm(l), f, get));
            specs.Add(Matrix(p + "ffn_down.weight", TensorNames.Down(l), d, f, c, ternaryType, get));
        }
        return specs;
    }

    static GgufTensorSpec Vector(string ggufName, string key, int length, Func<string, float[]> get) =>
        new(ggufName, [length], GgmlType.F32, s => WriteFloats(s, Checked(get(key), key, length)));

    static GgufTensorSpec Matrix(string ggufName, string key, int rows, int cols, ModelConfig c, GgmlType ternaryType, Func<string, float[]> get)
    {
        if (!c.Ternary)
            return new(ggufName, [cols, rows], GgmlType.F32, s => WriteFloats(s, Checked(get(key), key, (long)rows * cols)));
        int padded = PackedTernary.RoundUp(cols);
        return new(ggufName, [padded, rows], ternaryType, s => WriteTernary(s, Checked(get(key), key, (long)rows * cols), key, rows, cols, ternaryType));
    }

    static float[] Checked(float[] data, string key, long expected) =>
        data.Length == expected ? data : throw new ArgumentException($"tensor '{key}' has {data.Length} values, the config needs {expected}");

    static void WriteFloats(Stream s, float[] data) => s.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan()));

    static void WriteEmbedding(Stream s, float[] data, int d, GgmlType type)
    {
        if (type == GgmlType.F32) { WriteFloats(s, data); return; }
        if (type == GgmlType.F16)
        {
            var halves = new Half[d];
            for (int r = 0; r < data.Length / d; r++)
            {
                for (int j = 0; j < d; j++) halves[j] = (Half)data[r * d + j];
                s.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(halves.AsSpan()));
            }
            return;
        }
        var row = new byte[GgmlTypes.TensorBytes(GgmlType.Q8_0, d, 1)];
        for (int r = 0; r < data.Length / d; r++)
        {
            GgmlQuants.QuantizeQ8(data.AsSpan(r * d, d), row);
            s.Write(row);
        }
    }

    /// <summary>Absmean-ternarizes the whole tensor, then writes each row (zero-padded) as blocks with d = fp16(gamma).</summary>
    static void WriteTernary(Stream s, float[] w, string key, int rows, int cols, GgmlType type)
    {
        var t = new sbyte[w.Length];
        float gamma = Absmean.Ternarize(w, t);
        Half d = (Half)gamma;
        if (gamma > 0 && d == Half.Zero) throw new ArgumentException($"tensor '{key}': scale {gamma} underflows fp16");
        int padded = PackedTernary.RoundUp(cols);
        int blockBytes = GgmlTypes.BlockBytes(type);
        var row = new sbyte[padded];
        var outRow = new byte[padded / GgmlTypes.QK_K * blockBytes];
        for (int r = 0; r < rows; r++)
        {
            t.AsSpan(r * cols, cols).CopyTo(row);
            for (int b = 0; b < padded / GgmlTypes.QK_K; b++)
            {
                var src = row.AsSpan(b * GgmlTypes.QK_K, GgmlTypes.QK_K);
                var dst = outRow.AsSpan(b * blockBytes, blockBytes);
                if (type == GgmlType.TQ2_0) GgmlQuants.PackTq2Block(src, d, dst);
                else GgmlQuants.PackTq1Block(src, d, dst);
            }
            s.Write(outRow);
        }
    }
}
