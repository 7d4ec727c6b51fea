using System.Text.Json;
using VmState.Integration.Harness;

namespace VmState.Integration;

/// <summary>
/// A VM managed by a real libvirtd (the test's own, <see cref="LibvirtDaemon"/>): listed, read live through
/// libvirt's monitor passthrough, snapshotted, and its <c>virsh save</c> file read back, each compared with what the
/// guest printed about itself; the domain keeps running.
/// </summary>
public sealed class LibvirtTests(LibvirtDaemon lv) : IClassFixture<LibvirtDaemon>
{
    [Fact]
    public void ListShowsTheDomainWithItsQemuProcess()
    {
        (int code, string stdout, string stderr) = VmStateCli.Run(["list", "--libvirt", lv.Uri, "--json"]);
        Assert.True(code == 0, stderr);
        using JsonDocument doc = JsonDocument.Parse(stdout);
        JsonElement d = doc.RootElement.EnumerateArray().Single(e => e.GetProperty("name").GetString() == lv.Domain);
        Assert.Equal("running", d.GetProperty("state").GetString());
        int pid = d.GetProperty("pid").GetInt32();
        string cmdline = File.ReadAllText($"/proc/{pid}/cmdline");
        Assert.Contains($"guest={lv.Domain},", cmdline, StringComparison.Ordinal);
        Assert.Contains(d.GetProperty("uuid").GetString()!, cmdline, StringComparison.Ordinal);
    }

    [Fact]
    public void PsThroughLibvirtEqualsTheGuestsOwnTruthAndLeavesItRunning()
    {
        (int code, string stdout, string stderr) = VmStateCli.Run(["ps", "--libvirt", lv.Uri, "--domain", lv.Domain, "--pause", "--json"]);
        Assert.True(code == 0, stderr);
        using JsonDocument doc = JsonDocument.Parse(stdout);
        var seen = Processes(doc).ToDictionary(p => p.GetProperty("pid").GetInt32(), p => p);
        GroundTruth truth = lv.Truth;
        Assert.NotEmpty(truth.Processes);
        Assert.All(truth.Processes, p =>
        {
            Assert.True(seen.TryGetValue(p.Pid, out JsonElement row), $"pid {p.Pid} ({p.Comm}) missing");
            Assert.Equal(p.Ppid, row.GetProperty("ppid").GetInt32());
            Assert.Equal(p.Uid, row.GetProperty("uid").GetInt32());
        });
        Assert.Equal("running", lv.State());
    }

    [Fact]
    public void InfoOfTheLiveDomainKeepsItsXmlAndReadsTheMarker()
    {
        (int code, string stdout, string stderr) = VmStateCli.Run(["info", "--libvirt", lv.Uri, "--domain", lv.Domain, "--json"]);
        Assert.True(code == 0, stderr);
        using JsonDocument doc = JsonDocument.Parse(stdout);
        Assert.Equal(lv.Domain, doc.RootElement.GetProperty("libvirtDomain").GetProperty("name").GetString());
        Assert.Contains("<domain", doc.RootElement.GetProperty("libvirtDomain").GetProperty("xml").GetString(), StringComparison.Ordinal);
        GroundTruth.MarkerInfo marker = lv.Truth.Marker!;
        (code, stdout, stderr) = VmStateCli.Run(["read", "--libvirt", lv.Uri, "--domain", lv.Domain, "--pa", $"0x{marker.PhysicalAddress:x}", "15", "-f", "raw"]);
        Assert.True(code == 0, stderr);
        Assert.StartsWith("VMSTATE-MARKER-", stdout, StringComparison.Ordinal);
        Assert.Equal("running", lv.State());
    }

    [Fact]
    public async Task ALiveSnapshotThroughLibvirtOpensAndTheGuestRunsOn()
    {
        string file = Path.Combine(lv.Dir, $"live-{Guid.NewGuid():N}.mig");
        (int code, string stdout, string stderr) = VmStateCli.Run(["snapshot", "--libvirt", lv.Uri, "--domain", lv.Domain, "-o", file, "--live", "--json"]);
        Assert.True(code == 0, stderr);
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            Assert.Equal("running", doc.RootElement.GetProperty("statusAfter").GetString());
        }

