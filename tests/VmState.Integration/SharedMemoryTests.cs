using System.Buffers.Binary;
using System.Text.Json;
using VmState.Integration.Harness;
using VmState.Live;

namespace VmState.Integration;

/// <summary>The shared-memory live path (memory-backend-file share=on) and vmstate doctor.</summary>
public sealed class SharedMemoryTests(SharedMemoryGuest shared) : IClassFixture<SharedMemoryGuest>
{
    private readonly QemuGuest _guest = shared.Guest;

    [Fact]
    public async Task MainRamIsMappedAndReadWithoutCopiesAndWritesReachTheGuest()
    {
        await using LiveMachine live = await LiveMachine.AttachAsync(_guest.ToolQmpPath);
        Assert.True(live.Memory.SharedBytes >= 500UL << 20, live.MemoryPath);
        GroundTruth.MarkerInfo marker = _guest.Truth.Marker!;
        Assert.True(live.Memory.TryGetSpan(marker.PhysicalAddress, marker.Value.Length, out ReadOnlySpan<byte> span));
        Assert.Equal(marker.Value, System.Text.Encoding.ASCII.GetString(span));

        byte[] value = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(value, 0x0badc0de0badc0de);
        Assert.Equal(8, live.Memory.Write(marker.GValuePhysicalAddress, value));
        await _guest.WaitForSerialLineAsync(l => l.EndsWith("value=0x0badc0de0badc0de", StringComparison.Ordinal), TimeSpan.FromSeconds(30), _guest.SerialLineCount);
    }

    [Fact]
    public void DoctorReportsEveryPath()
    {
        (int code, string stdout, string stderr) = VmStateCli.Run(["doctor", "--qmp", _guest.ToolQmpPath, "--json"]);
        Assert.True(code == 0, stderr);
        using JsonDocument doc = JsonDocument.Parse(stdout);
        var works = doc.RootElement.EnumerateArray().ToDictionary(c => c.GetProperty("path").GetString()!, c => c.GetProperty("works").GetBoolean());
        Assert.True(works["shared memory"]);
        Assert.True(works["process memory"]);
        Assert.True(works["QMP xp"]);
        Assert.False(works["gdbstub"]);
    }
}
