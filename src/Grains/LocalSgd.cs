// Low-communication training (DiLoCo, Douillard et al. 2023, arXiv:2311.08105): each worker takes H local AdamW
// steps from the global weights and sends its weight delta (the "outer gradient"); the parameter server averages the
// deltas and takes an outer Nesterov-momentum SGD step. Weights travel down as deltas too, against a copy of what the
// workers hold that the server tracks, so both directions are compressed and what was not sent is sent next round
// (error feedback by construction). The embedding (when it is not the head) travels by rows instead: a worker fetches
// the fp32 rows of the tokens of its round and sends the delta of those rows only; the drift its AdamW gives the
// other rows (weight decay, old momentum) is not data and is dropped. Not the grains: WorkerGrain and
// ParameterServerGrain drive these.
using Duck.Core.Data;
using Duck.Core.Model;
using Duck.Model;
using static TorchSharp.torch;

namespace Duck.Grains;

/// <summary>Dense per-tensor fp32 copies of a model's parameters, and their packing.</summary>
static class DenseWeights
{
    public static Dictionary<string, float[]> Copy(DuckTransformer model)
    {
        using var noGrad = no_grad();
        return model.named_parameters().ToDictionary(p => p.name, p => p.parameter.DetachedArray<float>());
    }

    /// <summary>Writes <paramref name="values"/> into the model's parameters.</summary>
    public static void Load(DuckTransformer model, Dictionary<string, float[]> values)
    {
        using var noGrad = no_grad();
        foreach (var (name, p) in model.named_parameters())
        {
            using var t = tensor(values[name], p.shape);
            p.copy_(t);
        }
    }

    public static (long Rows, long Columns) Shape(Tensor p)
    {
        long rows = p.dim() >= 2 ? p.shape[0] : 1;
        return (rows, p.numel() / rows);
    }

    /// <summary>Every tensor of <paramref name="values"/> in <paramref name="compression"/>, but the tensors named in
    /// <paramref name="rowsOf"/> only at those rows (none: left out); ternary uses and updates <paramref name="residuals"/>
    /// (null: no error feedback kept).</summary>
    public static byte[] Encode(DuckTransformer shapes, Dictionary<string, float[]> values, GradientCompression compression,
                                Dictionary<string, float[]>? residuals, ulong seed, IReadOnlyDictionary<string, int[]>? rowsOf = null)
    {
        var packet = new TensorPacketWriter();
        var rng = new SplitMix64(seed);
        foreach (var (name, p) in shapes.named_parameters())
        {
            var (rows, columns) = Shape(p);
            int[]? ids = rowsOf?.GetValueOrDefault(name);
            if (ids is { Length: 0 }) continue;
            float[]? residual = null;
            if (residuals is not null && compression.IsTernary() && !residuals.TryGetValue(name, out residual))
                residuals[name] = residual = new float[values[name].Length];
            float[] sent = ids is null ? values[name] : Gather(values[name], ids, (int)columns);
            ModelExchange.WriteEncoded(packet, name, rows, columns, sent, ids, compression, residual, ref rng);
        }
        return packet.ToArray();
    }

    static float[] Gather(float[] all, int[] ids, int columns)
    {
        var result = new float[ids.Length * columns];
        for (int r = 0; r < ids.Length; r++) Array.Copy(all, (long)ids[r] * columns, result, (long)r * columns, columns);
        return result;
    }

    /// <summary>True when a low-communication job moves the embedding by rows: unless it is the head, or a worker's round
    /// reads as many tokens as the vocabulary has rows (then the rows, which go down in fp32, could cost more than the
    /// whole compressed delta), or the spec asks for whole deltas.</summary>
    public static bool EmbeddingByRows(JobSpec spec)
    {
        var model = JobData.Model(spec);
        long tokensPerRound = (long)spec.SyncEvery * spec.MicroBatchesPerWorker * spec.BatchSize * spec.SequenceLength;
        return spec.SyncEvery > 1 && !spec.DenseEmbeddingDelta && ModelExchange.EmbeddingByRows(model) && tokensPerRound < model.VocabSize;
    }

    /// <summary>What <see cref="Encode"/> leaves out when the embedding travels by rows.</summary>
    public static IReadOnlyDictionary<string, int[]>? WithoutEmbedding(bool embeddingByRows) =>
        embeddingByRows ? new Dictionary<string, int[]> { [TensorNames.Embedding] = [] } : null;
}

/// <summary>The server half: the replica view (what up-to-date workers hold), the outer momentum, and the downlink delta.</summary>
public sealed class OuterOptimizer
{
    readonly Dictionary<string, float[]> replica;
    readonly Dictionary<string, float[]> momentum;

    /// <summary>Changes whenever the replica view is rebuilt (a new server activation or a reload): deltas only apply within one lineage.</summary>
    public string Lineage { get; } = Guid.NewGuid().ToString("N");
    /// <summary>The version <see cref="Delta"/> applies to (-1: none, workers fetch the full weights).</summary>
    public int DeltaFrom { get; private set; } = -1;
    /// <summary>The packet taking the replica view from <see cref="DeltaFrom"/> to the current version.</summary>
    public byte[] Delta { get; private set; } = [];
    /// <summary>True while the replica view is the seed's initialization (workers build it themselves).</summary>
    public bool SeedInitialized { get; private set; }

