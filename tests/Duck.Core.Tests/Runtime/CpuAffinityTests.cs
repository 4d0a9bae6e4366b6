// CpuAffinity: the share of cores each local silo gets, and a child process started on one core (Linux).
using System.Diagnostics;
using Duck.Core.Runtime;

namespace Duck.Core.Tests.Runtime;

public class CpuAffinityTests
{
    [Theory]
    [InlineData(0, 2, 2, new[] { 0 })]
    [InlineData(1, 2, 2, new[] { 1 })]
    [InlineData(1, 2, 8, new[] { 4, 5, 6, 7 })]
    [InlineData(2, 3, 8, new[] { 4, 5 })]
    [InlineData(0, 1, 4, new[] { 0, 1, 2, 3 })]
    [InlineData(0, 3, 2, new int[0])]
    public void Share_SilosOfAMachine_EqualContiguousShareOrNoneWhenTooMany(int index, int count, int cores, int[] expected)
    {
        Assert.Equal(expected, CpuAffinity.Share(index, count, cores));
    }

    [Fact]
    public void Share_IndexOutsideTheSilos_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => CpuAffinity.Share(2, 2, 4));
    }

    [Fact]
    public void StartOn_OneCore_ChildRunsThereAndCallerKeepsItsCores()
    {
        if (!CpuAffinity.Supported) return;
        var before = CpuAffinity.OfCurrentThread();
        int core = before![^1];
        var start = new ProcessStartInfo("sh") { RedirectStandardOutput = true, UseShellExecute = false };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add("grep Cpus_allowed_list /proc/self/status");

        using var child = CpuAffinity.StartOn(start, [core]);
        string output = child.StandardOutput.ReadToEnd();
        child.WaitForExit();

        Assert.Equal($"Cpus_allowed_list:\t{core}", output.Trim());
        Assert.Equal(before, CpuAffinity.OfCurrentThread());
    }
}
