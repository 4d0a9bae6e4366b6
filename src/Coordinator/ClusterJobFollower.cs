// Following a cluster job from the `duck` tool: submits (or picks up again) a job, prints one line per committed step
// (a progress line or JSON), and, given a run folder, keeps that folder's metrics.jsonl and loss.svg as `duck train`
// does. Not the commands' options: see ClusterCommands.cs.
using Duck.Grains;

namespace Duck.Coordinator;

static class ClusterJobFollower
{
    /// <summary>How long the cluster may stay unreachable before following gives up (the job grain's own limit for its
    /// parameter server is 3 min too).</summary>
    static readonly TimeSpan ContactLimit = TimeSpan.FromMinutes(3);

    /// <summary>Submits <paramref name="spec"/> as job <paramref name="grain"/>. Submitting the spec of an existing job picks
    /// it up: a running one is followed where it is (after a cluster restart it continues from its newest checkpoint),
    /// a paused one is resumed where it stopped, a cancelled or failed one from its newest checkpoint.</summary>
    public static async Task<JobStatus> SubmitOrResumeAsync(ITrainingJobGrain grain, JobSpec spec, bool json)
    {
        JobStatus status;
        try { status = await grain.SubmitAsync(spec); }
        catch (ArgumentException e) { throw new UserErrorException(e.Message); }
        if (status.State is JobState.Cancelled or JobState.Paused || (status.State == JobState.Failed && status.CheckpointStep >= 0))
        {
            if (!json) Console.WriteLine($"job {status.JobId} was {status.State.ToString().ToLowerInvariant()} at step {status.Step}; " +
                                         (status.State == JobState.Paused ? "resuming it there" : "resuming from its newest checkpoint"));
            status = await grain.ResumeAsync();
        }
        return status;
    }

    /// <summary>Prints the job's steps until it finishes; with <paramref name="runFolder"/>, also logs them there and draws
    /// the loss chart. Exit code 0 when completed, 2 when failed, 1 otherwise.</summary>
    public static async Task<int> FollowAsync(ITrainingJobGrain grain, JobStatus status, bool json, string? runFolder, CancellationToken ct)
    {
        int shown = status.Step;
        if (status.IsFinished) runFolder = null; // finished before: its folder is complete already
        if (runFolder is not null)
        {
            // Steps after the newest checkpoint may be redone (a restarted cluster): log them again from there.
            shown = Math.Min(status.Step, Math.Max(0, status.CheckpointStep));
            RunFolder.TruncateMetrics(runFolder, shown);
        }
        var reachedAt = DateTime.UtcNow;
        bool reported = false; // one line per outage
        while (!status.IsFinished)
        {
            await Task.Delay(500, ct);
            try
            {
                status = await grain.GetStatusAsync();
                (reachedAt, reported) = (DateTime.UtcNow, false);
                foreach (var m in await grain.GetHistoryAsync(shown, 1000))
                {
                    shown = m.Step;
                    if (runFolder is not null) TrainingRun.AppendMetric(runFolder, StepLine(m));
                    if (json) Cli.WriteJson(new { step = m.Step, loss = m.Loss, tokens_per_s = m.TokensPerSecond, bytes_up = m.BytesUpPerWorker, bytes_down = m.BytesDownPerWorker, live_workers = m.LiveWorkers, step_time_ms = m.StepTimeMs });
                    else Console.WriteLine($"step {m.Step}/{status.Steps} [{new string('#', 20 * m.Step / Math.Max(1, status.Steps)),-20}] loss {m.Loss:F3}  {m.TokensPerSecond:N0} tok/s  " +
                                           $"up {m.BytesUpPerWorker / 1024.0:N0} KiB down {m.BytesDownPerWorker / 1024.0:N0} KiB per worker  {m.LiveWorkers} live workers");
                }
            }
            catch (Exception e) when (e is not OperationCanceledException and not KeyNotFoundException)
            {
                if (DateTime.UtcNow - reachedAt > ContactLimit)
                    throw new UserErrorException($"lost the cluster: no answer about job {status.JobId} for {ContactLimit.TotalMinutes:F0} min ({e.Message}); " +
                                                 $"when it is back, `duck cluster status {status.JobId}` shows the job, and submitting it again continues it");
                if (!json && !reported) Console.Error.WriteLine($"(cluster busy or recovering: {e.GetType().Name}; waiting up to {ContactLimit.TotalMinutes:F0} min)");
                reported = true;
            }
        }
        if (runFolder is not null && status.State == JobState.Completed)
        {
            // The job's history is the record: it replaces lines of steps that a recovery redid while they were logged.
            var history = await grain.GetHistoryAsync(0, 10_000);
            RunFolder.TruncateMetrics(runFolder, (history.Count > 0 ? history[0].Step : status.Step + 1) - 1);
            foreach (var m in history) TrainingRun.AppendMetric(runFolder, StepLine(m));
            if (status.ValLoss is { } v) TrainingRun.AppendMetric(runFolder, new { @event = "eval", step = status.Step, val_loss = v });
            if (File.Exists(Path.Combine(runFolder, TrainingRun.MetricsFile)))
                TrainingRun.WriteChart(Path.Combine(runFolder, TrainingRun.ChartFile), new[] { (status.Spec?.Preset + (status.Spec?.IsFinetune == true ? "-duck" : "") + " (cluster)", runFolder) });
        }
        if (json) Cli.WriteJson(new { state = status.State.ToString().ToLowerInvariant(), steps = status.Step, val_loss = status.ValLoss, compression_ratio = status.CompressionRatio, reason = status.Reason });
        else Console.WriteLine($"job {status.JobId}: {status.State} at step {status.Step}; validation loss {status.ValLoss:F3}; compression ratio {status.CompressionRatio:F1}{(status.Reason is null ? "" : "; " + status.Reason)}");
        return status.State == JobState.Completed ? 0 : status.State == JobState.Failed ? Cli.UserError : 1;
    }

    /// <summary>A step as the run folder's metrics.jsonl holds it (`duck train`'s step event).</summary>
    static object StepLine(StepMetric m) =>
        new { @event = "step", step = m.Step, loss = m.Loss, lr = m.LearningRate, tokens_per_s = m.TokensPerSecond, step_time_ms = m.StepTimeMs };
}
