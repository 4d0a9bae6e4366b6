// A tiny persistent pool that runs one parallel loop at a time on the calling thread plus N-1 workers, which
// spin briefly (50 µs of pause instructions) between loops and then sleep. The caller never waits for a worker
// that has not started: it drains the items itself and waits only for items already claimed, so a descheduled worker costs nothing.
// Cheaper than Parallel.For for the ~100 small loops of one decoded token. Not a general scheduler: no nesting.
using System.Diagnostics;

namespace Duck.Inference.Engine;

/// <summary>Runs body(0..items-1) across threads; calls are serialized.</summary>
public sealed class WorkerPool : IDisposable
{
    sealed class Job(Action<int> body, int items)
    {
        public readonly Action<int> Body = body;
        public readonly int Items = items;
        public int Next;
        public int Completed;
        public Exception? Failure;

        public void Drain()
        {
            int i;
            while ((i = Interlocked.Increment(ref Next) - 1) < Items)
            {
                try { Body(i); }
                catch (Exception e) { Interlocked.CompareExchange(ref Failure, e, null); }
                Interlocked.Increment(ref Completed);
            }
        }
    }

    static readonly long SpinTicks = Stopwatch.Frequency / 20_000; // 50 µs
    readonly Thread[] workers;
    readonly object gate = new();
    readonly object runLock = new();
    Job? current;
    int sleepers;
    volatile bool stopping;

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

    /// <summary>Runs <paramref name="work"/> for every index in [0, itemCount); returns when all are done; rethrows the first exception.</summary>
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
            var job = new Job(work, itemCount);
            Volatile.Write(ref current, job);
            if (Volatile.Read(ref sleepers) > 0)
                lock (gate) Monitor.PulseAll(gate);
            job.Drain();
            // The items left are running on workers right now: pause-spin for them, and yield the core only if they
            // take long (a worker descheduled on a busy machine).
            long until = Stopwatch.GetTimestamp() + SpinTicks;
            while (Volatile.Read(ref job.Completed) < itemCount && Stopwatch.GetTimestamp() < until) Thread.SpinWait(20);
            var spin = new SpinWait();
            while (Volatile.Read(ref job.Completed) < itemCount) spin.SpinOnce(sleep1Threshold: -1);
            if (job.Failure is not null) throw new AggregateException(job.Failure).InnerException!;
        }
    }

    void WorkerLoop()
    {
        Job? seen = null;
        while (!stopping)
        {
            // Busy-wait (pause instructions, no sched_yield syscalls) for a short while: the next loop of a forward
            // pass usually starts within microseconds; after that, sleep until pulsed.
            long until = Stopwatch.GetTimestamp() + SpinTicks;
            while (Volatile.Read(ref current) == seen && !stopping && Stopwatch.GetTimestamp() < until) Thread.SpinWait(20);
            if (Volatile.Read(ref current) == seen)
            {
                lock (gate)
                {
                    Interlocked.Increment(ref sleepers);
                    while (Volatile.Read(ref current) == seen && !stopping) Monitor.Wait(gate, 50);
                    Interlocked.Decrement(ref sleepers);
                }
            }
            if (stopping) return;
            seen = Volatile.Read(ref current);
            seen?.Drain();
        }
    }

    public void Dispose()
    {
        stopping = true;
        lock (gate) Monitor.PulseAll(gate);
    }
}
