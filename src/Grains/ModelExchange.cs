// The TorchSharp side of what travels: the parameter server packs a weight version (BitLinear matrices as 2-bit
// ternary codes with their per-tensor gamma, norms fp32, the embedding served by rows), a worker replica loads it,
// and a worker encodes its gradient (ternary with error feedback, fp16 or fp32). Runs off the grain scheduler.
using Duck.Core.Data;
using Duck.Core.Model;
using Duck.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace Duck.Grains;

/// <summary>Packing and unpacking of weights and gradients for one model shape.</summary>
public static class ModelExchange
{
    /// <summary>Names of the BitLinear weights (sent ternary) of <paramref name="model"/>.</summary>
    public static HashSet<string> TernaryNames(DuckTransformer model)
    {
        var layers = model.BitLinears.Select(l => l.Weight).ToList();
        return model.named_parameters().Where(p => layers.Any(w => ReferenceEquals(w, p.parameter))).Select(p => p.name).ToHashSet();
    }

    /// <summary>True when workers fetch the embedding by rows (it is not the LM head).</summary>
    public static bool EmbeddingByRows(ModelConfig config) => !config.TiedHead;

    /// <summary>The packed weights a replica needs, but the embedding when it travels by rows.</summary>
    public static byte[] PackWeights(DuckTransformer latent, HashSet<string> ternaryNames)
    {
        var packet = new TensorPacketWriter(capacity: 1 << 20);
        using var noGrad = no_grad();
        foreach (var (name, p) in latent.named_parameters())
        {
            long rows = p.dim() >= 2 ? p.shape[0] : 1, columns = p.numel() / rows;
            if (ternaryNames.Contains(name))
            {
                using var scope = NewDisposeScope();
                // Taken from BitQuant.TernaryWeights itself, so replicas see exactly the trainer's values q = t * gamma:
                // every nonzero |q| is gamma, and t = sign(q).
                var q = BitQuant.TernaryWeights(p);
                var t = q.sign().to(ScalarType.Int8).contiguous();
                packet.WriteTernary(name, rows, columns, new[] { q.abs().max().item<float>() }, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, sbyte>(t.bytes));
            }
            else if (name == TensorNames.Embedding && EmbeddingByRows(latent.Config)) continue;
            else
            {
                using var c = p.detach().contiguous();
                packet.WriteFp32(name, rows, columns, c.ToArrayFast<float>());
            }
        }
        return packet.ToArray();
    }

    /// <summary>fp32 bytes of the given rows of an embedding held row-major in <paramref name="source"/>.</summary>
    public static byte[] EmbeddingRows(float[] source, ModelConfig config, int[] rows)
    {
        int dim = config.ModelDim, vocab = config.VocabSize;
        var result = new byte[rows.Length * dim * 4];
        var target = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(result.AsSpan());
        for (int r = 0; r < rows.Length; r++)
        {
            if ((uint)rows[r] >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(rows), rows[r], $"embedding row must be in 0..{vocab - 1}");
            for (int c = 0; c < dim; c++) target[r * dim + c] = source[(long)rows[r] * dim + c];
        }
        return result;
    }

    /// <summary>Loads a weight packet (and the embedding rows it omits) into a replica running with prequantized weights.</summary>
    public static void LoadReplica(DuckTransformer replica, byte[] weights, int[] rowIds, byte[] rowBytes)
    {
        var parameters = replica.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using var noGrad = no_grad();
        TensorPacketReader.ReadEntries(weights, (in PacketEntry entry) =>
        {
            if (!parameters.TryGetValue(entry.Name, out var p)) throw new InvalidDataException($"weights hold '{entry.Name}', which this model does not have");
            if (entry.RowIds is not null || p.numel() != entry.Count)
                throw new InvalidDataException($"weights '{entry.Name}' hold {entry.Count} values, the model expects {p.numel()}");
            if (!p.is_contiguous()) throw new InvalidOperationException($"parameter '{entry.Name}' is not contiguous");
            entry.Decode(0, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(p.bytes)); // straight into the parameter
        });
        if (rowIds.Length == 0) return;
        var embedding = parameters[TensorNames.Embedding];
        int dim = replica.Config.ModelDim;
        var floats = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(rowBytes.AsSpan()).ToArray();
        using var index = tensor(rowIds.Select(i => (long)i).ToArray(), ScalarType.Int64);
        using var value = tensor(floats, new long[] { rowIds.Length, dim });
        embedding.index_copy_(0, index, value);
    }

