// Continuous batching over one shared model: a dedicated thread owns every forward pass of the model. Each loop
// runs one mixed pass (InferenceSession.AppendBatch): a token for every running generation plus a chunk of the
// waiting prompts, so N conversations cost one batched ternary pass per token instead of N, and new prompts ride
// along instead of stopping the others.
// Generations join and leave between steps. Callers only wait on channels: no caller thread ever runs the model.
// Not the chat template, the history or persistence (the session grains do that).
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using System.Threading.Channels;

namespace Duck.Inference.Engine;

/// <summary>The outcome of one generation, complete when its text channel has ended.</summary>
/// <param name="ReplyTokens">The sampled token ids, the end-of-text token that ended the reply excluded.</param>
public sealed record GenerationSummary(int PromptTokens, int CachedTokens, int GeneratedTokens, StopReason StopReason, double TimeToFirstTokenMs,
    IReadOnlyList<int> ReplyTokens);

/// <summary>A running generation: its text pieces as they are produced, then its summary.</summary>
public sealed class GenerationStream
{
    internal readonly Channel<string> Pieces = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    internal readonly TaskCompletionSource<GenerationSummary> Result = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Text pieces in order; the channel completes (with the failure, if any) when generation ends.</summary>
    public ChannelReader<string> Text => Pieces.Reader;
    /// <summary>Counters and the stop reason; completes after the last piece.</summary>
    public Task<GenerationSummary> Completion => Result.Task;
}

/// <summary>Schedules the generations of many sessions over one model; see the file header.</summary>
public sealed class ContinuousBatcher : IDisposable
{
    /// <summary>Most prompt tokens per pass, so a long prompt delays the others' next token by one chunk only.</summary>
    public const int PrefillChunkTokens = 64;
    /// <summary>The default of <see cref="ShiftMinTokens"/>.</summary>
    public const int DefaultShiftMinTokens = 16;

    /// <summary>
    /// Shortest run of cached tokens, after a span the new prompt leaves out, that is moved down in the KV cache
    /// (InferenceSession.RemoveWithoutReplay) instead of being prefilled again; 0 never moves cached tokens.
    /// </summary>
    public int ShiftMinTokens { get; init; } = DefaultShiftMinTokens;

    readonly InferenceModel model;
    readonly int maxBatchSize;
    readonly ConcurrentQueue<Generation> incoming = new();
    readonly SemaphoreSlim wake = new(0);
    readonly Thread thread;
    readonly CancellationTokenSource stopping = new();
    readonly ForwardScratch scratch = new(); // lent to every session while the batcher runs it: one set of buffers per model
    long decodeSteps, decodedTokens, prefilledTokens, busyTicks;
    int activeGenerations;

    /// <param name="maxBatchSize">Most generations advanced in one batched pass; more wait for a free slot.</param>
    public ContinuousBatcher(InferenceModel model, int maxBatchSize = 64, string name = "model")
    {
        if (maxBatchSize < 1) throw new ArgumentException($"maxBatchSize must be at least 1, got {maxBatchSize}");
        this.model = model;
        this.maxBatchSize = maxBatchSize;
        thread = new Thread(Loop) { IsBackground = true, Name = $"duck-batcher-{name}" };
        thread.Start();
    }

    public InferenceModel Model => model;
    /// <summary>Batched decode passes run so far.</summary>
    public long DecodeSteps => Interlocked.Read(ref decodeSteps);
    /// <summary>Tokens decoded by those passes (their mean batch size is DecodedTokens / DecodeSteps).</summary>
    public long DecodedTokens => Interlocked.Read(ref decodedTokens);
    /// <summary>Prompt tokens run by the passes (the chunks that ride along with the decode rows).</summary>
    public long PrefilledTokens => Interlocked.Read(ref prefilledTokens);
    /// <summary>Wall time spent in passes (forward and sampling); over DecodeSteps, about the mean time of a pass.</summary>
    public TimeSpan BusyTime => Stopwatch.GetElapsedTime(0, Interlocked.Read(ref busyTicks));
    /// <summary>Generations submitted and not yet ended (queued, prefilling or decoding); 0 when the model is idle.</summary>
    public int ActiveGenerations => Volatile.Read(ref activeGenerations);

