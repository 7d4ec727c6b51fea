using System.Globalization;
using System.Text.Json;
using VmState.Integration.Harness;
using VmState.Live;
using VmState.Machine;
using VmState.Memory;
using VmState.Snapshots;

namespace VmState.Integration;

/// <summary>Three streams of the running fixture guest, taken a few ticks apart, imported into one history store.</summary>
public sealed class HistoryGuestCaptures : IAsyncLifetime
{
    public string Dir { get; } = Directory.CreateTempSubdirectory("vmstate-history-").FullName;

    public string Store => Path.Combine(Dir, "store");

    public List<string> Streams { get; } = [];

    /// <summary>The guest's last tick before each stream was taken.</summary>
    public List<int> LastTicks { get; } = [];

    public string ImportJson { get; private set; } = "";

    public async Task InitializeAsync()
    {
        await using (QemuGuest guest = await QemuGuest.StartAsync(new QemuGuestOptions()))
        {
            await guest.WaitForReadyAsync(TimeSpan.FromSeconds(180));
            await guest.WaitForSerialLineAsync(l => l.StartsWith("VMSMARKER tick=", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
            for (int k = 0; k < 3; k++)
            {
                await guest.PauseAsync();
                LastTicks.Add(EditResumeTests.LastTick(guest.SerialText));
                string path = Path.Combine(Dir, $"moment-{k}.mig");
                await guest.MigrateToFileAsync(path);
                Streams.Add(path);
                int seen = guest.SerialLineCount;
                await guest.ResumeAsync();
                await guest.WaitForSerialLineAsync(l => l.StartsWith("VMSTATE-TICK ", StringComparison.Ordinal), TimeSpan.FromSeconds(60), seen);
            }

            await guest.QuitAsync();
        }

        (int code, string stdout, string stderr) = VmStateCli.Run(["history", "import", "--store", Store, "--json", .. Streams]);
        Assert.True(code == 0, stderr);
        ImportJson = stdout;
    }

    public Task DisposeAsync()
    {
        if (Environment.GetEnvironmentVariable("VMSTATE_KEEP_WORK") != "1")
        {
            Directory.Delete(Dir, recursive: true);
        }

        return Task.CompletedTask;
    }
}

public sealed class HistoryTests(HistoryGuestCaptures captures) : IClassFixture<HistoryGuestCaptures>
{
    [Fact]
    public void EveryCaptureReadsBackPageForPageAsItsStream()
    {
        for (int k = 0; k < captures.Streams.Count; k++)
        {
            using MachineState stream = SnapshotLoader.Open(captures.Streams[k]);
            using Vm vm = Vm.Open($"{captures.Store}@{k + 1}");
            IPhysicalMemory a = stream.Memory;
            IPhysicalMemory b = vm.Machine.Memory;
            Assert.Equal(a.Ranges.Select(r => (r.Start, r.Length)), b.Ranges.Select(r => (r.Start, r.Length)));
            byte[] x = new byte[1 << 20];
            byte[] y = new byte[1 << 20];
            foreach (MemoryRange r in a.Ranges)
            {
                for (ulong at = r.Start; at < r.End; at += (ulong)x.Length)
                {
                    int n = (int)Math.Min((ulong)x.Length, r.End - at);
                    a.ReadExactly(at, x.AsSpan(0, n));
                    b.ReadExactly(at, y.AsSpan(0, n));
                    Assert.True(x.AsSpan(0, n).SequenceEqual(y.AsSpan(0, n)), $"capture {k + 1} differs from {captures.Streams[k]} in 0x{at:x}+0x{n:x}");
                }
            }

            Assert.Equal(stream.Cpus.Select(c => c.Rip), vm.Machine.Cpus.Select(c => c.Rip));
        }
    }

    [Fact]
    public void PsOnACaptureEqualsPsOnItsStream()
    {
        for (int k = 0; k < captures.Streams.Count; k++)
        {
            (int c1, string fromStream, string e1) = VmStateCli.Run(["ps", captures.Streams[k], "--no-cache"]);
            (int c2, string fromStore, string e2) = VmStateCli.Run(["ps", $"{captures.Store}@{k + 1}"]);
            Assert.True(c1 == 0, e1);
            Assert.True(c2 == 0, e2);
            Assert.Contains("vmsmarker", fromStream, StringComparison.Ordinal);
            Assert.Equal(fromStream, fromStore);
        }
    }

    [Theory]
    [InlineData("dmesg")]
    [InlineData("modules")]
    [InlineData("netdev")]
    [InlineData("maps", "1")]
    [InlineData("read", "--sym", "linux_banner", "128")]
    [InlineData("read", "--pa", "0x100000", "256")]
    public void LinuxCommandsOnTheLatestCaptureEqualTheSameOnItsStream(string command, params string[] more)
    {
        (int c1, string fromStream, string e1) = VmStateCli.Run([command, captures.Streams[^1], .. more]);
        (int c2, string fromStore, string e2) = VmStateCli.Run([command, $"{captures.Store}@-1", .. more]);
        Assert.True(c1 == 0, e1);
        Assert.True(c2 == 0, e2);
        Assert.True(fromStream.Length > 100, fromStream);
        Assert.Equal(fromStream, fromStore);
    }

    [Fact]
    public void TheStoreListsDeduplicatedCapturesAndVerifies()
    {
        using (JsonDocument imported = JsonDocument.Parse(captures.ImportJson))
        {
            JsonElement[] list = [.. imported.RootElement.GetProperty("imported").EnumerateArray()];
            Assert.Equal(3, list.Length);

            // The later captures of the same guest share most pages with the first.
            long first = list[0].GetProperty("newPages").GetInt64();
            Assert.True(first > 5000, $"the first capture stored {first} pages");
            Assert.True(list[2].GetProperty("newPages").GetInt64() < first / 2, captures.ImportJson);
            Assert.True(list[2].GetProperty("changedPages").GetInt64() > 0);
        }

        (int code, string stdout, string stderr) = VmStateCli.Run(["history", "list", captures.Store, "--json"]);
        Assert.True(code == 0, stderr);
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            Assert.Equal([1, 2, 3], doc.RootElement.GetProperty("captures").EnumerateArray().Select(c => c.GetProperty("number").GetInt32()));
        }

        (code, stdout, stderr) = VmStateCli.Run(["history", "verify", captures.Store]);
        Assert.True(code == 0, stderr);
        Assert.Contains("3 of 3 captures", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AnExportedCaptureResumesAndTheTickCounterCarriesOn()
    {
        string exported = Path.Combine(captures.Dir, "exported.mig");
        (int code, _, string stderr) = VmStateCli.Run(["history", "export", $"{captures.Store}@2", "-o", exported]);
        Assert.True(code == 0, stderr);

        await using QemuGuest guest = await QemuGuest.StartAsync(new QemuGuestOptions { Incoming = exported });
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (await guest.Qmp.QueryStatusAsync() is "inmigrate")
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), "the incoming migration did not finish");
            await Task.Delay(50);
        }

        await guest.ResumeAsync();
        string line = await guest.WaitForSerialLineAsync(l => l.StartsWith("VMSTATE-TICK ", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        int tick = int.Parse(line["VMSTATE-TICK ".Length..], CultureInfo.InvariantCulture);
        Assert.InRange(tick, captures.LastTicks[1] + 1, captures.LastTicks[1] + 2);

        // And it keeps ticking.
        await guest.WaitForSerialLineAsync(l => l.StartsWith("VMSTATE-TICK ", StringComparison.Ordinal) && l != line, TimeSpan.FromSeconds(60));
    }
}