    /// <summary>Encodes a replica's gradients: the embedding only for <paramref name="rowIds"/> (its other rows are zero),
    /// everything else dense. Ternary uses and updates <paramref name="residuals"/> (error feedback).</summary>
    public static byte[] EncodeGradients(DuckTransformer replica, int[] rowIds, GradientCompression compression,
                                         Dictionary<string, float[]> residuals, ref SplitMix64 rng, float clipSigmas = TernaryCodec.DefaultClipSigmas)
    {
        var packet = new TensorPacketWriter(capacity: 1 << 20);
        bool byRows = EmbeddingByRows(replica.Config);
        foreach (var (name, p) in replica.named_parameters())
        {
            using var scope = NewDisposeScope();
            var g = p.grad is null ? zeros_like(p) : p.grad.detach();
            long rows = p.dim() >= 2 ? p.shape[0] : 1, columns = p.numel() / rows;
            int[]? ids = byRows && name == TensorNames.Embedding ? rowIds : null;
            // The embedding's gradient is zero outside the batch's rows: copy out only those.
            if (ids is not null) g = g.index_select(0, tensor(ids.Select(i => (long)i).ToArray(), ScalarType.Int64));
            using var c = g.contiguous();
            var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(c.bytes); // read in place, no copy
            residuals.TryGetValue(name, out var residual);
            if (residual is null && compression.IsTernary()) residuals[name] = residual = new float[p.numel()];
            WriteEncoded(packet, name, rows, columns, values, ids, compression, residual, ref rng, clipSigmas);
        }
        return packet.ToArray();
    }

    /// <summary>Writes one tensor (or, with <paramref name="ids"/>, those rows of it) in <paramref name="compression"/>'s
    /// encoding. Ternary adds and updates <paramref name="residual"/> (dense, the whole tensor): error feedback.</summary>
    public static void WriteEncoded(TensorPacketWriter packet, string name, long rows, long columns, ReadOnlySpan<float> values, int[]? ids,
                                    GradientCompression compression, float[]? residual, ref SplitMix64 rng,
                                    float clipSigmas = TernaryCodec.DefaultClipSigmas)
    {
        switch (compression)
        {
            case GradientCompression.None: packet.WriteFp32(name, rows, columns, values, ids); break;
            case GradientCompression.Fp16: packet.WriteFp16(name, rows, columns, values, ids); break;
            default:
                residual ??= new float[rows * columns];
                long sentRows = ids?.Length ?? rows;
                var scales = new float[sentRows];
                var packed = new byte[TernaryCodec.PackedBytes(values.Length)];
                var codes = new sbyte[columns];
                for (int r = 0; r < sentRows; r++)
                {
                    long at = (ids is null ? r : ids[r]) * columns;
                    var slot = residual.AsSpan((int)at, (int)columns);
                    var row = values.Slice((int)(r * columns), (int)columns);
                    scales[r] = compression == GradientCompression.Ternary
                        ? TernaryCodec.QuantizeRowThreshold(row, slot, codes)
                        : TernaryCodec.QuantizeRow(row, slot, codes, ref rng, clipSigmas);
                    TernaryCodec.PackAt(codes, packed, r * columns);
                }
                packet.WritePackedTernary(name, rows, columns, scales, packed, ids);
                break;
        }
    }

    /// <summary>Adds a gradient packet's values into dense per-tensor sums.</summary>
    public static void Accumulate(byte[] packet, Dictionary<string, float[]> sums) =>
        Accumulate(packet, name => sums.TryGetValue(name, out var sum) ? sum : throw UnknownTensor(name));

    /// <summary>The error for a gradient tensor the model does not have.</summary>
    public static InvalidDataException UnknownTensor(string name) => new($"gradient holds '{name}', which this model does not have");

    /// <summary>Where the values of the tensor named so are summed (throws for a name the model does not have).</summary>
    public delegate Span<float> SumTarget(string name);

    /// <summary>Adds a gradient packet's values into the dense per-tensor sums that <paramref name="target"/> gives.</summary>
    public static void Accumulate(byte[] packet, SumTarget target)
    {
        TensorPacketReader.ReadEntries(packet, (in PacketEntry entry) =>
        {
            var sum = target(entry.Name);
            if (entry.RowIds is not { } ids)
            {
                if (entry.Count != sum.Length) throw new InvalidDataException($"gradient '{entry.Name}' holds {entry.Count} values, expected {sum.Length}");
                entry.Decode(0, sum, add: true); // decoded straight into the sum: no temporary per tensor
                return;
            }
            long columns = entry.Columns;
            for (int r = 0; r < ids.Length; r++)
            {
                if ((long)ids[r] * columns + columns > sum.Length || ids[r] < 0) throw new InvalidDataException($"gradient '{entry.Name}' row {ids[r]} is out of range");
                entry.Decode(r * columns, sum.Slice((int)(ids[r] * columns), (int)columns), add: true);
            }
        });
    }
}
