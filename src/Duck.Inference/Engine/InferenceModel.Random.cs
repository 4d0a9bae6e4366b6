// Random weights straight in packed form (ternary codes and a Q8_0 embedding), so `duck bench infer` can run the
// paper-size presets without a trained model or an fp32 copy. Numbers only: the model says nothing sensible.
using System.Runtime.InteropServices;
using Duck.Core.Model;
using Duck.Inference.Gguf;
using Duck.Inference.Kernels;

namespace Duck.Inference.Engine;

public sealed partial class InferenceModel
{
    /// <summary>A model of the given shape with uniform random ternary weights; FileBytes is the size its GGUF export would have.</summary>
    public static unsafe InferenceModel CreateRandom(ModelConfig config, int seed = 0, int threads = 2)
    {
        config = config.Validate();
        if (!config.Ternary) throw new ArgumentException("random weights are generated for ternary models only");
        if (config.ModelDim % GgmlTypes.QK8_0 != 0) throw new ArgumentException($"ModelDim {config.ModelDim} must be a multiple of 32 for a Q8_0 embedding");
        var rng = new Random(seed);
        // The 81 bytes whose four 2-bit codes are all in {0,1,2}.
        var valid = Enumerable.Range(0, 256).Where(b => (b & 3) != 3 && ((b >> 2) & 3) != 3 && ((b >> 4) & 3) != 3 && (b >> 6) != 3)
            .Select(b => (byte)b).ToArray();
        TernaryLinear Ternary(int rows, int cols)
        {
            var w = new PackedTernary(rows, cols, 1f / MathF.Sqrt(cols));
            var buffer = new byte[w.RowBytes];
            for (int r = 0; r < rows; r++)
            {
                rng.NextBytes(buffer);
                for (int i = 0; i < buffer.Length; i++) buffer[i] = valid[buffer[i] % 81];
                buffer.CopyTo(w.RowBytesSpan(r));
            }
            return new TernaryLinear(w);
        }
        float[] Ones(int n) => Enumerable.Repeat(1f, n).ToArray();

        int d = config.ModelDim, f = config.FfnDim;
        long embBytes = GgmlTypes.TensorBytes(GgmlType.Q8_0, d, config.VocabSize);
        byte* emb = (byte*)NativeMemory.AlignedAlloc((nuint)embBytes, 64);
        var embSpan = new Span<byte>(emb, checked((int)embBytes));
        rng.NextBytes(embSpan);
        Half scale = (Half)(0.02f / 127f);
        for (long b = 0; b < embBytes; b += GgmlTypes.Q8BlockBytes) MemoryMarshal.Write(embSpan[(int)b..], in scale);
        var embedding = new EmbeddingTable(GgmlType.Q8_0, emb, config.VocabSize, d, ownsData: true);

        var blocks = new List<BlockWeights>();
        for (int l = 0; l < config.NumLayers; l++)
            blocks.Add(new BlockWeights
            {
                AttnNorm = Ones(d), AttnSubNorm = Ones(d), FfnNorm = Ones(d), FfnSubNorm = Ones(f),
                Q = Ternary(d, d), K = Ternary(d, d), V = Ternary(d, d), O = Ternary(d, d),
                Gate = Ternary(f, d), Up = Ternary(f, d), Down = Ternary(d, f),
            });
        Linear head = config.TiedHead ? embedding : Ternary(config.VocabSize, d);
        long fileBytes = Export.GgufExporter.EstimateFileBytes(config, GgmlType.TQ2_0);
        return new InferenceModel(config, embedding, blocks, Ones(d), head, threads, null) { FileBytes = fileBytes };
    }
}
