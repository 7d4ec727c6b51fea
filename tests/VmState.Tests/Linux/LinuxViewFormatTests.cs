using VmState.Linux;

namespace VmState.Tests.Linux;

public sealed class LinuxViewFormatTests
{
    [Fact]
    public void AMapsLineWithANameIsPaddedToColumn73AsProcDoesIt()
    {
        var v = new LinuxVma(0x400000, 0x401000, 0x1 | 0x20 | 0x40, 0, 0, 2, 261, "/bin/vmsmarker", 0, 1);
        string line = v.Format();
        Assert.Equal("00400000-00401000 r--p 00000000 00:02 261                                /bin/vmsmarker", line);
        Assert.Equal(73, line.IndexOf('/', StringComparison.Ordinal));
    }

    [Fact]
    public void AMapsLineWithoutANameEndsAfterTheInodeAndASpace()
    {
        var v = new LinuxVma(0x4aa000, 0x4af000, 0x1 | 0x2, 0, 0, 0, 0, string.Empty, 0, 0);
        Assert.Equal("004aa000-004af000 rw-p 00000000 00:00 0 ", v.Format());
    }

    [Theory]
    [InlineData(0x1UL | 0x4UL, "r-xp")]
    [InlineData(0x1UL | 0x2UL | 0x80UL, "rw-s")]
    [InlineData(0x0UL, "---p")]
    [InlineData(0x8UL, "---p")] // VM_SHARED without VM_MAYSHARE does not show as 's' (show_map_vma tests VM_MAYSHARE)
    public void PermissionsFollowVmFlags(ulong flags, string expected) =>
        Assert.Equal(expected, new LinuxVma(0, 0x1000, flags, 0, 0, 0, 0, string.Empty, 0, 0).Permissions);

    [Fact]
    public void LongAddressesAreNotTruncated()
    {
        var v = new LinuxVma(0x7ffe11eca000, 0x7ffe11eeb000, 0x3, 0, 0, 0, 0, "[stack]", 0, 0);
        Assert.Equal("7ffe11eca000-7ffe11eeb000 rw-p 00000000 00:00 0                          [stack]", v.Format());
    }

    [Theory]
    [InlineData(0UL, "[    0.000000] x")]
    [InlineData(3_902_217_273UL, "[    3.902217] x")]
    [InlineData(123_456_789_000_000UL, "[123456.789000] x")]
    public void LogRecordsFormatTheirTimestampAsDmesgDoes(ulong ns, string expected) =>
        Assert.Equal(expected, new KernelLogRecord(0, ns, 6, 0, "T1", "x").Format());
}
