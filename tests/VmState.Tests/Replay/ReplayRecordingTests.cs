using System.Text;
using VmState.Fork;
using VmState.IO;
using VmState.Replay;

namespace VmState.Tests.Replay;

public sealed class ReplayRecordingTests
{
    private static ReplayRecording Sample() => new()
    {
        Directory = "/r",
        QemuVersion = "7.2.22",
        QemuPackage = "Debian 1:7.2+dfsg-7",
        Command = ["qemu-system-x86_64", "-m", "256"],
        RecordedCommand = ["qemu-system-x86_64", "-m", "256", "-icount", "shift=auto,rr=record,rrfile=/r/replay.bin"],
        Drives = [new ReplayDrive(0, "/img/a.qcow2", "qcow2", false, 12345, new DateTime(2026, 11, 30, 1, 2, 3, DateTimeKind.Utc))],
        Started = new DateTimeOffset(2026, 11, 30, 7, 0, 0, TimeSpan.Zero),
        Duration = TimeSpan.FromSeconds(43.25),
        InstructionCount = 8_834_662_707,
        End = ReplayEndReason.Interrupted,
        LogBytes = 15_503_372,
    };

    [Fact]
    public void TheManifestReadsBackAsItWasWritten()
    {
        ReplayRecording r = Sample();
        ReplayRecording back = ReplayRecording.Parse(r.ToJson(), "/r");
        Assert.Equal(r.ToJson(), back.ToJson());
        Assert.Equal(r.InstructionCount, back.InstructionCount);
        Assert.Equal(r.Drives, back.Drives);
    }

    [Theory]
    [InlineData("\"version\": 1", "\"version\": 2", "version 2")]
    [InlineData("\"instructionCount\": 8834662707", "\"instructionCount\": -1", "instructionCount")]
    [InlineData("\"end\": \"Interrupted\"", "\"end\": \"7\"", "end \"7\"")]
    [InlineData("\"format\": \"vmstate-replay-recording\"", "\"format\": \"other\"", "format")]
    [InlineData("\"command\": [", "\"command\": [1,", "command holds a Number")]
    public void ABrokenManifestIsAFormatErrorThatSaysWhat(string from, string to, string message)
    {
        string json = Encoding.UTF8.GetString(Sample().ToJson());
        Assert.Contains(from, json, StringComparison.Ordinal);
        VmStateFormatException e = Assert.Throws<VmStateFormatException>(() => ReplayRecording.Parse(Encoding.UTF8.GetBytes(json.Replace(from, to, StringComparison.Ordinal)), "/r"));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void NotJsonIsAFormatError() =>
        Assert.Throws<VmStateFormatException>(() => ReplayRecording.Parse("{\"format\":"u8, "/r"));

    [Fact]
    public void ACloneDescriptionReadsBack()
    {
        var c = new ForkClone
        {
            Name = "t-1",
            Directory = "/c/t-1",
            ProcessId = 42,
            QmpSocket = "/c/t-1/qmp.sock",
            Snapshot = "/s.mig",
            Macs = [new ForkMac("0000:00:03.0/virtio-net", "52:54:00:12:34:56", "52:54:00:aa:bb:cc")],
            Started = new DateTimeOffset(2026, 11, 30, 7, 0, 0, TimeSpan.Zero),
            Command = ["qemu-system-x86_64", "-m", "256"],
        };
        ForkClone back = ForkClone.Parse(c.ToJson(), "/c/t-1");
        Assert.Equal(c.ToJson(), back.ToJson());
        Assert.Throws<VmStateFormatException>(() => ForkClone.Parse("{\"name\":\"x\",\"pid\":-1}"u8, "/c"));
    }
}
