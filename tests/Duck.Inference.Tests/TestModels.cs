// Helpers shared by the tests: random fp32 checkpoint tensors for a config, GGUF files in a temp folder, and a
// plain, slow reference forward pass written straight from the model math over weights dequantized from the
// GGUF (fp32, with the same int8 activation quantization). Test code only.
using Duck.Core.Model;
using Duck.Inference.Export;
using Duck.Inference.Gguf;
using Duck.Inference.Kernels;
using Duck.Inference.Quant;

namespace Duck.Inference.Tests;

public static class TestModels
{
    public static ModelConfig Tiny(bool tied = false, bool ternary = true, int vocab = 50257) =>
        ModelPresets.Get("tiny") with { TiedHead = tied, Ternary = ternary, VocabSize = vocab };

    /// <summary>Random tensors by checkpoint key (PyTorch [out, in] layout).</summary>
    public static Dictionary<string, float[]> RandomTensors(ModelConfig c, int seed)
    {
        var rng = new Random(seed);
        float[] Normal(long n, float std) => Enumerable.Range(0, (int)n).Select(_ =>
            (float)(std * Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()))).ToArray();
        float[] Gain(int n) => Enumerable.Range(0, n).Select(_ => 0.8f + 0.4f * (float)rng.NextDouble()).ToArray();
        int d = c.ModelDim, f = c.FfnDim;
        var t = new Dictionary<string, float[]>
        {
            [TensorNames.Embedding] = Normal((long)c.VocabSize * d, 1f),
            [TensorNames.FinalNorm] = Gain(d),
        };
        if (!c.TiedHead) t[TensorNames.Head] = Normal((long)c.VocabSize * d, 0.05f);
        for (int l = 0; l < c.NumLayers; l++)
        {
            t[TensorNames.AttnNorm(l)] = Gain(d); t[TensorNames.AttnSubNorm(l)] = Gain(d);
            t[TensorNames.FfnNorm(l)] = Gain(d); t[TensorNames.FfnSubNorm(l)] = Gain(f);
            foreach (var k in new[] { TensorNames.Q(l), TensorNames.K(l), TensorNames.V(l), TensorNames.O(l) }) t[k] = Normal((long)d * d, 0.05f);
            t[TensorNames.Gate(l)] = Normal((long)f * d, 0.05f); t[TensorNames.Up(l)] = Normal((long)f * d, 0.05f);
            t[TensorNames.Down(l)] = Normal((long)d * f, 0.05f);
        }
        return t;
    }

    /// <summary>Exports a random model to a temp GGUF file and returns its path.</summary>
    public static string WriteGguf(ModelConfig c, int seed, GgmlType ternary = GgmlType.TQ2_0, bool tokenizer = false, GgmlType embedding = GgmlType.Q8_0)
    {
        string path = Path.Combine(Path.GetTempPath(), $"duck-test-{Guid.NewGuid():N}.gguf");
        using var s = File.Create(path);
        GgufExporter.Export(c, RandomTensors(c, seed), s, new ExportOptions { TernaryType = ternary, IncludeTokenizer = tokenizer, EmbeddingType = embedding });
        return path;
    }

    /// <summary>A tensor of the GGUF dequantized to fp32 [rows, cols] (padding columns dropped).</summary>
    public static float[] Dequantize(GgufFile f, string name, int cols)
    {
        var t = f.Require(name);
        var all = new float[t.Ne0 * t.Rows];
        var data = f.Data(t);
        switch (t.Type)
        {
            case GgmlType.F32: System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(data).CopyTo(all); break;
            case GgmlType.Q8_0: GgmlQuants.DequantizeQ8(data, all); break;
            case GgmlType.F16:
                var h = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(data);
                for (int i = 0; i < all.Length; i++) all[i] = (float)h[i];
                break;
            case GgmlType.TQ2_0: GgmlQuants.DequantizeTq2(data, all); break;
            case GgmlType.TQ1_0: GgmlQuants.DequantizeTq1(data, all); break;
            default: throw new NotSupportedException(t.Type.ToString());
        }
        var result = new float[cols * t.Rows];
        for (long r = 0; r < t.Rows; r++) Array.Copy(all, r * t.Ne0, result, r * cols, cols);
        return result;
    }
}

/// <summary>The obviously-correct forward pass: full recompute over the whole sequence, no cache, no SIMD.</summary>
public sealed class ReferenceModel
{
    readonly ModelConfig c;
    readonly Func<string, int, float[]> w;
    readonly Dictionary<string, float[]> cache = new();

    public ReferenceModel(GgufFile file, ModelConfig config)
    {
        c = config;
        w = (name, cols) => cache.TryGetValue(name, out var v) ? v : cache[name] = TestModels.Dequantize(file, name, cols);
    }

