using System.Globalization;
using System.Text;
using System.Text.Json;
using VmState.Integration.Harness;
using VmState.Live;

namespace VmState.Integration;

/// <summary>
/// vmstate search on a running fixture guest and on a migration stream of it: the marker process's string is found at
/// the physical address the guest reports and, with --pid, at the virtual address the marker printed.
/// </summary>
public sealed class SearchTests(FrontDoorGuest fixture) : IClassFixture<FrontDoorGuest>
{
    private QemuGuest Guest => fixture.Guest;

    [Fact]
    public async Task ALiveSearchFindsTheMarkerAtItsPhysicalAddressAndTheGuestRuns()
    {
        GroundTruth.MarkerInfo marker = Guest.Truth.Marker!;
        (int code, string stdout, string stderr) = VmStateCli.Run(["search", marker.Value, "--qmp", Guest.ToolQmpPath]);
        Assert.True(code == 0, stderr);
        // The marker string is followed by its NUL: shown as '.', never as a raw control byte.
        string line = Assert.Single(stdout.Split('\n'), l => l.StartsWith($"0x{marker.PhysicalAddress:x16}  ", StringComparison.Ordinal));
        Assert.StartsWith($"0x{marker.PhysicalAddress:x16}  {marker.Value}.", line, StringComparison.Ordinal);
        Assert.Matches(@"^\d+ hits? in \d+ MiB of guest RAM \(", stderr);
        Assert.Equal("running", await Guest.Qmp.QueryStatusAsync());
    }

    [Fact]
    public void WithPidEveryHitHasTheVirtualAddressInThatProcessAndThePhysicalOneBehindIt()
    {
        GroundTruth.MarkerInfo marker = Guest.Truth.Marker!;
        (int code, string stdout, string stderr) = VmStateCli.Run(["search", marker.Value, "--qmp", Guest.ToolQmpPath, "--pause", "--pid", marker.Pid.ToString(CultureInfo.InvariantCulture), "--json"]);
        Assert.True(code == 0, stderr);
        using JsonDocument doc = JsonDocument.Parse(stdout);
        Assert.Equal(Convert.ToHexStringLower(Encoding.ASCII.GetBytes(marker.Value)), doc.RootElement.GetProperty("pattern").GetString());
        Assert.Equal(marker.Pid, doc.RootElement.GetProperty("pid").GetInt32());
        var hits = doc.RootElement.GetProperty("hits").EnumerateArray().Select(h => (h.GetProperty("virtual").GetString(), h.GetProperty("physical").GetString())).ToList();
        Assert.Contains(($"0x{marker.VirtualAddress:x}", $"0x{marker.PhysicalAddress:x}"), hits);
        // Only the process's user memory: every virtual address is in the user half.
        Assert.All(hits, h => Assert.True(ulong.Parse(h.Item1![2..], NumberStyles.HexNumber, CultureInfo.InvariantCulture) < 0x0000_8000_0000_0000UL, h.Item1));
    }

    [Fact]
    public async Task ASnapshotIsSearchedByHexAndAMissingPatternExitsOne()
    {
        GroundTruth.MarkerInfo marker = Guest.Truth.Marker!;
        string file = Path.Combine(Guest.WorkDir, "search.mig");
        await using (LiveMachine live = await LiveMachine.AttachAsync(Guest.ToolQmpPath))
        {
            await using FileStream output = File.Create(file);
            await live.CaptureAsync((stream, ct) => stream.CopyToAsync(output, ct));
        }

        string hex = string.Join(' ', Encoding.ASCII.GetBytes(marker.Value).Select(b => b.ToString("x2", CultureInfo.InvariantCulture)));
        (int code, string stdout, string stderr) = VmStateCli.Run(["search", hex, file, "--hex", "--json"]);
        Assert.True(code == 0, stderr);
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            Assert.Contains($"0x{marker.PhysicalAddress:x}", doc.RootElement.GetProperty("hits").EnumerateArray().Select(h => h.GetProperty("physical").GetString()));
            Assert.False(doc.RootElement.GetProperty("truncated").GetBoolean());
        }

        // --max 1: one hit, and the output says it stopped there.
        (code, stdout, stderr) = VmStateCli.Run(["search", marker.Value, file, "--max", "1"]);
        Assert.True(code == 0, stderr);
        Assert.Single(stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("stopped at --max 1", stderr, StringComparison.Ordinal);

        // A pattern made here and never given to the guest: no hit, exit code 1 (as grep).
        (code, stdout, stderr) = VmStateCli.Run(["search", $"not-in-the-guest-{Guid.NewGuid():N}", file]);
        Assert.Equal(1, code);
        Assert.Equal(string.Empty, stdout);
        Assert.StartsWith("0 hits in", stderr, StringComparison.Ordinal);

        (code, _, stderr) = VmStateCli.Run(["search", "abc", file, "--hex"]);
        Assert.Equal(2, code);
        Assert.Contains("not hex bytes", stderr, StringComparison.Ordinal);
    }
}
