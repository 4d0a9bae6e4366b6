// A tiny persistent pool that runs one parallel loop at a time on the calling thread plus N-1 workers, which
// spin briefly between loops and then sleep. Cheaper than Parallel.For for the ~100 small loops of one decoded
// token. Not a general scheduler: loops must not nest.
namespace Duck.Inference.Engine;

/// <summary>Runs body(0..items-1) across threads; calls are serialized.</summary>
public sealed class WorkerPool : IDisposable
{
    readonly Thread[] workers;
    readonly object gate = new();
    readonly object runLock = new();
    Action<int>? body;
    int items, nextItem, busyWorkers;
    long generation;
    volatile bool stopping;
    Exception? failure;

    /// <summary>The number of threads taking part in a loop (including the caller).</summary>
    public int ThreadCount => workers.Length + 1;

    public WorkerPool(int threads)
    {
        if (threads < 1) throw new ArgumentException($"threads must be at least 1, got {threads}");
        workers = new Thread[threads - 1];
        for (int i = 0; i < workers.Length; i++)
        {
            workers[i] = new Thread(WorkerLoop) { IsBackground = true, Name = $"duck-infer-{i + 1}" };
            workers[i].Start();
        }
    }

    /// <summary>Runs body for every item index; returns when all are done; rethrows the first exception.</summary>
    public void For(int itemCount, Action<int> work)
    {
        if (itemCount <= 0) return;
        if (workers.Length == 0 || itemCount == 1)
        {
            for (int i = 0; i < itemCount; i++) work(i);
            return;
        }
        lock (runLock)
        {
            body = work;
            items = itemCount;
            nextItem = 0;
            failure = null;
            Volatile.Write(ref busyWorkers, workers.Length);
            lock (gate)
            {
                generation++;
                Monitor.PulseAll(gate);
            }
            Drain();
            var spin = new SpinWait();
            while (Volatile.Read(ref busyWorkers) > 0) spin.SpinOnce(sleep1Threshold: -1);
            body = null;
            if (failure is not null) throw new AggregateException(failure).InnerException!;
        }
    }

    void Drain()
    {
        var work = body!;
        int i;
        while ((i = Interlocked.Increment(ref nextItem) - 1) < items)
        {
            try { work(i); }
            catch (Exception e) { Interlocked.CompareExchange(ref failure, e, null); }
        }
    }

    void WorkerLoop()
    {
        long seen = 0;
        while (true)
        {
            var spin = new SpinWait();
            for (int k = 0; k < 2000 && Volatile.Read(ref generation) == seen && !stopping; k++) spin.SpinOnce(sleep1Threshold: -1);
            if (Volatile.Read(ref generation) == seen)
                lock (gate)
                    while (generation == seen && !stopping) Monitor.Wait(gate);
            if (stopping) return;
            seen = Volatile.Read(ref generation);
            Drain();
            Interlocked.Decrement(ref busyWorkers);
        }
    }

    public void Dispose()
    {
        stopping = true;
        lock (gate) Monitor.PulseAll(gate);
    }
}
