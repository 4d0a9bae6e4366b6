// Memory that the next step of a forward pass will read, asked for by a compute-bound kernel while it runs. The lookup
// kernel is bound by its permutes and reads little memory, so memory idles meanwhile; a batched decode's next attention
// reads every row's KV cache of the next layer (4.4 MB at 15 rows of 180 positions of `small`), which then comes from
// L3 instead of DRAM. Not the attention's own read-ahead (AttentionKernels), which covers one row from within attention.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Duck.Inference.Kernels;

/// <summary>
/// Address ranges handed out to the kernel's threads, one range per claim. Prefetching never faults, so a range whose
/// array the GC has since moved costs only the wasted reads.
/// </summary>
public sealed unsafe class PrefetchPlan
{
    readonly List<(nint Start, nint End)> ranges = [];
    int next;

    /// <summary>Changes whenever the plan is cleared, so threads drop what they held of an older plan.</summary>
    internal int Version { get; private set; }

    /// <summary>Drops every range (those not yet claimed are never prefetched).</summary>
    public void Clear()
    {
        ranges.Clear();
        Volatile.Write(ref next, 0);
        Version++;
    }

    /// <summary>Adds the first <paramref name="count"/> elements of <paramref name="array"/>.</summary>
    public void Add<T>(T[] array, int count) where T : unmanaged
    {
        count = Math.Min(count, array.Length);
        if (count <= 0) return;
        nint start = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));
        ranges.Add((start, start + (nint)count * sizeof(T)));
    }

    /// <summary>Bytes in the plan.</summary>
    public long Bytes
    {
        get
        {
            long sum = 0;
            foreach (var (s, e) in ranges) sum += e - s;
            return sum;
        }
    }

    /// <summary>The next unclaimed range, or false when all are claimed.</summary>
    internal bool TryClaim(out byte* start, out byte* end)
    {
        // The plain read first: once all are claimed, the threads stop writing the shared counter.
        int i = Volatile.Read(ref next) < ranges.Count ? Interlocked.Increment(ref next) - 1 : ranges.Count;
        if (i >= ranges.Count) { start = end = null; return false; }
        start = (byte*)ranges[i].Start;
        end = (byte*)ranges[i].End;
        return true;
    }
}
