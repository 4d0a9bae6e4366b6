// The Duck meter (System.Diagnostics.Metrics, name "Duck"): training figures recorded by the grains as steps commit,
// and the inference instruments the chat API records. Silos export it, beside Orleans' own "Microsoft.Orleans"
// meter, on /metrics. Every training instrument carries the job id as tag "job". Not the job's history: that lives
// in grain state (JobStatus, StepMetric); these are the live figures a scraper samples.
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Duck.Grains;

public static class DuckMetrics
{
    /// <summary>The meter's name, for exporters.</summary>
    public const string MeterName = "Duck";

    static readonly Meter Meter = new(MeterName, "1.0");
    static readonly ConcurrentDictionary<string, long> CheckpointTimestamps = new();
    static readonly ConcurrentDictionary<string, (string State, int Step)> Jobs = new();

    /// <summary>Mean training loss of the newest committed step (nats/token).</summary>
    public static readonly Gauge<double> TrainingLoss = Meter.CreateGauge<double>("duck.training.loss", description: "Training loss of the newest committed step, nats per token");
    /// <summary>Validation loss at the end of a job.</summary>
    public static readonly Gauge<double> ValidationLoss = Meter.CreateGauge<double>("duck.training.validation_loss", description: "Validation loss, nats per token");
    /// <summary>Wall time of one committed step.</summary>
    public static readonly Histogram<double> StepTime = Meter.CreateHistogram<double>("duck.training.step_time", "ms", "Wall time per committed step");
    /// <summary>Training tokens per second of the newest step, all workers together.</summary>
    public static readonly Gauge<double> TokensPerSecond = Meter.CreateGauge<double>("duck.training.tokens_per_second", description: "Training tokens per second of the newest step");
    /// <summary>Bytes one worker sent to the parameter server in the newest step.</summary>
    public static readonly Gauge<long> BytesSentPerStep = Meter.CreateGauge<long>("duck.training.step_sent", "By", "Bytes sent per worker per step (gradients up)");
    /// <summary>Bytes one worker received from the parameter server in the newest step.</summary>
    public static readonly Gauge<long> BytesReceivedPerStep = Meter.CreateGauge<long>("duck.training.step_received", "By", "Bytes received per worker per step (weights down)");
    /// <summary>Workers whose gradients the newest step committed.</summary>
    public static readonly Gauge<int> LiveWorkers = Meter.CreateGauge<int>("duck.training.live_workers", description: "Workers in the newest committed step");
    /// <summary>Committed steps.</summary>
    public static readonly Counter<long> Steps = Meter.CreateCounter<long>("duck.training.steps", description: "Committed training steps");
    /// <summary>One worker's forward/backward tokens per second in its newest step.</summary>
    public static readonly Gauge<double> WorkerTokensPerSecond = Meter.CreateGauge<double>("duck.training.worker_tokens_per_second", description: "A worker's compute tokens per second");

    /// <summary>Wall time of one phase of a training step (tag "phase": a worker's fetch, load, forward_backward, encode and
    /// push; the parameter server's decode, optimizer and publish): where a step's time goes.</summary>
    public static readonly Histogram<double> PhaseTime = Meter.CreateHistogram<double>("duck.training.phase_time", "ms", "Wall time of one phase of a training step");

    /// <summary>Records <paramref name="phase"/> of <paramref name="jobId"/> as having run since <paramref name="startedTimestamp"/>;
    /// returns the current timestamp, where the next phase starts.</summary>
    public static long RecordPhase(string jobId, string phase, long startedTimestamp)
    {
        long now = Stopwatch.GetTimestamp();
        PhaseTime.Record(Stopwatch.GetElapsedTime(startedTimestamp, now).TotalMilliseconds,
                         new KeyValuePair<string, object?>("job", jobId), new KeyValuePair<string, object?>("phase", phase));
        return now;
    }

    /// <summary>Decode tokens per second of a chat reply (recorded by the chat API).</summary>
    public static readonly Histogram<double> InferenceTokensPerSecond = Meter.CreateHistogram<double>("duck.inference.tokens_per_second", description: "Decode tokens per second per reply");
    /// <summary>Time from request to first streamed token (recorded by the chat API).</summary>
    public static readonly Histogram<double> TimeToFirstToken = Meter.CreateHistogram<double>("duck.inference.time_to_first_token", "ms", "Time to first token");
    /// <summary>Open chat sessions (recorded by the chat API).</summary>
    public static readonly UpDownCounter<int> ActiveSessions = Meter.CreateUpDownCounter<int>("duck.inference.active_sessions", description: "Open chat sessions");
    /// <summary>Requests waiting for an inference slot (recorded by the chat API).</summary>
    public static readonly UpDownCounter<int> QueueDepth = Meter.CreateUpDownCounter<int>("duck.inference.queue_depth", description: "Chat requests waiting for a slot");

