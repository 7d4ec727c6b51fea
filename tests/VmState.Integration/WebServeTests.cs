using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Playwright;
using VmState.Integration.Harness;
using VmState.Live;
using Xunit.Abstractions;

namespace VmState.Integration;

/// <summary>
/// One fixture guest (256 MiB) for every <c>vmstate serve</c> test: saved twice as migration streams (the first is the
/// snapshot source, both go into a history store), left running for the live source, and one server process over the
/// three (<c>serve SNAPSHOT --qmp SOCKET --store STORE --port 0 --allow-writes --allow-trace</c>; QEMU serves one QMP client per
/// socket, so one server holds the running VM; the refusal without --allow-writes is a unit test).
/// </summary>
public sealed class WebServeGuest : IAsyncLifetime
{
    public string Dir { get; } = Directory.CreateTempSubdirectory("vmstate-web-it-").FullName;

    public QemuGuest Guest { get; private set; } = null!;

    public string Snapshot => Path.Combine(Dir, "guest.mig");

    public string Store => Path.Combine(Dir, "store");

    public Uri Url { get; private set; } = null!;

    public HttpClient Client { get; private set; } = null!;

    public Process Server { get; private set; } = null!;

    public GroundTruth.MarkerInfo Marker => Guest.Truth.Marker!;

    public async Task InitializeAsync()
    {
        Guest = await QemuGuest.StartAsync(new QemuGuestOptions { MemoryMiB = 256 });
        await Guest.WaitForReadyAsync(TimeSpan.FromSeconds(180));
        string later = Path.Combine(Dir, "later.mig");
        foreach (string path in (string[])[Snapshot, later])
        {
            await Guest.PauseAsync();
            await Guest.MigrateToFileAsync(path);
            await Guest.ResumeAsync();
            int line = Guest.SerialLineCount;
            await Guest.WaitForSerialLineAsync(l => l.StartsWith("VMSTATE-TICK ", StringComparison.Ordinal), TimeSpan.FromSeconds(30), line);
        }

        (int code, _, string stderr) = VmStateCli.Run(["history", "import", "--store", Store, Snapshot, later]);
        Assert.True(code == 0, stderr);
        File.Delete(later);
        Server = VmStateCli.StartBackground(["serve", Snapshot, "--qmp", Guest.ToolQmpPath, "--store", Store, "--port", "0", "--allow-writes", "--allow-trace"]);
        string? first = await Server.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(120));
        Match m = Regex.Match(first ?? string.Empty, @"listening on (http://\S+)$");
        Assert.True(m.Success, $"serve printed: {first}\n{(Server.HasExited ? await Server.StandardError.ReadToEndAsync() : string.Empty)}");
        Url = new Uri(m.Groups[1].Value);
        _ = Server.StandardError.ReadToEndAsync();
        Client = new HttpClient { BaseAddress = Url, Timeout = TimeSpan.FromSeconds(60) };
    }

    public async Task DisposeAsync()
    {
        Client?.Dispose();
        if (Server is { HasExited: false })
        {
            await MountTests.InterruptAsync(Server);
        }

        Server?.Dispose();
        await Guest.DisposeAsync();
        Directory.Delete(Dir, recursive: true);
    }
}

/// <summary>
/// <c>vmstate serve</c> over the fixture guest: the API documents are the CLI's <c>--json</c> byte for byte, the pages
/// show the marker process, its map and its memory, the running VM is read live, paused and resumed, its kernel log
/// arrives as server-sent events, and a real browser (Debian's chromium through Playwright) walks the dashboard.
/// </summary>
public sealed class WebServeTests(WebServeGuest fixture, ITestOutputHelper log) : IClassFixture<WebServeGuest>
{
    private static string Hex(ulong v) => "0x" + v.ToString("x", CultureInfo.InvariantCulture);

    private async Task<string> Get(string path)
    {
        using HttpResponseMessage r = await fixture.Client.GetAsync(path);
        string body = await r.Content.ReadAsStringAsync();
        Assert.True(r.IsSuccessStatusCode, $"{path}: {(int)r.StatusCode} {body}");
        return body;
    }

