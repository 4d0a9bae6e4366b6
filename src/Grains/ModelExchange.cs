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
        var sent = latent.named_parameters().Where(p => ternaryNames.Contains(p.name) || !(p.name == TensorNames.Embedding && EmbeddingByRows(latent.Config))).ToList();
        // Written into a buffer of exactly the packet's size (no regrowth, no copy: fresh pages cost on every step).
        var packet = new TensorPacketWriter(checked((int)(TensorPacketWriter.HeaderBytes + sent.Sum(p =>
        {
            long rows = p.parameter.dim() >= 2 ? p.parameter.shape[0] : 1;
            bool ternary = ternaryNames.Contains(p.name);
            return TensorPacketWriter.Bytes(p.name, ternary ? EntryKind.Ternary : EntryKind.Fp32, rows, p.parameter.numel() / rows, byRows: false, scales: 1);
        }))));
        using var noGrad = no_grad();
        foreach (var (name, p) in sent)
        {
            long rows = p.dim() >= 2 ? p.shape[0] : 1, columns = p.numel() / rows;
            if (ternaryNames.Contains(name))
            {
                using var scope = NewDisposeScope();
                // With BitQuant's own gamma and divisor, so replicas see exactly the trainer's values q = t * gamma:
                // every nonzero |q| is gamma, and t = sign(q) (tests compare with BitQuant.TernaryWeights).
                var (gamma, denominator) = BitQuant.TernaryScale(p);
                var w = p.detach().contiguous();
                var packed = new byte[TernaryCodec.PackedBytes(p.numel())];
                bool any = TernaryCodec.PackTernaryWeights(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(w.bytes), denominator, packed);
                packet.WritePackedTernary(name, rows, columns, new[] { any ? gamma : 0f }, packed); // max |q| is gamma, or 0 with no nonzero
            }
            else packet.WriteFp32(name, rows, columns, p.DetachedArray<float>());
        }
        return packet.ToArray();
    }

    /// <summary>fp32 bytes of the given rows of an embedding held row-major in <paramref name="source"/>.</summary>
    public static byte[] EmbeddingRows(float[] source, ModelConfig config, int[] rows)
    {
        var result = new byte[rows.Length * config.ModelDim * 4];
        GatherRows(source, config.ModelDim, rows, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(result.AsSpan()));
        return result;
    }

    /// <summary>target[r] = source row rows[r], for a row-major source of <paramref name="columns"/> values per row.</summary>
    public static void GatherRows(ReadOnlySpan<float> source, int columns, int[] rows, Span<float> target)
    {
        long count = source.Length / columns;
        for (int r = 0; r < rows.Length; r++)
        {
            if ((uint)rows[r] >= (ulong)count) throw new ArgumentOutOfRangeException(nameof(rows), rows[r], $"row must be in 0..{count - 1}");
            source.Slice(rows[r] * columns, columns).CopyTo(target.Slice(r * columns, columns));
        }
    }

    /// <summary>Target row rows[r] = source[r]: the inverse of <see cref="GatherRows"/>; source must hold rows.Length rows.</summary>
    public static void ScatterRows(ReadOnlySpan<float> source, int columns, int[] rows, Span<float> target)
    {
        if (source.Length != (long)rows.Length * columns) throw new InvalidDataException($"{source.Length} values are not {rows.Length} rows of {columns}");
        long count = target.Length / columns;
        for (int r = 0; r < rows.Length; r++)
        {
            if ((uint)rows[r] >= (ulong)count) throw new InvalidDataException($"row {rows[r]} is not in 0..{count - 1}");
            source.Slice(r * columns, columns).CopyTo(target.Slice(rows[r] * columns, columns));
        }
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
        // Rows copied straight into the parameter: no index and value tensors (native temporaries of a size that changes
        // with every batch's rows, between the forward passes whose big tensors reuse libtorch's freed blocks).
        var embedding = parameters[TensorNames.Embedding];
        if (!embedding.is_contiguous()) throw new InvalidOperationException($"parameter '{TensorNames.Embedding}' is not contiguous");
        ScatterRows(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(rowBytes.AsSpan()), replica.Config.ModelDim, rowIds,
                    System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(embedding.bytes));
    }

    /// <summary>Encodes a replica's gradients: the embedding only for <paramref name="rowIds"/> (its other rows are zero),
    /// everything else dense. Ternary uses and updates <paramref name="residuals"/> (error feedback).</summary>
    public static byte[] EncodeGradients(DuckTransformer replica, int[] rowIds, GradientCompression compression,
                                         Dictionary<string, float[]> residuals, ref SplitMix64 rng, float clipSigmas = TernaryCodec.DefaultClipSigmas)
    {
        bool byRows = EmbeddingByRows(replica.Config);
        var kind = compression switch { GradientCompression.None => EntryKind.Fp32, GradientCompression.Fp16 => EntryKind.Fp16, _ => EntryKind.Ternary };
        var packet = new TensorPacketWriter(checked((int)(TensorPacketWriter.HeaderBytes + replica.named_parameters().Sum(p =>
        {
            long rows = p.parameter.dim() >= 2 ? p.parameter.shape[0] : 1;
            bool sentByRows = byRows && p.name == TensorNames.Embedding;
            long sentRows = sentByRows ? rowIds.Length : rows;
            return TensorPacketWriter.Bytes(p.name, kind, sentRows, p.parameter.numel() / rows, sentByRows, scales: (int)sentRows);
        }))));
        foreach (var (name, p) in replica.named_parameters())
        {
            using var scope = NewDisposeScope();
            var g = p.grad is null ? zeros_like(p) : p.grad.detach();
            long rows = p.dim() >= 2 ? p.shape[0] : 1, columns = p.numel() / rows;
            int[]? ids = byRows && name == TensorNames.Embedding ? rowIds : null;
            using var c = g.contiguous();
            ReadOnlySpan<float> values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(c.bytes); // read in place, no copy
            float[]? gathered = null;
            if (ids is not null)
            {
                // The embedding's gradient is zero outside the batch's rows: only those are sent, gathered in managed memory
                // (no native index_select of a size that changes every step).
                gathered = System.Buffers.ArrayPool<float>.Shared.Rent((int)(ids.Length * columns));
                GatherRows(values, (int)columns, ids, gathered);
                values = gathered.AsSpan(0, (int)(ids.Length * columns));
            }
            residuals.TryGetValue(name, out var residual);
            if (residual is null && compression.IsTernary()) residuals[name] = residual = new float[p.numel()];
            WriteEncoded(packet, name, rows, columns, values, ids, compression, residual, ref rng, clipSigmas);
            if (gathered is not null) System.Buffers.ArrayPool<float>.Shared.Return(gathered);
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
                // Rows of a multiple of 4 values start on a byte: the thresholded quantizer writes their codes in place.
                bool inPlace = compression == GradientCompression.Ternary && columns % 4 == 0;
                for (int r = 0; r < sentRows; r++)
                {
                    long at = (ids is null ? r : ids[r]) * columns;
                    var slot = residual.AsSpan((int)at, (int)columns);
                    var row = values.Slice((int)(r * columns), (int)columns);
                    if (inPlace)
                    {
                        scales[r] = TernaryCodec.QuantizeRowThresholdPacked(row, slot, packed.AsSpan((int)(r * columns / 4)));
                        continue;
                    }
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
