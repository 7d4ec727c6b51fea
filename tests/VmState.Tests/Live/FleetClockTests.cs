using System.Text.Json;
using VmState.Live;

namespace VmState.Tests.Live;

/// <summary>A fleet cut's clock offsets: each remote host's measured from its STOP timestamp and the stop's round trip.</summary>
public class FleetClockTests
{
    private static readonly DateTimeOffset T = new(2026, 11, 30, 10, 0, 0, TimeSpan.Zero);

    [Fact]
    public void ARemoteHostsOffsetComesFromItsBestRoundTripAndIsTakenOutOfTheSkew()
    {
        // Here: stopped at T. Remote (its clock 100 ms ahead): two VMs, round trips of 4 ms and 2 ms, both stopped 0.5 ms
        // after this host's T; the better round trip gives the offset (100 ms ± 1 ms).
        var here = new FleetMemberResult("a", "localhost", "qmp a", "a.mig", T, T.AddMilliseconds(50), 1, "pause", null) { StopSent = T.AddMilliseconds(-0.3), StopAnswered = T.AddMilliseconds(0.4) };
        var far1 = new FleetMemberResult("b", "far", "libvirt", "b.mig", T.AddMilliseconds(100.5), null, 1, "pause", null) { StopSent = T.AddMilliseconds(-1), StopAnswered = T.AddMilliseconds(3) };
        var far2 = new FleetMemberResult("c", "far", "libvirt", "c.mig", T.AddMilliseconds(100.5), null, 1, "pause", null) { StopSent = T.AddMilliseconds(-0.5), StopAnswered = T.AddMilliseconds(1.5) };
        var cut = new FleetCut([here, far1, far2], T, TimeSpan.FromSeconds(1), Live: false);

        Assert.Equal(100.5, cut.Skew!.Value.TotalMilliseconds, 3);
        Assert.Equal(100.0, cut.HostClockOffset("far")!.Value.TotalMilliseconds, 3);
        Assert.Equal(TimeSpan.Zero, cut.HostClockOffset("localhost"));
        Assert.Equal(0.5, cut.CorrectedSkew!.Value.TotalMilliseconds, 3);
        Assert.Equal(1.0, far2.ClockOffsetUncertainty!.Value.TotalMilliseconds, 3);

        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            cut.WriteManifest(w);
        }

        using JsonDocument doc = JsonDocument.Parse(ms.ToArray());
        JsonElement far = doc.RootElement.GetProperty("hosts").EnumerateArray().Single(h => h.GetProperty("host").GetString() == "far");
        Assert.Equal(100.0, far.GetProperty("clockOffsetMs").GetDouble());
        Assert.Equal(1.0, far.GetProperty("clockOffsetUncertaintyMs").GetDouble());
        Assert.Equal(0.5, doc.RootElement.GetProperty("skewCorrectedMs").GetDouble());
    }

    [Fact]
    public void AHostWithoutAStoppedVmHasNoOffset()
    {
        var paused = new FleetMemberResult("b", "far", "libvirt", "b.mig", null, null, 1, "already-paused", null);
        var cut = new FleetCut([paused], T, TimeSpan.FromSeconds(1), Live: false);
        Assert.Null(cut.HostClockOffset("far"));
        Assert.Null(cut.CorrectedSkew);
    }
}
