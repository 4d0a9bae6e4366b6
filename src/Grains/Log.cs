// The grains' log messages, source-generated ([LoggerMessage]). Not metrics: those go into job state and DuckMetrics.
using Microsoft.Extensions.Logging;

namespace Duck.Grains;

static partial class Log
{
    [LoggerMessage(1, LogLevel.Information, "job {JobId}: parameter server ready at version {Version} on {Silo}")]
    public static partial void ServerReady(ILogger logger, string jobId, int version, string silo);

    [LoggerMessage(2, LogLevel.Warning, "job {JobId}: committing step {Step} with {Arrived} of {Workers} workers")]
    public static partial void PartialCommit(ILogger logger, string jobId, int step, int arrived, int workers);

    [LoggerMessage(3, LogLevel.Error, "job {JobId}: step {Step} failed on the parameter server")]
    public static partial void CommitFailed(ILogger logger, Exception e, string jobId, int step);

    [LoggerMessage(4, LogLevel.Information, "job {JobId}: checkpoint {Name} in {Store}")]
    public static partial void Checkpointed(ILogger logger, string jobId, string name, string store);

    [LoggerMessage(5, LogLevel.Warning, "worker {Worker}: step {Step} failed")]
    public static partial void WorkerStepFailed(ILogger logger, Exception e, string worker, int step);

    [LoggerMessage(6, LogLevel.Warning, "job {JobId}: {Shards} training shard(s) for {Workers} workers; workers share shards")]
    public static partial void FewerShards(ILogger logger, string jobId, int shards, int workers);

    [LoggerMessage(7, LogLevel.Warning, "job {JobId}: checkpoint on cancel failed")]
    public static partial void CancelCheckpointFailed(ILogger logger, Exception e, string jobId);

    [LoggerMessage(8, LogLevel.Warning, "job {JobId}: parameter server re-activated from checkpoint step {Step}")]
    public static partial void ServerRecovered(ILogger logger, string jobId, int step);

    [LoggerMessage(9, LogLevel.Error, "job {JobId} failed: {Reason}")]
    public static partial void JobFailed(ILogger logger, string jobId, string reason);

    [LoggerMessage(10, LogLevel.Information, "job {JobId}: worker {Worker} moves from {From} to {To} before step {Step}")]
    public static partial void WorkerMoving(ILogger logger, string jobId, int worker, string from, string to, int step);

    [LoggerMessage(11, LogLevel.Warning, "job {JobId}: worker {Worker} did not arrive on {To}; the job goes on where it is")]
    public static partial void WorkerMoveAbandoned(ILogger logger, string jobId, int worker, string to);

    [LoggerMessage(12, LogLevel.Warning, "worker {Worker}: {Bytes} bytes of state are too many to carry when moving; it restarts them as after a silo's death")]
    public static partial void CarryTooLarge(ILogger logger, string worker, long bytes);

    [LoggerMessage(13, LogLevel.Warning, "running jobs: could not ask job {JobId} for its status; asking again next time")]
    public static partial void JobPokeFailed(ILogger logger, Exception e, string jobId);

    [LoggerMessage(14, LogLevel.Debug, "running jobs: the poke failed")]
    public static partial void JobKeeperFailed(ILogger logger, Exception e);
}