    /// <summary>The embedding is served by rows (fp32, current weights), not in the downlink delta.</summary>
    public bool EmbeddingByRows { get; }

    public OuterOptimizer(DuckTransformer model, bool seedInitialized, IReadOnlyDictionary<string, float[]>? savedMomentum, bool embeddingByRows)
    {
        EmbeddingByRows = embeddingByRows;
        replica = DenseWeights.Copy(model);
        momentum = replica.ToDictionary(kv => kv.Key, kv => savedMomentum?.GetValueOrDefault(kv.Key)?.ToArray() ?? new float[kv.Value.Length]);
        SeedInitialized = seedInitialized;
    }

    /// <summary>The momentum buffers by name (checkpointed as "outer_momentum.{name}").</summary>
    public IEnumerable<(string Name, float[] Values)> State() => momentum.Select(kv => ($"{MomentumPrefix}{kv.Key}", kv.Value));

    public const string MomentumPrefix = "outer_momentum.";

    /// <summary>
    /// Outer Nesterov SGD on the mean delta g = <paramref name="deltaSum"/> / <paramref name="count"/> (deltas are
    /// start − end, so they point like gradients): m = μm + g; θ −= lr·(g + μm). Then publishes the downlink delta
    /// θ − replica in <paramref name="compression"/> and adds its decoded values to the replica view.
    /// </summary>
    public void Step(DuckTransformer model, Dictionary<string, float[]> deltaSum, int count, double learningRate, double mu,
                     GradientCompression compression, int fromVersion, ulong seed)
    {
        var theta = DenseWeights.Copy(model);
        float inv = 1f / count, lr = (float)learningRate, m0 = (float)mu;
        var down = new Dictionary<string, float[]>();
        foreach (var (name, w) in theta)
        {
            float[] g = deltaSum[name], m = momentum[name], r = replica[name], d = new float[w.Length];
            for (int i = 0; i < w.Length; i++)
            {
                float gi = g[i] * inv;
                m[i] = m0 * m[i] + gi;
                w[i] -= lr * (gi + m0 * m[i]);
                d[i] = w[i] - r[i];
            }
            down[name] = d;
        }
        DenseWeights.Load(model, theta);
        Delta = DenseWeights.Encode(model, down, compression, residuals: null, seed, DenseWeights.WithoutEmbedding(EmbeddingByRows));
        ModelExchange.Accumulate(Delta, replica);
        (DeltaFrom, SeedInitialized) = (fromVersion, false);
    }

    /// <summary>The replica view in fp32, for workers that cannot apply the delta.</summary>
    public byte[] Full(DuckTransformer shapes) =>
        DenseWeights.Encode(shapes, replica, GradientCompression.None, null, 0, DenseWeights.WithoutEmbedding(EmbeddingByRows));
}

/// <summary>The worker half: a latent-weight model with its inner AdamW (kept across rounds), the replica view it
/// starts every round from, and the residuals of its compressed deltas.</summary>
public sealed class LocalReplica : IDisposable
{
    readonly DuckTransformer model;
    readonly AdamW inner;
    readonly Dictionary<string, float[]> start;
    readonly Dictionary<string, float[]> residuals = new();

    public string Lineage { get; private set; } = "";
    /// <summary>The server version <see cref="start"/> holds (-1: the seed's initialization, not yet tied to a server).</summary>
    public int Version { get; private set; } = -1;

    public LocalReplica(JobSpec spec)
    {
        var options = JobData.Options(spec);
        model = new DuckTransformer(JobData.Model(spec), spec.Seed);
        inner = new AdamW(model.named_parameters(), options.Beta1, options.Beta2);
        start = DenseWeights.Copy(model);
    }

    /// <summary>True when the delta of <paramref name="m"/> (or the seed's initialization) brings this replica to m.Version.</summary>
    public bool CanFollow(WeightsManifest m) =>
        (m.SeedInitialized && Version == -1) || (m.DeltaFrom >= 0 && m.Lineage == Lineage && m.DeltaFrom == Version);

    /// <summary>Moves to <paramref name="m"/>.Version: the seed case needs no bytes, a delta is added, a full packet replaces.</summary>
    public void Follow(WeightsManifest m, byte[] packet, bool full)
    {
        if (full)
            TensorPacketReader.Read(packet, (name, _, _, _, values) =>
            {
                if (!start.TryGetValue(name, out var target) || target.Length != values.Length) throw new InvalidDataException($"weights '{name}' do not fit this model");
                values.CopyTo(target, 0);
            });
        else if (!m.SeedInitialized) ModelExchange.Accumulate(packet, start);
        (Lineage, Version) = (m.Lineage, m.Version);
    }