    // The batchers of the models this process serves, observed for their pass and token counts.
    static readonly ConcurrentDictionary<Duck.Inference.Engine.ContinuousBatcher, string> Batchers = new();

    /// <summary>Observes a served model's batcher until <see cref="ForgetBatcher"/> (the model host does both).</summary>
    public static void TrackBatcher(string model, Duck.Inference.Engine.ContinuousBatcher batcher) => Batchers[batcher] = model;
    public static void ForgetBatcher(Duck.Inference.Engine.ContinuousBatcher batcher) => Batchers.TryRemove(batcher, out _);

    static IEnumerable<Measurement<long>> ObserveBatchers(Func<Duck.Inference.Engine.ContinuousBatcher, long> figure) =>
        Batchers.Select(kv => new Measurement<long>(figure(kv.Key), new KeyValuePair<string, object?>("model", kv.Value)));

    static DuckMetrics()
    {
        // Their ratio is the mean decode batch: how many conversations each batched pass advanced.
        Meter.CreateObservableCounter("duck.inference.decode_passes", () => ObserveBatchers(b => b.DecodeSteps), description: "Batched decode passes run for the model");
        Meter.CreateObservableCounter("duck.inference.decoded_tokens", () => ObserveBatchers(b => b.DecodedTokens), description: "Tokens decoded by those passes (decoded_tokens / decode_passes is the mean batch)");
        Meter.CreateObservableCounter("duck.inference.prefilled_tokens", () => ObserveBatchers(b => b.PrefilledTokens), description: "Prompt tokens run by the model's passes alongside the decode rows");
        Meter.CreateObservableCounter("duck.inference.busy_time", () => Batchers.Select(kv => new Measurement<double>(kv.Key.BusyTime.TotalSeconds, new KeyValuePair<string, object?>("model", kv.Value))),
            "s", "Wall time the model's batcher spent in passes (busy_time / decode_passes is about the mean pass)");
        Meter.CreateObservableGauge("duck.training.checkpoint_age", ObserveCheckpointAges, "s", "Seconds since the job's newest checkpoint on this silo");
        Meter.CreateObservableGauge("duck.training.job_step", ObserveJobs, description: "Committed step of each job whose grain this silo hosted, tagged with its state");
    }

    /// <summary>Notes a job's state and committed step (recorded by the job grain whenever it saves them).</summary>
    public static void RecordJob(string jobId, JobState state, int step) => Jobs[jobId] = (state.ToString().ToLowerInvariant(), step);

    static IEnumerable<Measurement<int>> ObserveJobs() =>
        Jobs.Select(kv => new Measurement<int>(kv.Value.Step, new KeyValuePair<string, object?>("job", kv.Key), new KeyValuePair<string, object?>("state", kv.Value.State)));

    /// <summary>Records the figures of committed steps of <paramref name="jobId"/>, oldest first.</summary>
    public static void RecordSteps(string jobId, IEnumerable<StepMetric> committed)
    {
        var tag = new KeyValuePair<string, object?>("job", jobId);
        foreach (var m in committed)
        {
            TrainingLoss.Record(m.Loss, tag);
            StepTime.Record(m.StepTimeMs, tag);
            TokensPerSecond.Record(m.TokensPerSecond, tag);
            BytesSentPerStep.Record(m.BytesUpPerWorker, tag);
            BytesReceivedPerStep.Record(m.BytesDownPerWorker, tag);
            LiveWorkers.Record(m.LiveWorkers, tag);
            Steps.Add(1, tag);
        }
    }

    /// <summary>Notes that <paramref name="jobId"/> committed a checkpoint now.</summary>
    public static void RecordCheckpoint(string jobId) => CheckpointTimestamps[jobId] = Stopwatch.GetTimestamp();

    static IEnumerable<Measurement<double>> ObserveCheckpointAges() =>
        CheckpointTimestamps.Select(kv => new Measurement<double>(Stopwatch.GetElapsedTime(kv.Value).TotalSeconds, new KeyValuePair<string, object?>("job", kv.Key)));
}