    private static string Cli(params string[] args)
    {
        (int code, string stdout, string stderr) = VmStateCli.Run(args);
        Assert.True(code == 0, $"vmstate {string.Join(' ', args)}: {stderr}");
        return stdout;
    }

    [Fact]
    public async Task EveryApiDocumentIsTheCliJson()
    {
        string snap = fixture.Snapshot;
        string pid = fixture.Marker.Pid.ToString(CultureInfo.InvariantCulture);
        (string Api, string[] Cli)[] pairs =
        [
            ("/api/s/0/info", ["info", snap, "--json"]),
            ("/api/s/0/kernel-info", ["kernel-info", snap, "--json"]),
            ("/api/s/0/ps", ["ps", snap, "--json"]),
            ("/api/s/0/pstree", ["pstree", snap, "--json"]),
            ("/api/s/0/modules", ["modules", snap, "--json"]),
            ("/api/s/0/netdev", ["netdev", snap, "--json"]),
            ("/api/s/0/dmesg", ["dmesg", snap, "--json"]),
            ($"/api/s/0/proc/{pid}/maps", ["maps", snap, pid, "--json"]),
            ($"/api/s/0/translate?addr={Hex(fixture.Marker.VirtualAddress)}&pid={pid}", ["translate", snap, Hex(fixture.Marker.VirtualAddress), "--pid", pid, "--json"]),
            ("/api/s/2/captures", ["history", "list", fixture.Store, "--json"]),
            ("/api/s/2/diff?a=1&b=2", ["history", "diff", fixture.Store, "1", "2", "--json"]),
        ];
        foreach ((string api, string[] cli) in pairs)
        {
            Assert.Equal(Cli(cli), await Get(api));
        }

        // The marker's bytes through the API, by virtual address in its process and by physical address.
        foreach (string q in (string[])[$"space=va&pid={pid}&addr={Hex(fixture.Marker.VirtualAddress)}", $"space=pa&addr={Hex(fixture.Marker.PhysicalAddress)}"])
        {
            using JsonDocument mem = JsonDocument.Parse(await Get($"/api/s/0/mem?{q}&len={fixture.Marker.Value.Length}"));
            Assert.Equal(Convert.ToHexStringLower(Encoding.ASCII.GetBytes(fixture.Marker.Value)), mem.RootElement.GetProperty("data").GetString());
        }
    }

    [Fact]
    public async Task ThePagesShowTheMarkerProcessItsMapAndItsMemory()
    {
        GroundTruth.MarkerInfo marker = fixture.Marker;
        string linux = await Get("/s/0/linux");
        Assert.Contains($"<a href=\"/s/0/proc/{marker.Pid}\">vmsmarker</a>", linux, StringComparison.Ordinal);
        Assert.Contains(fixture.Guest.Truth.KernelVersion, linux, StringComparison.Ordinal);
        Assert.Contains(fixture.Guest.Truth.DmesgMarker!, linux, StringComparison.Ordinal);

        string proc = await Get($"/s/0/proc/{marker.Pid}");
        Assert.Contains("/bin/vmsmarker --info /run/vmsmarker.info", proc, StringComparison.Ordinal);
        var truthMaps = fixture.Guest.Truth.Lines.Where(l => l.Key == "maps" && l.Text.StartsWith($"pid={marker.Pid} ", StringComparison.Ordinal)).Select(l => l.Text[(l.Text.IndexOf(' ', StringComparison.Ordinal) + 1)..]).ToList();
        Assert.NotEmpty(truthMaps);
        Assert.Equal(truthMaps.Count, Regex.Matches(proc, "<div class=\"bar").Count);
        foreach (string line in truthMaps)
        {
            string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            string[] range = f[0].Split('-');
            Assert.Contains($"&amp;addr=0x{range[0].TrimStart('0')}\">{range[0].TrimStart('0')}</a></td><td class=\"mono\">{range[1].TrimStart('0')}</td><td class=\"mono\">{f[1]}</td>", proc, StringComparison.Ordinal);
            if (f.Length > 5)
            {
                Assert.Contains($"<td class=\"mono\">{f[5]}</td>", proc, StringComparison.Ordinal);
            }
        }

        Assert.Contains("registers from", proc, StringComparison.Ordinal);
        string mem = await Get($"/s/0/mem?space=va&pid={marker.Pid}&addr={Hex(marker.VirtualAddress)}&len=64");
        Assert.Contains(marker.Value[..16], mem, StringComparison.Ordinal);
        Assert.Contains("<h2>Translation of", mem, StringComparison.Ordinal);
        Assert.Contains($"physical {Hex(marker.PhysicalAddress)} (", mem, StringComparison.Ordinal);

        // "download core": procdump's ELF core of the process.
        using HttpResponseMessage core = await fixture.Client.GetAsync($"/s/0/proc/{marker.Pid}/core");
        Assert.True(core.IsSuccessStatusCode);
        byte[] elf = await core.Content.ReadAsByteArrayAsync();
        Assert.Equal("\u007fELF"u8.ToArray(), elf[..4]);
        Assert.True(elf.AsSpan().IndexOf(Encoding.ASCII.GetBytes(marker.Value)) >= 0, "the core holds the marker string");
    }

