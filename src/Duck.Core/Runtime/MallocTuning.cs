// Makes glibc's malloc back large allocations with transparent huge pages and keep them for reuse. libtorch allocates
// every big tensor (logits, weight temporaries) with malloc and frees it after each op; by default glibc serves each
// one with fresh mmap'd memory, so every first touch faults and the kernel zeroes the pages again: on 4 KiB pages that
// made a 400 MB elementwise op 20x slower on this class of VM, and with huge pages the zeroing alone was still 24 % of
// a 1-thread `mini` step. With mmap off and one arena, big blocks come from the heap and are reused as they are freed
// (the heap keeps its high-water mark, as a caching allocator does). glibc reads its tunables only at start, so the
// process re-executes itself once with GLIBC_TUNABLES set. Not a general process launcher.
using System.Runtime.InteropServices;
using System.Text;

namespace Duck.Core.Runtime;

public static class MallocTuning
{
    /// <summary>Huge pages through madvise; no mmap'd blocks; one arena (mmap is every other arena's fallback); no trim below 8 GiB.</summary>
    public const string Tunable = "glibc.malloc.hugetlb=1:glibc.malloc.mmap_max=0:glibc.malloc.arena_max=1:glibc.malloc.trim_threshold=8589934592";
    const string GuardVariable = "DUCK_MALLOC_TUNED";

    /// <summary>On Linux, re-executes the current process with <see cref="Tunable"/> in GLIBC_TUNABLES unless it is there
    /// already (or DUCK_MALLOC_TUNING=0). Returns only when no re-execution happened. Call first thing in Main.</summary>
    public static void EnsureHugePageMalloc()
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("DUCK_MALLOC_TUNING") == "0") return;
        string current = Environment.GetEnvironmentVariable("GLIBC_TUNABLES") ?? "";
        if (current.Contains("glibc.malloc.hugetlb") || Environment.GetEnvironmentVariable(GuardVariable) == "1") return;
        string? exe = Environment.ProcessPath;
        string[] argv;
        try { argv = Encoding.UTF8.GetString(File.ReadAllBytes("/proc/self/cmdline")).TrimEnd('\0').Split('\0'); }
        catch (IOException) { return; }
        if (exe is null || argv.Length == 0) return;
        var env = Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
            .Where(e => (string)e.Key != "GLIBC_TUNABLES")
            .Select(e => $"{e.Key}={e.Value}")
            .Append($"GLIBC_TUNABLES={(current == "" ? Tunable : current + ":" + Tunable)}")
            .Append($"{GuardVariable}=1")
            .ToList();
        Console.Out.Flush();
        Execve(exe, argv.Append(null).ToArray(), env.Append(null).ToArray());
        // execve returns only on failure: carry on untuned.
    }

    [DllImport("libc", EntryPoint = "execve", SetLastError = true)]
    static extern int Execve(string path, string?[] argv, string?[] envp);
}
