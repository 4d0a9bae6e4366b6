// Starting a child process on a given set of cores (Linux). A child inherits the CPU affinity of the thread that
// forks it, and with it every thread it ever creates (libtorch's OpenMP pool, the runtime's threads), so the caller's
// thread is pinned around the start and restored afterwards. Used by `duck cluster up` to give each local silo its
// own cores, as separate machines would have. Not a general scheduler.
using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Duck.Core.Runtime;

public static class CpuAffinity
{
    /// <summary>True where <see cref="StartOn"/> pins (Linux).</summary>
    public static bool Supported => OperatingSystem.IsLinux();

    /// <summary>The cores of silo <paramref name="index"/> of <paramref name="count"/> sharing <paramref name="cores"/>
    /// cores: an equal, contiguous share; empty when there are more silos than cores (they then share all of them).</summary>
    public static int[] Share(int index, int count, int cores)
    {
        if (count < 1 || index < 0 || index >= count) throw new ArgumentOutOfRangeException(nameof(index), $"silo {index} of {count}");
        if (count > cores) return [];
        int each = cores / count;
        return Enumerable.Range(index * each, each).ToArray();
    }

    /// <summary>Starts <paramref name="start"/> with its affinity set to <paramref name="cores"/> (all cores when empty or
    /// where unsupported). Runs synchronously on the calling thread, whose own affinity is unchanged afterwards.</summary>
    public static Process StartOn(ProcessStartInfo start, IReadOnlyList<int> cores)
    {
        if (cores.Count == 0 || !Supported) return Process.Start(start) ?? throw new InvalidOperationException($"could not start {start.FileName}");
        var previous = new ulong[16];
        if (SchedGetAffinity(0, (nint)(previous.Length * 8), previous) != 0)
            throw new InvalidOperationException($"sched_getaffinity failed (errno {Marshal.GetLastPInvokeError()})");
        var mask = new ulong[previous.Length];
        foreach (int core in cores)
        {
            if (core < 0 || core >= mask.Length * 64) throw new ArgumentOutOfRangeException(nameof(cores), core, "no such core");
            mask[core / 64] |= 1UL << (core % 64);
        }
        if (SchedSetAffinity(0, (nint)(mask.Length * 8), mask) != 0)
            throw new InvalidOperationException($"cannot pin to cores {string.Join(",", cores)} (errno {Marshal.GetLastPInvokeError()})");
        try { return Process.Start(start) ?? throw new InvalidOperationException($"could not start {start.FileName}"); }
        finally { SchedSetAffinity(0, (nint)(previous.Length * 8), previous); }
    }

    /// <summary>The cores the calling thread may run on (Linux; null elsewhere).</summary>
    public static int[]? OfCurrentThread()
    {
        if (!Supported) return null;
        var mask = new ulong[16];
        if (SchedGetAffinity(0, (nint)(mask.Length * 8), mask) != 0) return null;
        return Enumerable.Range(0, mask.Length * 64).Where(c => (mask[c / 64] & (1UL << (c % 64))) != 0).ToArray();
    }

    [DllImport("libc", EntryPoint = "sched_setaffinity", SetLastError = true)]
    static extern int SchedSetAffinity(int pid, nint size, ulong[] mask);

    [DllImport("libc", EntryPoint = "sched_getaffinity", SetLastError = true)]
    static extern int SchedGetAffinity(int pid, nint size, ulong[] mask);
}
