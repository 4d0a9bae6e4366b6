// TorchSharp work that a grain runs off its scheduler, remembered so that the grain's models are disposed only after
// it ends. A grain's step or commit runs as a background task, not as a grain call, so Orleans may deactivate the grain
// (silo shutdown, a killed test silo, migration) while that task still uses the model: disposing it then freed tensors
// under a running libtorch op (SIGSEGV in bump_version, or "Tensor invalid -- empty handle").
// The work runs on a thread of its own, not on the thread pool: a step's forward and backward block their thread for
// seconds, and on a silo given one core the pool has one thread, so Orleans' message processing then waited for the
// pool to inject another (a remote worker's push answered 1.5 s late).
namespace Duck.Grains;

/// <summary>Runs off-grain work and disposes models after whatever of it is still running.</summary>
public sealed class OffGrainWork
{
    Task running = Task.CompletedTask;

    /// <summary>Starts <paramref name="work"/> on a dedicated thread, remembered.</summary>
    public Task<T> Run<T>(Func<T> work) => Remember(Task.Factory.StartNew(work, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default));

    /// <summary>Starts <paramref name="work"/> on a dedicated thread, remembered.</summary>
    public Task Run(Action work) => Remember(Task.Factory.StartNew(work, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default));

    T Remember<T>(T task) where T : Task
    {
        running = running.IsCompleted ? task : Task.WhenAll(running, task);
        return task;
    }

    /// <summary>Disposes <paramref name="items"/> now if nothing runs, else once all remembered work has ended (however it ended).</summary>
    public void DisposeAfter(params IDisposable?[] items)
    {
        if (running.IsCompleted) Dispose(items);
        else running.ContinueWith(_ => Dispose(items), CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
    }

    static void Dispose(IDisposable?[] items)
    {
        foreach (var item in items) item?.Dispose();
    }
}
