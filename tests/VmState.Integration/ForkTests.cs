using System.Text.Json;
using VmState.Integration.Harness;

namespace VmState.Integration;

/// <summary><c>vmstate fork</c>: three clones of the fixture guest from one snapshot, running at once.</summary>
public sealed class ForkTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-fork-").FullName;

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync()
    {
        VmStateCli.Run(["fork", "--stop", "--dir", Path.Combine(_dir, "clones")]);
        if (Environment.GetEnvironmentVariable("VMSTATE_KEEP_WORK") != "1")
        {
            Directory.Delete(_dir, recursive: true);
        }

        return Task.CompletedTask;
    }

    [Fact]
    public async Task ThreeClonesRunAtOnceWithTheirOwnMacsAndTheTickCounterCarriesOn()
    {
        var options = new QemuGuestOptions { MemoryMiB = 256, Cpus = 1 };
        string snapshot = Path.Combine(_dir, "snap.mig");
        List<string> command;
        int lastTick;
        await using (QemuGuest guest = await QemuGuest.StartAsync(options))
        {
            await guest.WaitForReadyAsync(TimeSpan.FromSeconds(180));
            await guest.WaitForSerialLineAsync(l => l.StartsWith("VMSTATE-TICK ", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
            await guest.PauseAsync();
            lastTick = EditResumeTests.LastTick(guest.SerialText);
            await guest.MigrateToFileAsync(snapshot);
            command = ["qemu-system-x86_64", .. QemuGuest.CommandLine(options, guest.WorkDir)];
            await guest.QuitAsync();
        }

        string clones = Path.Combine(_dir, "clones");
        (int code, string stdout, string stderr) = VmStateCli.Run(["fork", snapshot, "--count", "3", "--prefix", "t", "--dir", clones, "--json", "--", .. command]);
        Assert.True(code == 0, stderr);
        var macsByClone = new Dictionary<string, (string Virtio, string E1000)>();
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            foreach (JsonElement c in doc.RootElement.EnumerateArray())
            {
                JsonElement[] macs = [.. c.GetProperty("macs").EnumerateArray()];
                string Mac(string kind) => macs.Single(m => m.GetProperty("device").GetString()!.EndsWith(kind, StringComparison.Ordinal)).GetProperty("mac").GetString()!;
                macsByClone[c.GetProperty("name").GetString()!] = (Mac("/virtio-net"), Mac("/e1000"));
            }
        }

        Assert.Equal(["t-1", "t-2", "t-3"], macsByClone.Keys.Order());
        string[] all = [.. macsByClone.Values.SelectMany(m => new[] { m.Virtio, m.E1000 }), options.VirtioMac, options.E1000Mac];
        Assert.Equal(all.Length, all.Distinct(StringComparer.OrdinalIgnoreCase).Count());

        // Each clone's own console: the tick after the snapshot's, and its own MACs as the guest's /sys reports them.
        foreach ((string name, (string virtio, string e1000)) in macsByClone)
        {
            string serial = Path.Combine(clones, name, "serial0.log");
            // The snapshot may have caught the loop between a tick and its MACS line, so the clone's first MACS line can
            // precede its first tick (and was read partly before the MACs changed): the MACS line after the first tick counts.
            static bool IsTick(string l) => l.StartsWith("VMSTATE-TICK ", StringComparison.Ordinal);
            static bool IsMacs(string l) => l.StartsWith("VMSTATE-MACS ", StringComparison.Ordinal);
            string[] lines = await WaitForLinesAsync(serial, ls => ls.SkipWhile(l => !IsTick(l)).Any(IsMacs));
            string firstTick = lines.First(IsTick);
            Assert.InRange(int.Parse(firstTick["VMSTATE-TICK ".Length..], System.Globalization.CultureInfo.InvariantCulture), lastTick + 1, lastTick + 2);
            Assert.Equal($"VMSTATE-MACS eth0={virtio},eth1={e1000}", lines.SkipWhile(l => !IsTick(l)).First(IsMacs));
        }

        (code, stdout, stderr) = VmStateCli.Run(["fork", "--list", "--dir", clones, "--json"]);
        Assert.True(code == 0, stderr);
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            Assert.Equal(3, doc.RootElement.EnumerateArray().Count(c => c.GetProperty("running").GetBoolean()));
        }

        (code, _, stderr) = VmStateCli.Run(["fork", "--stop", "--dir", clones]);
        Assert.True(code == 0, stderr);
        (code, stdout, _) = VmStateCli.Run(["fork", "--list", "--dir", clones, "--json"]);
        Assert.Equal(0, JsonDocument.Parse(stdout).RootElement.GetArrayLength());
    }

    private static async Task<string[]> WaitForLinesAsync(string path, Func<IEnumerable<string>, bool> until)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            string[] lines = File.Exists(path) ? File.ReadAllText(path).Split('\n').Select(l => l.TrimEnd('\r')).ToArray() : [];
            string[] complete = lines[..Math.Max(0, lines.Length - 1)];
            if (until(complete))
            {
                return complete;
            }

            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"{path} has no such line after 60 s: {string.Join('\n', lines)}");
            await Task.Delay(100);
        }
    }
}
