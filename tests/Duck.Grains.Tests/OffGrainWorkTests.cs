// A grain's models are disposed only after the off-grain work that uses them has ended.
namespace Duck.Grains.Tests;

public class OffGrainWorkTests
{
    sealed class Flag : IDisposable
    {
        public bool Disposed { get; private set; }
        public void Dispose() => Disposed = true;
    }

    [Fact]
    public async Task DisposeAfter_WhileWorkRuns_WaitsForItToEnd()
    {
        var work = new OffGrainWork();
        var gate = new ManualResetEventSlim();
        var flag = new Flag();
        var running = work.Run(() => gate.Wait());
        var failing = work.Run(() => throw new InvalidOperationException("a failed step still ends"));

        work.DisposeAfter(flag, null);
        await Task.Delay(100);
        Assert.False(flag.Disposed);

        gate.Set();
        await running;
        await Assert.ThrowsAsync<InvalidOperationException>(() => failing);
        for (int i = 0; i < 100 && !flag.Disposed; i++) await Task.Delay(10);
        Assert.True(flag.Disposed);
    }

    [Fact]
    public async Task DisposeAfter_NothingRunning_DisposesAtOnce()
    {
        var work = new OffGrainWork();
        Assert.Equal(3, await work.Run(() => 3));
        var flag = new Flag();

        work.DisposeAfter(flag);

        Assert.True(flag.Disposed);
    }

    [Fact]
    public async Task Run_BlockingWork_LeavesThePoolItsThreads()
    {
        // A step blocks its thread for seconds; on the pool it starved the silo's message processing (one core, one thread).
        var work = new OffGrainWork();
        var gate = new ManualResetEventSlim();
        bool? onPool = null;
        var blocking = work.Run(() => { onPool = Thread.CurrentThread.IsThreadPoolThread; gate.Wait(); });
        var other = work.Run(() => Thread.CurrentThread.IsThreadPoolThread);

        Assert.False(await other.WaitAsync(TimeSpan.FromSeconds(10)));
        gate.Set();
        await blocking;
        Assert.False(onPool);
    }
}
