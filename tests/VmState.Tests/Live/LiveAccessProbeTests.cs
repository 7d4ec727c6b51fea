using VmState.Live;

namespace VmState.Tests.Live;

/// <summary>The verdict of <c>vmstate doctor</c>: guest RAM is readable when shared or process memory works.</summary>
public sealed class LiveAccessProbeTests
{
    [Theory]
    [InlineData("shared memory", true, true)]
    [InlineData("process memory", true, true)]
    [InlineData("process memory", false, false)]
    [InlineData("gdbstub", true, false)]
    [InlineData("QMP xp", true, false)]
    [InlineData("QMP", true, false)]
    public void OnlySharedOrProcessMemoryCounts(string path, bool works, bool canRead)
    {
        LiveAccessCheck[] checks = [new("QMP", true, "QEMU 7.2.0", null), new("shared memory", false, "none", "fix"), new(path, works, "detail", null)];
        Assert.Equal(canRead, LiveAccessProbe.CanReadMemory(checks));
    }
}
