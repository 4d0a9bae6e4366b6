// The prefetch plan hands every range to exactly one thread, whole, and then nothing; clearing it starts over.
using Duck.Inference.Kernels;

namespace Duck.Inference.Tests;

public sealed class PrefetchPlanTests
{
    [Fact]
    public unsafe void TryClaim_FromManyThreads_HandsOutEveryRangeOnce()
    {
        var arrays = Enumerable.Range(0, 200).Select(i => new int[10 + i]).ToArray();
        var plan = new PrefetchPlan();
        foreach (var a in arrays) plan.Add(a, a.Length - 3);
        plan.Add(new byte[8], 0); // empty: left out
        Assert.Equal(arrays.Sum(a => 4L * (a.Length - 3)), plan.Bytes);

        var claimed = new System.Collections.Concurrent.ConcurrentBag<(long Start, long End)>();
        Parallel.For(0, 4, _ =>
        {
            while (plan.TryClaim(out byte* start, out byte* end)) claimed.Add(((long)start, (long)end));
        });

        Assert.Equal(arrays.Length, claimed.Count);
        Assert.Equal(plan.Bytes, claimed.Sum(c => c.End - c.Start));
        Assert.Equal(arrays.Length, claimed.Select(c => c.Start).Distinct().Count());
        Assert.False(plan.TryClaim(out _, out _));

        plan.Clear();
        Assert.Equal(0, plan.Bytes);
        Assert.False(plan.TryClaim(out _, out _));
        plan.Add(arrays[0], 4);
        Assert.True(plan.TryClaim(out byte* s, out byte* e));
        Assert.Equal(16, e - s);
    }
}
