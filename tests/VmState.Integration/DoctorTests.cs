using System.Text.Json;
using VmState.Integration.Harness;
using VmState.Live;

namespace VmState.Integration;

/// <summary>vmstate doctor's one-second probe: each path that works, measured on a running guest with shared RAM.</summary>
public sealed class DoctorTests(SharedMemoryGuest shared) : IClassFixture<SharedMemoryGuest>
{
    private QemuGuest Guest => shared.Guest;

    [Fact]
    public async Task DoctorMeasuresEveryPathThatWorksAndTheirOrderIsTheExpectedOne()
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        (int code, string stdout, string stderr) = VmStateCli.Run(["doctor", "--qmp", Guest.ToolQmpPath, "--json"]);
        Assert.True(code == 0, stderr);
        using JsonDocument doc = JsonDocument.Parse(stdout);
        var measured = doc.RootElement.EnumerateArray()
            .Where(c => c.TryGetProperty("measured", out _))
            .ToDictionary(c => c.GetProperty("path").GetString()!, c => c.GetProperty("measured"));
        Assert.Equal(["QMP", "shared memory", "process memory"], measured.Keys.Order(StringComparer.Ordinal).Reverse().OrderBy(k => k == "QMP" ? 0 : k == "shared memory" ? 1 : 2));
        foreach (JsonElement m in measured.Values)
        {
            Assert.True(m.GetProperty("reads").GetInt64() >= 64);
            Assert.True(m.GetProperty("bulkBytes").GetInt64() > 0);
            Assert.True(m.GetProperty("bytesPerSecond").GetDouble() > 0);
        }

        // What a user would notice: shared memory is faster than process memory, which is far faster than QMP.
        double Latency(string path) => measured[path].GetProperty("readLatencyNs").GetDouble();
        Assert.True(Latency("shared memory") < Latency("process memory"), stdout);
        Assert.True(Latency("process memory") * 10 < Latency("QMP"), stdout);
        Assert.InRange(clock.Elapsed.TotalSeconds, 1, 60);

        (code, stdout, stderr) = VmStateCli.Run(["doctor", "--qmp", Guest.ToolQmpPath]);
        Assert.True(code == 0, stderr);
        Assert.Contains("measured (one-second probe):", stdout, StringComparison.Ordinal);
        Assert.Matches(@"shared memory\s+random 8-byte read\s+[\d.]+ (ns|µs)\s+bulk \(4 MiB reads\)\s+[\d.]+ (GB|MB)/s", stdout);
        Assert.Matches(@"QMP pmemsave\s+random 8-byte read\s+[\d.]+ (µs|ms)", stdout);
        Assert.Equal("running", await Guest.Qmp.QueryStatusAsync());
    }
}
