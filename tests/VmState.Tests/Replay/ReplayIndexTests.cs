using VmState.History;
using VmState.IO;
using VmState.Replay;

namespace VmState.Tests.Replay;

public sealed class ReplayIndexTests
{
    private static ReplayIndex Sample() => new(1000, 5000, TimeSpan.FromSeconds(3.5), null,
    [
        new ReplayIndexPoint(1000, new HistoryCaptureIndex(0, null, null, "Linux kernel: not found", 0, [], [], [], 0, 0, 0, [])),
        new ReplayIndexPoint(2000, new HistoryCaptureIndex(1, null, null, null, 0xffffffff81000000,
            [new HistoryProcess(1, 0, 0, "init", "init", 5, false), new HistoryProcess(104, 1, 0, "vmsmarker", "vmsmarker", 9_000_000, false)],
            [new HistoryModule("virtio_net", 0xffffffffc0000000, 4096)], [], 3, 7, 0, [new HistoryLogLine(3, 10, 6, "hello")])),
        new ReplayIndexPoint(5000, new HistoryCaptureIndex(2, null, null, null, 0xffffffff81000000, [new HistoryProcess(1, 0, 0, "init", "init", 5, false)], [], [], 3, 7, 7, [])),
    ]);

    [Fact]
    public void AnIndexReadsBackAsWritten()
    {
        ReplayIndex back = ReplayIndex.Parse(Sample().Serialize(), "index");
        Assert.Equal((1000UL, 5000UL, TimeSpan.FromSeconds(3.5), (TimeSpan?)null), (back.Every, back.InstructionCount, back.PassTime!.Value, back.PlainReplayTime));
        Assert.Equal([1000UL, 2000UL, 5000UL], back.Points.Select(p => p.Icount));
        Assert.Equal("Linux kernel: not found", back.Points[0].View.KernelError);
        Assert.Equal(["init", "vmsmarker"], back.Points[1].View.Processes.Select(p => p.Comm));
        Assert.Equal(9_000_000UL, back.Points[1].View.Processes[1].StartTimeNs);
        Assert.Equal("hello", back.Points[1].View.NewLogLines.Single().Text);
        Assert.Equal(Sample().Serialize(), back.Serialize());
    }

    [Fact]
    public void ADamagedFileIsRefusedWithTheFieldNamed()
    {
        byte[] bytes = Sample().Serialize();
        byte[] flipped = (byte[])bytes.Clone();
        flipped[40] ^= 1;
        Assert.Contains("checksum", Assert.Throws<VmStateFormatException>(() => ReplayIndex.Parse(flipped, "index")).Message, StringComparison.Ordinal);

        // Point count far beyond what the bytes can hold: refused before anything is allocated.
        byte[] huge = (byte[])bytes.Clone();
        BitConverter.GetBytes(uint.MaxValue).CopyTo(huge, 48);
        Assert.Contains("point count", Assert.Throws<VmStateFormatException>(() => ReplayIndex.Parse(huge, "index", checkHash: false)).Message, StringComparison.Ordinal);

        Assert.Throws<VmStateFormatException>(() => ReplayIndex.Parse(bytes.AsSpan(0, bytes.Length - 20), "index", checkHash: false));
        Assert.Throws<VmStateFormatException>(() => ReplayIndex.Parse("VMSRRIX2"u8.ToArray().Concat(bytes[8..]).ToArray(), "index", checkHash: false));
    }

    [Fact]
    public void PointsOutOfOrderOrPastTheEndAreRefused()
    {
        HistoryCaptureIndex none = new(0, null, null, "x", 0, [], [], [], 0, 0, 0, []);
        Assert.Throws<ArgumentException>(() => new ReplayIndex(10, 100, null, null, [new ReplayIndexPoint(20, none), new ReplayIndexPoint(20, none)]));
        Assert.Throws<ArgumentException>(() => new ReplayIndex(10, 100, null, null, [new ReplayIndexPoint(200, none)]));
    }
}