    [Fact]
    public async Task TheRunningVmIsReadLivePausedResumedAndItsLogArrivesLive()
    {
        using JsonDocument ps = JsonDocument.Parse(await Get("/api/s/1/ps"));
        Assert.Contains(ps.RootElement.GetProperty("processes").EnumerateArray(), p => p.GetProperty("pid").GetInt32() == fixture.Marker.Pid);
        Assert.Contains("\"state\": \"running\"", await Get("/api/s/1/state"), StringComparison.Ordinal);

        using (HttpResponseMessage pause = await fixture.Client.PostAsync("/api/s/1/pause", null))
        {
            Assert.Contains("\"state\": \"paused\"", await pause.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        Assert.Equal("paused", await fixture.Guest.Qmp.QueryStatusAsync());
        using (HttpResponseMessage resume = await fixture.Client.PostAsync("/api/s/1/resume", null))
        {
            Assert.Contains("\"state\": \"running\"", await resume.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        Assert.Equal("running", await fixture.Guest.Qmp.QueryStatusAsync());

        // The log's live tail: records after the last one read now arrive as events, among them the guest's tick.
        using JsonDocument dmesg = JsonDocument.Parse(await Get("/api/s/1/dmesg"));
        ulong last = dmesg.RootElement.EnumerateArray().Last().GetProperty("seq").GetUInt64();
        using var events = new HttpRequestMessage(HttpMethod.Get, $"/s/1/linux/log/events?after={last}");
        using HttpResponseMessage stream = await fixture.Client.SendAsync(events, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("text/event-stream", stream.Content.Headers.ContentType!.MediaType);
        using var reader = new StreamReader(await stream.Content.ReadAsStreamAsync());
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        string? line;
        do
        {
            line = await reader.ReadLineAsync(timeout.Token);
        }
        while (line is not null && !Regex.IsMatch(line, @"^data: \[ *\d+\.\d{6}\] VMSTATE-KTICK \d+$"));
        Assert.NotNull(line);
        Assert.Equal("running", await fixture.Guest.Qmp.QueryStatusAsync());
    }

    [Fact]
    public async Task WithAllowWritesAMemoryWriteReachesTheRunningGuest()
    {
        // g_value written through the marker's page tables; the marker prints the new value. A snapshot is never written.
        GroundTruth.MarkerInfo marker = fixture.Marker;
        string target = $"/api/s/1/mem?space=va&pid={marker.Pid}&addr={Hex(marker.GValueVirtualAddress)}";
        int line = fixture.Guest.SerialLineCount;
        string bytes = Convert.ToHexStringLower(BitConverter.GetBytes(0x2468_ace0_1357_9bdfUL));
        using HttpResponseMessage written = await fixture.Client.PostAsync(target, new StringContent(bytes));
        string body = await written.Content.ReadAsStringAsync();
        Assert.True(written.IsSuccessStatusCode, body);
        Assert.Contains("\"written\": 8", body, StringComparison.Ordinal);
        await fixture.Guest.WaitForSerialLineAsync(l => l.EndsWith("value=0x2468ace013579bdf", StringComparison.Ordinal), TimeSpan.FromSeconds(30), line);
        using HttpResponseMessage snapshot = await fixture.Client.PostAsync(target.Replace("/s/1/", "/s/0/", StringComparison.Ordinal), new StringContent(bytes));
        Assert.Equal(System.Net.HttpStatusCode.Conflict, snapshot.StatusCode);
        Assert.Equal("running", await fixture.Guest.Qmp.QueryStatusAsync());
    }

    [Fact]
    public async Task TheDashboardWorksInARealBrowser()
    {
        string artifacts = Path.Combine(RepoPaths.Root, "artifacts", "web");
        Directory.CreateDirectory(artifacts);
        GroundTruth.MarkerInfo marker = fixture.Marker;
        using IPlaywright playwright = await Playwright.CreateAsync();
        await using IBrowser browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = "/usr/bin/chromium",
            Headless = true,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        });
        IPage page = await browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1400, Height = 1000 } });

        // Playwright's 30 s default was seen to run out for one navigation on a host loaded far beyond its cores; the
        // steps are correct or wrong whatever their speed (the page timings are measured below, not asserted).
        page.SetDefaultTimeout(120_000);
        page.SetDefaultNavigationTimeout(120_000);
        var errors = new List<string>();
        page.PageError += (_, e) => errors.Add(e);
        page.Console += (_, m) =>
        {
            if (m.Type == "error")
            {
                errors.Add(m.Text);
            }
        };
        string Url(string path) => new Uri(fixture.Url, path).ToString();

        // After a click: the new document has committed and is complete, read from the document itself. (WaitForURLAsync's
        // own wait for the load event once timed out in CI with the page loaded and the network idle.)
        async Task ArrivedAsync(Regex url)
        {
            await page.WaitForURLAsync(url, new PageWaitForURLOptions { WaitUntil = WaitUntilState.Commit });
            await page.WaitForFunctionAsync("() => document.readyState == 'complete'");
        }

        // Machines: both VMs and the store; the running one with its state and a pause button.
        await page.GotoAsync(Url("/"));
        Assert.Contains("running", await page.InnerTextAsync("#state-1"), StringComparison.Ordinal);
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(artifacts, "machines.png"), FullPage = true });

        // Linux: filter the process table (htmx swaps it), click into the marker process.
        await page.GotoAsync(Url("/s/0/linux"));
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(artifacts, "linux.png") });
        await page.FillAsync("input[name=q]", "vmsmarker");
        await page.WaitForFunctionAsync("() => document.querySelectorAll('#ps tr').length == 2");
        await page.ClickAsync("#ps a:text('vmsmarker')");
        await ArrivedAsync(new Regex($"/s/0/proc/{marker.Pid}$"));
        Assert.Contains("/bin/vmsmarker", await page.InnerTextAsync(".cmdline"), StringComparison.Ordinal);
        int vmas = await page.Locator("table.maps .bar").CountAsync();
        Assert.Equal(fixture.Guest.Truth.Lines.Count(l => l.Key == "maps" && l.Text.StartsWith($"pid={marker.Pid} ", StringComparison.Ordinal)), vmas);
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(artifacts, "process.png"), FullPage = true });

        // Its memory: the [heap] VMA's link opens the hexdump in the process's address space; the form reads the marker.
        await page.ClickAsync("table.maps tr:has-text('[heap]') a");
        await ArrivedAsync(new Regex("/s/0/mem\\?"));
        await page.FillAsync("input[name=addr]", Hex(marker.VirtualAddress));
        await page.ClickAsync("form button");
        await ArrivedAsync(new Regex($"addr={Hex(marker.VirtualAddress)}"));
        Assert.Contains(marker.Value[..16], await page.TextContentAsync("div.hexdump"), StringComparison.Ordinal);
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(artifacts, "memory.png") });

        // The running VM's kernel log: a tick the guest writes after the page loaded appears without a reload.
        await page.GotoAsync(Url("/s/1/linux"));
        await page.WaitForFunctionAsync("() => /VMSTATE-KTICK \\d+\\n$/.test(document.getElementById('log').textContent) && Number(document.getElementById('log').dataset.lines || 0) > 0", null, new PageWaitForFunctionOptions { Timeout = 20_000 });
        await page.Locator("#log").ScrollIntoViewIfNeededAsync();
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(artifacts, "linux-live.png") });

        // The live event stream: the marker's three programs appear as rows while they start; leaving the page ends the trace.
        await page.GotoAsync(Url("/s/1/events?kind=exec"));
        await page.WaitForFunctionAsync("() => document.getElementById('trace-status').className == 'ok'", null, new PageWaitForFunctionOptions { Timeout = 120_000 });
        await RequestAsync(await RequestAddressAsync(), 2);
        await page.WaitForFunctionAsync("() => Number(document.getElementById('events').dataset.events || 0) >= 3", null, new PageWaitForFunctionOptions { Timeout = 120_000 });
        Assert.Contains("/bin/sleep", await page.InnerTextAsync("#events"), StringComparison.Ordinal);
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(artifacts, "events.png") });
        await page.GotoAsync(Url("/"));
        await AssertTraceEndedAsync();

        // Time: the store's captures and their diff.
        await page.GotoAsync(Url("/s/2"));
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(artifacts, "time.png") });
        await page.ClickAsync("form button");
        await ArrivedAsync(new Regex("/s/2/diff\\?"));
        Assert.Contains("Capture 1 → 2", await page.InnerTextAsync("h1 >> nth=1"), StringComparison.Ordinal);
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(artifacts, "diff.png") });

        // Speed on the snapshot source: time to first byte and full load (Navigation Timing), after one warm-up load.
        var report = new StringBuilder();
        foreach ((string name, string path) in ((string, string)[])[("process table (/s/0/linux)", "/s/0/linux"), ("64 KiB hexdump", $"/s/0/mem?space=va&pid={marker.Pid}&addr={Hex(marker.VirtualAddress & ~0xfffUL)}&len=65536")])
        {
            await page.GotoAsync(Url(path));
            await page.GotoAsync(Url(path));
            JsonElement t = await page.EvaluateAsync<JsonElement>("() => { const n = performance.getEntriesByType('navigation')[0]; return { ttfb: n.responseStart - n.requestStart, load: n.loadEventEnd - n.startTime, bytes: n.transferSize }; }");
            report.Append(CultureInfo.InvariantCulture, $"{name}: first byte {t.GetProperty("ttfb").GetDouble():F1} ms, full load {t.GetProperty("load").GetDouble():F1} ms, {t.GetProperty("bytes").GetDouble():F0} bytes\n");
        }

        log.WriteLine(report.ToString());
        await File.WriteAllTextAsync(Path.Combine(artifacts, "timings.txt"), report.ToString());
        Assert.Empty(errors);
    }

    [Fact]
    public async Task TheLiveEventStreamSendsTheGuestsExecsAsTheyHappenAndCleansUpWhenClosed()
    {
        GroundTruth.MarkerInfo marker = fixture.Marker;
        ulong request = await RequestAddressAsync();
        int from;
        var execs = new List<JsonElement>();
        var transcript = new StringBuilder();
        using (var open = new HttpRequestMessage(HttpMethod.Get, "/api/s/1/trace/exec"))
        using (HttpResponseMessage stream = await fixture.Client.SendAsync(open, HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, stream.StatusCode);
            Assert.Equal("text/event-stream", stream.Content.Headers.ContentType!.MediaType);
            using var reader = new StreamReader(await stream.Content.ReadAsStreamAsync());
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(150));
            (string name, JsonElement started) = await NextEventAsync(reader, transcript, timeout.Token);
            Assert.Equal("started", name);
            Assert.Equal("setup_new_exec", started.GetProperty("breakpoint").GetString());

            // One trace per VM: a second stream, and the pause button, are refused while this one runs.
            using (HttpResponseMessage second = await fixture.Client.GetAsync("/api/s/1/trace/exec", HttpCompletionOption.ResponseHeadersRead))
            {
                Assert.Equal(System.Net.HttpStatusCode.Conflict, second.StatusCode);
                Assert.Contains("already running", await second.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            }

            using (HttpResponseMessage pause = await fixture.Client.PostAsync("/api/s/1/pause", null))
            {
                Assert.Equal(System.Net.HttpStatusCode.Conflict, pause.StatusCode);
            }

            from = fixture.Guest.SerialLineCount;
            await RequestAsync(request, 2);
            while (execs.Count < 3)
            {
                (name, JsonElement e) = await NextEventAsync(reader, transcript, timeout.Token);
                Assert.Equal("exec", name);
                execs.Add(e);
            }
        }

        // The marker's own account of the programs it ran (VMSMARKER exec pid=<pid> argv=<argv joined by spaces>).
        await fixture.Guest.WaitForSerialLineAsync(l => l.StartsWith("VMSMARKER exec pid=", StringComparison.Ordinal) && l.Contains("/bin/sleep", StringComparison.Ordinal), TimeSpan.FromSeconds(30), from);
        string[] truth = fixture.Guest.SerialText.Split('\n').Skip(from).Select(l => l.TrimEnd('\r')).Where(l => l.StartsWith("VMSMARKER exec pid=", StringComparison.Ordinal)).ToArray();
        Assert.Equal(3, truth.Length);
        for (int i = 0; i < 3; i++)
        {
            string said = truth[i]["VMSMARKER exec ".Length..];
            int pid = int.Parse(said["pid=".Length..said.IndexOf(' ', StringComparison.Ordinal)], CultureInfo.InvariantCulture);
            string argv = said[(said.IndexOf(" argv=", StringComparison.Ordinal) + " argv=".Length)..];
            string program = argv.Split(' ')[0];
            Assert.Equal(pid, execs[i].GetProperty("pid").GetInt32());
            Assert.Equal(program[(program.LastIndexOf('/') + 1)..], execs[i].GetProperty("comm").GetString());
            Assert.Equal(program, execs[i].GetProperty("filename").GetString());
            Assert.Equal(argv, string.Join(' ', execs[i].GetProperty("argv").EnumerateArray().Select(a => a.GetString())));
            Assert.Equal(marker.Pid, execs[i].GetProperty("ppid").GetInt32());
        }

        // Closing the stream ended the trace: breakpoint out, the stub the server started stopped, the guest running.
        await AssertTraceEndedAsync();
        string artifacts = Path.Combine(RepoPaths.Root, "artifacts", "web");
        Directory.CreateDirectory(artifacts);
        await File.WriteAllTextAsync(Path.Combine(artifacts, "trace-exec.txt"), transcript.ToString());
    }

    [Fact]
    public async Task TheBreakpointStreamSendsTheMarkersSleepCallsAndCleansUpWhenClosed()
    {
        // The marker sleeps once a second (nanosleep -> clock_nanosleep): a breakpoint on the system call's entry
        // sees it, with its pid and name, among whatever else sleeps.
        var transcript = new StringBuilder();
        var hits = new List<JsonElement>();
        using (HttpResponseMessage stream = await fixture.Client.GetAsync("/api/s/1/trace/break?symbol=__x64_sys_clock_nanosleep", HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, stream.StatusCode);
            using var reader = new StreamReader(await stream.Content.ReadAsStreamAsync());
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(150));
            (string name, JsonElement started) = await NextEventAsync(reader, transcript, timeout.Token);
            Assert.Equal("started", name);
            while (!hits.Any(h => h.GetProperty("pid").ValueKind == JsonValueKind.Number && h.GetProperty("pid").GetInt32() == fixture.Marker.Pid))
            {
                (name, JsonElement e) = await NextEventAsync(reader, transcript, timeout.Token);
                Assert.Equal("hit", name);
                hits.Add(e);
            }
        }

        Assert.All(hits, h => Assert.StartsWith("__x64_sys_clock_nanosleep", h.GetProperty("symbol").GetString(), StringComparison.Ordinal));
        JsonElement marker = hits.Last();
        Assert.Equal("vmsmarker", marker.GetProperty("comm").GetString());
        Assert.Equal(fixture.Marker.Pid, marker.GetProperty("tgid").GetInt32());
        await AssertTraceEndedAsync();
    }

    /// <summary>The next server-sent event on <paramref name="reader"/>: its name and its data (JSON); comments skipped.</summary>
    private static async Task<(string Name, JsonElement Data)> NextEventAsync(StreamReader reader, StringBuilder transcript, CancellationToken cancellationToken)
    {
        string? name = null;
        while (await reader.ReadLineAsync(cancellationToken) is string line)
        {
            transcript.Append(line).Append('\n');
            if (line.StartsWith("event: ", StringComparison.Ordinal))
            {
                name = line["event: ".Length..];
            }
            else if (line.StartsWith("data: ", StringComparison.Ordinal) && name is not null)
            {
                using JsonDocument doc = JsonDocument.Parse(line["data: ".Length..]);
                return (name, doc.RootElement.Clone());
            }
        }

        throw new EndOfStreamException("the event stream ended");
    }

    /// <summary>
    /// The guest-physical address of the marker's g_request now, through the server's translate API (the server holds
    /// the tool QMP socket; a fork by an exec request copies the page on the marker's next write).
    /// </summary>
    private async Task<ulong> RequestAddressAsync()
    {
        string line = fixture.Guest.SerialText.Split('\n').First(l => l.StartsWith("VMSTATE-TRUTH marker ", StringComparison.Ordinal)).TrimEnd('\r');
        string field = line.Split(' ').First(f => f.StartsWith("g_request_addr=", StringComparison.Ordinal));
        using JsonDocument t = JsonDocument.Parse(await Get($"/api/s/1/translate?addr={field["g_request_addr=".Length..]}&pid={fixture.Marker.Pid}"));
        string physical = t.RootElement.GetProperty("physicalAddress").GetString()!;
        return ulong.Parse(physical.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);
    }

    /// <summary>Writes a request into the marker's g_request (guest-physical, through the harness's own QMP); it serves it after its next tick.</summary>
    private async Task RequestAsync(ulong physical, ulong request)
    {
        await using LiveMachine live = await LiveMachine.AttachAsync(fixture.Guest.Qmp, ownsClient: false);
        Assert.Equal(8, live.Memory.Write(physical, BitConverter.GetBytes(request)));
    }

    /// <summary>The server's trace is gone: no gdbstub left (it started the one it used), the VM runs, the marker ticks on.</summary>
    private async Task AssertTraceEndedAsync()
    {
        var clock = Stopwatch.StartNew();
        while ((await fixture.Guest.Qmp.ExecuteAsync("query-chardev")).EnumerateArray().Any(c => c.GetProperty("label").GetString() == "gdb"))
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), "the gdbstub is still there 30 s after the event stream closed");
            await Task.Delay(100);
        }

        Assert.Equal("running", await fixture.Guest.Qmp.QueryStatusAsync());
        int from = fixture.Guest.SerialLineCount;
        await fixture.Guest.WaitForSerialLineAsync(l => l.StartsWith("VMSMARKER tick=", StringComparison.Ordinal), TimeSpan.FromSeconds(60), from);
        Assert.Equal("running", await fixture.Guest.Qmp.QueryStatusAsync());
        using HttpResponseMessage again = await fixture.Client.PostAsync("/api/s/1/resume", null);
        Assert.True(again.IsSuccessStatusCode, "the source still counts a trace after the stream closed");
    }
}