    /// <summary>
    /// Queues a generation continuing <paramref name="session"/> with <paramref name="promptTokens"/>, the whole
    /// prompt: the session's cached tokens that match its start are reused and only the rest is prefilled.
    /// The session must not be used by anyone else until the stream completes. Cancelling <paramref name="ct"/>
    /// ends the generation at the next step (StopReason.Cancelled).
    /// </summary>
    public GenerationStream Submit(InferenceSession session, IReadOnlyList<int> promptTokens, SamplingOptions options, CancellationToken ct = default)
    {
        ObjectDisposedException.ThrowIf(stopping.IsCancellationRequested, this);
        if (session.Model != model) throw new ArgumentException("the session belongs to another model");
        options.Validate();
        if (promptTokens.Count == 0) throw new ArgumentException("the prompt is empty");
        if (promptTokens.Count >= session.ContextLength)
            throw new ArgumentException($"the prompt is {promptTokens.Count} tokens; the context window is {session.ContextLength}");
        var g = new Generation(session, promptTokens.ToArray(), options, ct, () => Interlocked.Decrement(ref activeGenerations));
        Interlocked.Increment(ref activeGenerations);
        incoming.Enqueue(g);
        wake.Release();
        return g.Stream;
    }

    void Loop()
    {
        var running = new List<Generation>();
        var prefilling = new List<Generation>();
        while (!stopping.IsCancellationRequested)
        {
            if (running.Count == 0 && prefilling.Count == 0)
            {
                try { wake.Wait(stopping.Token); } catch (OperationCanceledException) { break; }
            }
            while (running.Count + prefilling.Count < maxBatchSize && incoming.TryDequeue(out var g)) prefilling.Add(g);
            long started = Stopwatch.GetTimestamp();
            Step(running, prefilling);
            Interlocked.Add(ref busyTicks, Stopwatch.GetTimestamp() - started);
            running.RemoveAll(g => g.Finished);
            foreach (var g in prefilling)
                if (g.PrefillOffset == g.Prompt.Length && !g.Finished) running.Add(g);
            prefilling.RemoveAll(g => g.Finished || g.PrefillOffset == g.Prompt.Length);
        }
        foreach (var g in running.Concat(prefilling).Concat(incoming)) g.Fail(new ObjectDisposedException(nameof(ContinuousBatcher)));
    }

    /// <summary>
    /// One forward pass: a token for every running generation plus up to <see cref="PrefillChunkTokens"/> prompt
    /// tokens of the oldest waiting generations, then sampling for every row that ends a prompt or a decode step.
    /// </summary>
    void Step(List<Generation> running, List<Generation> prefilling)
    {
        var batch = new List<Generation>(running.Count + 2);
        var segments = new List<int[]>(running.Count + 2);
        foreach (var g in running)
        {
            if (g.Finished) continue;
            if (g.Cancelled) { g.Finish(StopReason.Cancelled); continue; }
            batch.Add(g);
            segments.Add([g.PendingToken]);
        }
        int decodeRows = batch.Count, budget = PrefillChunkTokens;
        foreach (var g in prefilling)
        {
            if (budget == 0) break;
            if (!Prepare(g)) continue;
            int n = Math.Min(budget, g.Prompt.Length - g.PrefillOffset);
            batch.Add(g);
            segments.Add(g.Prompt.AsSpan(g.PrefillOffset, n).ToArray());
            budget -= n;
        }
        if (batch.Count == 0) return;
        var sessions = batch.Select(g => g.Session).ToArray();
        // Rows that end a prompt or a decode step sample their next token from the pass's logits, in one parallel loop
        // (sampling is per generation and independent); a prompt chunk that does not end its prompt needs none.
        var samples = new bool[batch.Count];
        for (int i = 0; i < batch.Count; i++)
            samples[i] = i < decodeRows || batch[i].PrefillOffset + segments[i].Length == batch[i].Prompt.Length;
        foreach (var s in sessions) s.BorrowedScratch = scratch;
        try
        {
            InferenceSession.AppendBatch(sessions, segments, (i, logits) => { if (samples[i]) batch[i].SampleNext(logits); });
        }
        catch (Exception e)
        {
            foreach (var g in batch) g.Fail(e);
            return;
        }
        finally
        {
            foreach (var s in sessions) s.BorrowedScratch = null;
        }
        if (decodeRows > 0)
        {
            Interlocked.Increment(ref decodeSteps);
            Interlocked.Add(ref decodedTokens, decodeRows);
        }
        for (int i = decodeRows; i < batch.Count; i++)
        {
            batch[i].PrefillOffset += segments[i].Length;
            Interlocked.Add(ref prefilledTokens, segments[i].Length);
        }
    }