        (code, stdout, stderr) = VmStateCli.Run(["ps", file, "--json"]);
        Assert.True(code == 0, stderr);
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            var pids = Processes(doc).Select(p => p.GetProperty("pid").GetInt32()).ToHashSet();
            Assert.All(lv.Truth.Processes, p => Assert.Contains(p.Pid, pids));
        }

        // The guest runs on: its marker keeps ticking after the snapshot.
        await lv.WaitForTickAfterAsync(lv.LastTick(), TimeSpan.FromSeconds(60));
    }

    [Fact]
    public async Task AFleetCutOverARemoteTransportSavesOnTheVmsOwnHostAndTheGuestRunsOn()
    {
        // Over qemu+tcp no descriptor reaches the VM's QEMU, as with a VM on another host: its libvirt saves it on its
        // own host, into --host-dir (here the same machine, so the file can be opened).
        string output = Path.Combine(lv.Dir, $"cut-{Guid.NewGuid():N}");
        string hostDir = Path.Combine(lv.Dir, $"host-{Guid.NewGuid():N}");
        Directory.CreateDirectory(hostDir);
        int tick = lv.LastTick();
        (int code, string stdout, string stderr) = VmStateCli.Run(["fleet", "snapshot", "--libvirt", lv.TcpUri, "--domain", lv.Domain, "-o", output, "--host-dir", hostDir, "--json"]);
        Assert.True(code == 0, stderr + stdout);
        string file;
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            JsonElement member = doc.RootElement.GetProperty("vms")[0];
            Assert.True(member.GetProperty("savedOnHost").GetBoolean());
            Assert.Equal("pause", member.GetProperty("mode").GetString());
            string onHost = member.GetProperty("file").GetString()!;
            file = Path.Combine(hostDir, lv.Domain + ".mig");
            Assert.Equal($"{member.GetProperty("host").GetString()}:{file}", onHost);
            Assert.True(member.GetProperty("pauseMs").GetDouble() > 0);
        }

        // The host's libvirt wrote its save-image format; it opens with the domain's processes.
        (code, stdout, stderr) = VmStateCli.Run(["ps", file, "--json"]);
        Assert.True(code == 0, stderr);
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            var pids = Processes(doc).Select(p => p.GetProperty("pid").GetInt32()).ToHashSet();
            Assert.All(lv.Truth.Processes, p => Assert.Contains(p.Pid, pids));
        }

        Assert.Equal("running", lv.State());
        await lv.WaitForTickAfterAsync(tick, TimeSpan.FromSeconds(60));
    }

    [Fact]
    public async Task ACompressedVirshSaveFileIsReadWithItsDomainXmlAndRestores()
    {
        string file = Path.Combine(lv.Dir, $"virsh-{Guid.NewGuid():N}.save");
        HostCommand.Result saved = lv.Virsh(TimeSpan.FromSeconds(180), "save", lv.Domain, file);
        try
        {
            Assert.True(saved.ExitCode == 0, saved.ToString());
            (int code, string stdout, string stderr) = VmStateCli.Run(["info", file, "--json"]);
            Assert.True(code == 0, stderr);
            using (JsonDocument doc = JsonDocument.Parse(stdout))
            {
                // The daemon's qemu.conf has save_image_format = "gzip": libvirt compressed the stream.
                Assert.Equal("virsh save file (gzip-compressed)", doc.RootElement.GetProperty("format").GetString());
                Assert.Equal(lv.Domain, doc.RootElement.GetProperty("libvirtDomain").GetProperty("name").GetString());
            }

            (code, stdout, stderr) = VmStateCli.Run(["ps", file, "--json"]);
            Assert.True(code == 0, stderr);
            using (JsonDocument doc = JsonDocument.Parse(stdout))
            {
                var pids = Processes(doc).Select(p => p.GetProperty("pid").GetInt32()).ToHashSet();
                Assert.All(lv.Truth.Processes, p => Assert.Contains(p.Pid, pids));
            }

            string dir = Path.Combine(lv.Dir, $"extract-{Guid.NewGuid():N}");
            (code, _, stderr) = VmStateCli.Run(["extract", file, "-o", dir]);
            Assert.True(code == 0, stderr);
            using (JsonDocument hw = JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(dir, "hardware.json"))))
            {
                Assert.Contains($"<name>{lv.Domain}</name>", hw.RootElement.GetProperty("source").GetProperty("libvirtDomainXml").GetString(), StringComparison.Ordinal);
            }
        }
        finally
        {
            // The save stopped the (transient) domain; restoring it leaves the fixture as the other tests expect.
            int tick = lv.LastTick();
            HostCommand.Result restored = lv.Virsh(TimeSpan.FromSeconds(180), "restore", file);
            Assert.True(restored.ExitCode == 0, restored.ToString());
            await lv.WaitForTickAfterAsync(tick, TimeSpan.FromSeconds(60));
        }
    }

    [Fact]
    public async Task TraceThroughLibvirtSeesTheMarkersSystemCallsAndLeavesTheDomainRunning()
    {
        // The marker's nanosleep loop: every hit of the syscall breakpoint filtered to its pid is the marker.
        GroundTruth.MarkerInfo marker = lv.Truth.Marker!;
        (int code, string stdout, string stderr) = VmStateCli.Run(["trace", "--libvirt", lv.Uri, "--domain", lv.Domain, "break", "__x64_sys_clock_nanosleep", "--pid", marker.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture), "--max-events", "2", "--json"]);
        Assert.True(code == 0, stderr);
        string[] lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Length);
        foreach (string line in lines[..2])
        {
            using JsonDocument hit = JsonDocument.Parse(line);
            Assert.Equal(marker.Pid, hit.RootElement.GetProperty("pid").GetInt32());
        }

        Assert.Equal("running", lv.State());
        await lv.WaitForTickAfterAsync(lv.LastTick(), TimeSpan.FromSeconds(60));
    }

    [Fact]
    public async Task TheGuestsSnapshotRequestIsServedThroughLibvirtOnAHotPluggedPort()
    {
        // The domain's /init asks every 4 ticks (vmstate.trigger=4 in its XML); it has no port until the agent adds
        // one through libvirt's monitor passthrough (the socket pair's end goes to QEMU with the command, getfd).
        string dir = Path.Combine(lv.Dir, $"trigger-{Guid.NewGuid():N}");
        (int code, string stdout, string stderr) = VmStateCli.Run(["agent", "--libvirt", lv.Uri, "--domain", lv.Domain, "-o", dir, "--count", "1", "--json"]);
        Assert.True(code == 0, stderr);
        Assert.Contains("hot-plugged port", stderr, StringComparison.Ordinal);
        string label;
        int requesterPid;
        using (JsonDocument doc = JsonDocument.Parse(stdout.Trim()))
        {
            Assert.Equal("trigger-0001", doc.RootElement.GetProperty("id").GetString());
            label = doc.RootElement.GetProperty("label").GetString()!;
            string nonce = doc.RootElement.GetProperty("nonce").GetString()!;
            requesterPid = int.Parse(nonce[..nonce.IndexOf('-', StringComparison.Ordinal)], System.Globalization.CultureInfo.InvariantCulture);
        }

        string tick = label["tick-".Length..];
        await lv.WaitForSerialLineAsync(l => l == $"VMSTATE-TRIGGER-OK {tick} trigger-0001", TimeSpan.FromSeconds(60));
        (code, stdout, stderr) = VmStateCli.Run(["ps", Path.Combine(dir, "trigger-0001.mig"), "--json"]);
        Assert.True(code == 0, stderr);
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            JsonElement requester = Processes(doc).Single(p => p.GetProperty("pid").GetInt32() == requesterPid);
            Assert.Equal("vmstate-trigger", requester.GetProperty("comm").GetString());
            Assert.Equal("S", requester.GetProperty("state").GetString());
        }

        Assert.Equal("running", lv.State());
        await lv.WaitForTickAfterAsync(lv.LastTick(), TimeSpan.FromSeconds(60));
    }

    [Fact]
    public void AnUnknownDomainOrAMissingDomainOptionIsAClearError()
    {
        (int code, _, string stderr) = VmStateCli.Run(["ps", "--libvirt", lv.Uri, "--domain", "no-such-domain"]);
        Assert.Equal(2, code);
        Assert.Contains("no domain named no-such-domain", stderr, StringComparison.Ordinal);
        Assert.Contains(lv.Domain, stderr, StringComparison.Ordinal);
        (code, _, stderr) = VmStateCli.Run(["ps", "--libvirt", lv.Uri]);
        Assert.Equal(2, code);
        Assert.Contains("--libvirt needs --domain", stderr, StringComparison.Ordinal);
        (code, _, stderr) = VmStateCli.Run(["list", "--libvirt", "qemu:///system?socket=/nonexistent/libvirt-sock"]);
        Assert.Equal(1, code);
        Assert.Contains("cannot connect to libvirt", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ServeWithoutDomainServesEveryRunningDomainWithTheProcessTablePsPrints()
    {
        using System.Diagnostics.Process server = VmStateCli.StartBackground(["serve", "--libvirt", lv.Uri, "--port", "0", "--allow-trace"]);
        HttpResponseMessage? trace = null;
        try
        {
            string? first = await server.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(120));
            System.Text.RegularExpressions.Match m = System.Text.RegularExpressions.Regex.Match(first ?? string.Empty, @"listening on (http://\S+)$");
            Assert.True(m.Success, $"serve printed: {first}\n{(server.HasExited ? await server.StandardError.ReadToEndAsync() : string.Empty)}");
            _ = server.StandardError.ReadToEndAsync();
            using var client = new HttpClient { BaseAddress = new Uri(m.Groups[1].Value), Timeout = TimeSpan.FromSeconds(60) };
            using JsonDocument sources = JsonDocument.Parse(await client.GetStringAsync("/api/sources"));
            JsonElement source = Assert.Single(sources.RootElement.EnumerateArray());
            Assert.Equal($"libvirt domain {lv.Domain} at {lv.Uri}", source.GetProperty("name").GetString());
            Assert.True(source.GetProperty("live").GetBoolean(), source.ToString());

            // The guest forks nothing after READY, so the two reads see the same processes (a kworker's name carries the
            // workqueue it runs at the moment, which is not the same twice).
            using JsonDocument served = JsonDocument.Parse(await client.GetStringAsync("/api/s/0/ps"));
            (int code, string stdout, string stderr) = VmStateCli.Run(["ps", "--libvirt", lv.Uri, "--domain", lv.Domain, "--json"]);
            Assert.True(code == 0, stderr);
            using JsonDocument printed = JsonDocument.Parse(stdout);
            // vmstate-trigger runs briefly whenever the guest asks for a snapshot (the trigger tests), so it is left out.
            static string[] Rows(JsonDocument d) => [.. Processes(d).Where(p => p.GetProperty("name").GetString() != "vmstate-trigger").Select(p => $"{p.GetProperty("pid").GetInt32()} {p.GetProperty("ppid").GetInt32()} {p.GetProperty("uid").GetInt32()} {Name(p.GetProperty("name").GetString()!)}")];
            static string Name(string n) => n.StartsWith("kworker/", StringComparison.Ordinal) && n.IndexOf('-', StringComparison.Ordinal) is int dash and > 0 ? n[..dash] : n;
            Assert.Equal(Rows(printed), Rows(served));
            Assert.Contains(Processes(served), p => p.GetProperty("pid").GetInt32() == lv.Truth.Marker!.Pid);
            Assert.Contains("\"state\": \"running\"", await client.GetStringAsync("/api/s/0/state"), StringComparison.Ordinal);

            // A live event stream is open (its breakpoint in) when the server gets Ctrl-C: the trace ends with it.
            trace = await client.GetAsync("/api/s/0/trace/exec", HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(System.Net.HttpStatusCode.OK, trace.StatusCode);
            using var reader = new StreamReader(await trace.Content.ReadAsStreamAsync());
            Assert.Equal("event: started", await reader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(120)));
        }
        finally
        {
            if (!server.HasExited)
            {
                await MountTests.InterruptAsync(server);
            }

            trace?.Dispose();
        }

        Assert.Equal(0, server.ExitCode);
        Assert.Equal("running", lv.State());
        HostCommand.Result chardevs = lv.Virsh(TimeSpan.FromSeconds(30), "qemu-monitor-command", lv.Domain, "{\"execute\":\"query-chardev\"}");
        Assert.True(chardevs.ExitCode == 0, chardevs.ToString());
        Assert.DoesNotContain("\"label\":\"gdb\"", chardevs.Stdout.Replace(" ", string.Empty, StringComparison.Ordinal), StringComparison.Ordinal);
        await lv.WaitForTickAfterAsync(lv.LastTick(), TimeSpan.FromSeconds(60));
    }

    /// <summary>The process rows of <c>ps --json</c> (an object with "processes").</summary>
    private static IEnumerable<JsonElement> Processes(JsonDocument doc) =>
        (doc.RootElement.ValueKind == JsonValueKind.Array ? doc.RootElement : doc.RootElement.GetProperty("processes")).EnumerateArray();
}