    /// <summary>Logits [T, V] for the token sequence.</summary>
    public float[][] Logits(int[] tokens)
    {
        int T = tokens.Length, D = c.ModelDim, F = c.FfnDim, H = c.NumHeads, hd = c.HeadDim;
        var emb = w("token_embd.weight", D);
        var x = new float[T][];
        for (int t = 0; t < T; t++) x[t] = emb.AsSpan(tokens[t] * D, D).ToArray();
        for (int l = 0; l < c.NumLayers; l++)
        {
            string p = $"blk.{l}.";
            var xn = x.Select(r => Norm(r, w(p + "attn_norm.weight", D))).ToArray();
            var q = xn.Select(r => BitLinear(r, w(p + "attn_q.weight", D), D)).ToArray();
            var k = xn.Select(r => BitLinear(r, w(p + "attn_k.weight", D), D)).ToArray();
            var v = xn.Select(r => BitLinear(r, w(p + "attn_v.weight", D), D)).ToArray();
            for (int t = 0; t < T; t++) { Rope(q[t], t); Rope(k[t], t); }
            // The engine caches keys and values in bf16.
            foreach (var row in k.Concat(v))
                for (int i = 0; i < D; i++) row[i] = AttentionKernels.RoundToBf16(row[i]);
            var att = new float[T][];
            for (int t = 0; t < T; t++)
            {
                att[t] = new float[D];
                for (int h = 0; h < H; h++)
                {
                    var s = new double[t + 1];
                    for (int j = 0; j <= t; j++)
                    {
                        double dot = 0;
                        for (int i = 0; i < hd; i++) dot += q[t][h * hd + i] * k[j][h * hd + i];
                        s[j] = dot / Math.Sqrt(hd);
                    }
                    double max = s.Max(), sum = s.Sum(z => Math.Exp(z - max));
                    for (int j = 0; j <= t; j++)
                        for (int i = 0; i < hd; i++) att[t][h * hd + i] += (float)(Math.Exp(s[j] - max) / sum * v[j][h * hd + i]);
                }
            }
            for (int t = 0; t < T; t++)
            {
                var o = BitLinear(Norm(att[t], w(p + "attn_sub_norm.weight", D)), w(p + "attn_output.weight", D), D);
                for (int i = 0; i < D; i++) x[t][i] += o[i];
                var hn = Norm(x[t], w(p + "ffn_norm.weight", D));
                var g = BitLinear(hn, w(p + "ffn_gate.weight", D), D);
                var u = BitLinear(hn, w(p + "ffn_up.weight", D), D);
                var m = new float[F];
                for (int i = 0; i < F; i++) m[i] = g[i] / (1 + MathF.Exp(-g[i])) * u[i];
                var dn = BitLinear(Norm(m, w(p + "ffn_sub_norm.weight", F)), w(p + "ffn_down.weight", F), F);
                for (int i = 0; i < D; i++) x[t][i] += dn[i];
            }
        }
        return x.Select(r =>
        {
            var n = Norm(r, w("output_norm.weight", D));
            return c.TiedHead ? Matmul(n, w("token_embd.weight", D), D) : BitLinear(n, w("output.weight", D), D);
        }).ToArray();
    }

    float[] Norm(float[] x, float[] g)
    {
        double ms = x.Sum(v => (double)v * v) / x.Length;
        return x.Select((v, i) => (float)(v / Math.Sqrt(ms + c.NormEps)) * g[i]).ToArray();
    }

    void Rope(float[] x, int pos)
    {
        int hd = c.HeadDim;
        for (int h = 0; h < c.NumHeads; h++)
            for (int i = 0; i < hd / 2; i++)
            {
                double theta = pos * Math.Pow(c.RopeTheta, -2.0 * i / hd);
                float cos = (float)Math.Cos(theta), sin = (float)Math.Sin(theta);
                float a = x[h * hd + 2 * i], b = x[h * hd + 2 * i + 1];
                x[h * hd + 2 * i] = a * cos - b * sin;
                x[h * hd + 2 * i + 1] = a * sin + b * cos;
            }
    }

    /// <summary>BitLinear over dequantized weights: x is quantized to int8 per row and used as xq / s (fp32 when not ternary).</summary>
    float[] BitLinear(float[] x, float[] weights, int cols)
    {
        if (!c.Ternary) return Matmul(x, weights, cols);
        var q = new sbyte[x.Length];
        float s = QuantizedActivations.QuantizeRow(x, q, out _);
        return Matmul(q.Select(v => v / s).ToArray(), weights, cols);
    }

    static float[] Matmul(float[] x, float[] weights, int cols)
    {
        int rows = weights.Length / cols;
        var y = new float[rows];
        for (int r = 0; r < rows; r++)
        {
            double sum = 0;
            for (int j = 0; j < cols; j++) sum += (double)x[j] * weights[r * cols + j];
            y[r] = (float)sum;
        }
        return y;
    }
}