    /// <summary>
    /// Before a generation's first chunk: keeps the longest cached prefix of its prompt (at least one prompt token
    /// is run again so fresh logits come from it). False when the generation ended (cancelled or failed).
    /// </summary>
    bool Prepare(Generation g)
    {
        if (g.Finished) return false;
        if (g.Cancelled) { g.Finish(StopReason.Cancelled); return false; }
        if (g.PrefillOffset >= 0) return true;
        var s = g.Session;
        s.BorrowedScratch = scratch;
        try
        {
            int keep = 0, limit = Math.Min(s.Length, g.Prompt.Length - 1);
            while (keep < limit && s.Tokens[keep] == g.Prompt[keep]) keep++;
            // A prompt that drops a span of the cached tokens after the common prefix (a chat window moving past its
            // oldest exchanges) keeps the cache of what follows the span: it moves down instead of being prefilled.
            if (ShiftMinTokens > 0 && LongestShiftedMatch(s.Tokens, g.Prompt, keep) is var (drop, follow) && follow >= ShiftMinTokens)
            {
                s.TruncateWithoutReplay(keep + drop + follow); // only the matching run moves
                s.RemoveWithoutReplay(keep, drop);
                keep += follow;
            }
            if (keep < s.Length) s.TruncateWithoutReplay(keep);
            g.CachedTokens = keep;
            g.PrefillOffset = keep;
            return true;
        }
        catch (Exception e)
        {
            g.Fail(e);
            return false;
        }
        finally { s.BorrowedScratch = null; }
    }

    /// <summary>
    /// The span of cached tokens after position <paramref name="start"/> whose removal lets the most further cached
    /// tokens match the prompt: (drop, follow) with cached[start + drop + i] = prompt[start + i] for i &lt; follow, and
    /// at least one prompt token left to run; (0, 0) when no removal matches anything.
    /// </summary>
    internal static (int Drop, int Follow) LongestShiftedMatch(IReadOnlyList<int> cached, int[] prompt, int start)
    {
        int best = 0, bestDrop = 0;
        for (int drop = 1; start + drop + best < cached.Count; drop++)
        {
            int n = 0, limit = Math.Min(cached.Count - start - drop, prompt.Length - 1 - start);
            while (n < limit && cached[start + drop + n] == prompt[start + n]) n++;
            if (n > best) (best, bestDrop) = (n, drop);
        }
        return best > 0 ? (bestDrop, best) : (0, 0);
    }

    public void Dispose()
    {
        if (stopping.IsCancellationRequested) return;
        stopping.Cancel();
        thread.Join();
    }

    /// <summary>One request's generation state; touched only by the batcher thread (TextGenerator.Run, step by step).</summary>
    sealed class Generation(InferenceSession session, int[] prompt, SamplingOptions options, CancellationToken ct, Action ended)
    {
        readonly Sampler sampler = new(options);
        readonly TokenTextDecoder decoder = new();
        readonly StringBuilder pending = new();
        readonly Stopwatch clock = Stopwatch.StartNew();
        readonly List<int> replyTokens = new();
        int generated;
        double firstTokenMs;

        public readonly GenerationStream Stream = new();
        public InferenceSession Session => session;
        public int[] Prompt => prompt;
        public int PrefillOffset = -1;
        public int CachedTokens;
        public int PendingToken;
        public bool Finished;
        public bool Cancelled => ct.IsCancellationRequested;

        /// <summary>Samples from the logits after the session's last token; either finishes or leaves a token to decode next step.</summary>
        public void SampleNext(ReadOnlySpan<float> logits)
        {
            try
            {
                if (Cancelled) { Finish(StopReason.Cancelled); return; }
                int token = sampler.Sample(logits, session.Tokens);
                if (generated == 0) firstTokenMs = clock.Elapsed.TotalMilliseconds;
                generated++;
                if (token == options.EndOfTextToken) { Finish(StopReason.EndOfText); return; }
                replyTokens.Add(token);
                pending.Append(decoder.Append(token));
                var (emit, stopped) = TextGenerator.SplitAtStop(pending, options.StopSequences);
                if (emit.Length > 0) Stream.Pieces.Writer.TryWrite(emit);
                if (stopped) { Finish(StopReason.StopSequence); return; }
                if (generated >= options.MaxTokens) { Finish(StopReason.MaxTokens); return; }
                if (session.Length >= session.ContextLength) { Finish(StopReason.ContextFull); return; }
                PendingToken = token;
            }
            catch (Exception e) { Fail(e); }
        }

        public void Finish(StopReason reason)
        {
            if (Finished) return;
            Finished = true;
            if (reason != StopReason.StopSequence)
            {
                pending.Append(decoder.Flush());
                if (pending.Length > 0) Stream.Pieces.Writer.TryWrite(pending.ToString());
            }
            ended();
            Stream.Pieces.Writer.TryComplete();
            Stream.Result.TrySetResult(new GenerationSummary(prompt.Length, CachedTokens, generated, reason, firstTokenMs, replyTokens));
        }

        public void Fail(Exception e)
        {
            if (Finished) return;
            Finished = true;
            ended();
            Stream.Pieces.Writer.TryComplete(e);
            Stream.Result.TrySetException(e);
        }
    }
}