    /// <summary>Writes fp32 embedding rows (row-major, as the parameter server serves them) into the replica view.</summary>
    public void SetEmbeddingRows(int[] rows, byte[] rowBytes)
    {
        var target = start[TensorNames.Embedding];
        var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(rowBytes.AsSpan());
        int dim = values.Length / Math.Max(1, rows.Length);
        if (dim * rows.Length != values.Length || (long)dim * model.Config.VocabSize != target.Length)
            throw new InvalidDataException($"{rowBytes.Length} bytes are not {rows.Length} embedding rows of this model");
        ModelExchange.ScatterRows(values, dim, rows, target);
    }

    /// <summary>One round: from the replica view, one AdamW step per entry of <paramref name="steps"/> (its micro-batches,
    /// clipped at <paramref name="clip"/>), then the encoded delta start − end and the loss of every step. With
    /// <paramref name="embeddingRows"/>, the embedding's delta holds those rows only.</summary>
    public (byte[] Packet, double[] Losses) Run(IReadOnlyList<TokenBatch[]> steps, IReadOnlyList<(double Lr, double Wd)> schedule,
                                                double clip, GradientCompression compression, ulong seed, int[]? embeddingRows = null)
    {
        DenseWeights.Load(model, start);
        model.train();
        var losses = new double[steps.Count];
        for (int s = 0; s < steps.Count; s++)
        {
            using var scope = NewDisposeScope();
            inner.ZeroGrad();
            foreach (var b in steps[s])
            {
                using var micro = NewDisposeScope();
                var loss = model.Loss(tensor(b.Inputs, new long[] { b.BatchSize, b.SequenceLength }), tensor(b.Targets, new long[] { b.BatchSize, b.SequenceLength }));
                using var share = TorchSharp.ScalarExtensionMethods.ToScalar(steps[s].Length); // held: see BitQuant on implicit Scalar temporaries
                loss.div(share).backward();
                losses[s] += loss.item<float>() / steps[s].Length;
            }
            if (clip > 0) nn.utils.clip_grad_norm_(model.parameters(), clip);
            inner.Step(schedule[s].Lr, schedule[s].Wd);
        }
        var end = DenseWeights.Copy(model);
        var delta = start.ToDictionary(kv => kv.Key, kv => { var d = new float[kv.Value.Length]; for (int i = 0; i < d.Length; i++) d[i] = kv.Value[i] - end[kv.Key][i]; return d; });
        var rowsOf = embeddingRows is null ? null : new Dictionary<string, int[]> { [TensorNames.Embedding] = embeddingRows };
        return (DenseWeights.Encode(model, delta, compression, residuals, seed, rowsOf), losses);
    }

    /// <summary>About the bytes <see cref="Export"/> produces: the start view, two AdamW moments and the residuals.</summary>
    public long ExportBytes => start.Values.Sum(v => (long)v.Length) * 4 * (3 + (residuals.Count > 0 ? 1 : 0));

    /// <summary>What the replica keeps between rounds, for a worker that migrates: the start view ("start.*"), the
    /// residuals ("residual.*") and the inner AdamW moments ("m.*", "v.*") as fp32 tensors; lineage, version, inner steps.</summary>
    public (byte[] Tensors, string Lineage, int Version, long InnerSteps) Export()
    {
        var packet = new TensorPacketWriter();
        foreach (var (name, values) in start) packet.WriteFp32("start." + name, 1, values.Length, values);
        foreach (var (name, values) in residuals) packet.WriteFp32("residual." + name, 1, values.Length, values);
        foreach (var (name, moment) in inner.State()) packet.WriteFp32(name, 1, moment.numel(), moment.DetachedArray<float>());
        return (packet.ToArray(), Lineage, Version, inner.StepCount);
    }

    /// <summary>A replica of <paramref name="spec"/> restored from <see cref="Export"/>'s output.</summary>
    public static LocalReplica Import(JobSpec spec, byte[] tensors, string lineage, int version, long innerSteps)
    {
        var replica = new LocalReplica(spec);
        var shapes = replica.model.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
        var moments = new Dictionary<string, Tensor>();
        try
        {
            TensorPacketReader.Read(tensors, (name, _, _, _, values) =>
            {
                int dot = name.IndexOf('.');
                string kind = name[..Math.Max(0, dot)], parameter = name[(dot + 1)..];
                if (!shapes.TryGetValue(parameter, out var shape) || values.Length != shape.Aggregate(1L, (a, b) => a * b))
                    throw new InvalidDataException($"carried state '{name}' does not fit this model");
                if (kind == "start") values.CopyTo(replica.start[parameter], 0);
                else if (kind == "residual") replica.residuals[parameter] = values;
                else moments[name] = tensor(values, shape);
            });
            replica.inner.LoadState(moments, innerSteps);
        }
        catch
        {
            replica.Dispose();
            throw;
        }
        finally
        {
            foreach (var t in moments.Values) t.Dispose();
        }
        (replica.Lineage, replica.Version) = (lineage, version);
        return replica;
    }

    public void Dispose()
    {
        inner.Dispose();
        model.Dispose();
    }
}
