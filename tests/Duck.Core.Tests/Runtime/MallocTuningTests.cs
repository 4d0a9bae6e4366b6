// MallocTuning's decisions: which process re-executes itself, and the GLIBC_TUNABLES it passes on.
using Duck.Core.Runtime;

namespace Duck.Core.Tests.Runtime;

public class MallocTuningTests
{
    [Theory]
    [InlineData("4242", 4242, true)]
    [InlineData("4242", 4300, false)] // a child inherited its parent's guard
    [InlineData("1", 4300, false)]    // the guard of the versions before the fix
    [InlineData(null, 4300, false)]
    public void IsTuned_OnlyWhenTheGuardNamesThisProcess(string? guard, int pid, bool expected)
    {
        Assert.Equal(expected, MallocTuning.IsTuned(guard, pid));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("glibc.malloc.hugetlb=1")] // what glibc 2.36 leaves of ours in a child's environment
    [InlineData(MallocTuning.Tunable)]
    public void TunablesAfter_NothingOrACutShortCopyOfOurs_OursAlone(string? inherited)
    {
        Assert.Equal(MallocTuning.Tunable, MallocTuning.TunablesAfter(inherited));
    }

    [Fact]
    public void TunablesAfter_TheUsersOwn_KeptWithOursAfter()
    {
        Assert.Equal("glibc.cpu.hwcaps=-AVX512F:" + MallocTuning.Tunable, MallocTuning.TunablesAfter("glibc.cpu.hwcaps=-AVX512F"));
    }
}
