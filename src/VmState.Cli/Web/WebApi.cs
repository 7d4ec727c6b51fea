using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using VmState.Arch.X86;
using VmState.Cli.Commands;
using VmState.History;
using VmState.Linux;
using VmState.Live;
using VmState.Machine;
using VmState.Memory;
using VmState.Views;

namespace VmState.Cli.Web;

/// <summary>
/// The JSON API (<c>/api/...</c>, docs/user-guide.md "serve"): where the CLI has a <c>--json</c> for the same data the
/// document is the one the CLI's own writer makes (<c>info</c>, <c>kernel-info</c>, <c>ps</c>, <c>pstree</c>,
/// <c>modules</c>, <c>netdev</c>, <c>dmesg</c>, <c>maps</c>, <c>translate</c>, <c>history list</c>, <c>history diff</c>),
/// byte for byte.
/// </summary>
internal sealed class WebApi(WebServer server, HttpContext context)
{
    private CancellationToken Aborted => context.RequestAborted;

    /// <summary><c>/api/sources</c>: every source with its index, kind, name, and error or capabilities.</summary>
    public Task SourcesAsync() => WebServer.WriteJsonAsync(context, w =>
    {
        w.WriteStartArray();
        foreach (WebSource s in server.Sources)
        {
            w.WriteStartObject();
            w.WriteNumber("index", s.Index);
            w.WriteString("kind", s.Spec.Kind.ToString().ToLowerInvariant());
            w.WriteString("name", s.Spec.Describe());
            w.WriteBoolean("live", s.IsLive);
            if (s.Error is string e)
            {
                w.WriteString("error", e);
            }

            w.WriteEndObject();
        }

        w.WriteEndArray();
    });

    /// <summary><c>/api/s/N/...</c>.</summary>
    public async Task SourceAsync(WebSource source, string[] rest, bool post)
    {
        IQueryCollection q = context.Request.Query;
        switch (rest)
        {
            case [] or ["info"] when !post && source.Store is not null:
            case ["captures"] when !post:
                await CapturesAsync(source).ConfigureAwait(false);
                return;
            case [] or ["info"] when !post:
                await InfoAsync(source).ConfigureAwait(false);
                return;
            case ["state"] when !post:
                await StateAsync(source).ConfigureAwait(false);
                return;
            case ["trace", string kind] when !post && WebTrace.IsKind(kind):
                await WebTrace.StreamAsync(server, context, source, kind).ConfigureAwait(false);
                return;
            case ["pause"] when post:
                await Live(source).PauseAsync(Aborted).ConfigureAwait(false);
                await StateAsync(source).ConfigureAwait(false);
                return;
            case ["resume"] when post:
                await Live(source).ResumeAsync(Aborted).ConfigureAwait(false);
                await StateAsync(source).ConfigureAwait(false);
                return;
            case ["kernel-info"] when !post:
                await Document(source, (vm, stream) => KernelInfoCommand.WriteJson(vm.Linux.Kernel, KernelSummary.Read(vm.Linux.Kernel), stream)).ConfigureAwait(false);
                return;
            case ["ps"] when !post:
                bool threads = Flag(q, "threads");
                await Json(source, (vm, w) => PsCommand.WriteJson(w, vm.Linux.Kernel.Release, LinuxListViews.Processes(threads), vm.Linux.Processes(threads))).ConfigureAwait(false);
                return;
            case ["pstree"] when !post:
                await Json(source, (vm, w) =>
                {
                    w.WriteStartArray();
                    foreach (ProcessTreeNode root in vm.Linux.ProcessTree())
                    {
                        PstreeCommand.WriteJson(w, root);
                    }

                    w.WriteEndArray();
                }).ConfigureAwait(false);
                return;
            case ["modules"] when !post:
                await Json(source, (vm, w) => ListJson.WriteArray(w, LinuxListViews.Modules, vm.Linux.Modules())).ConfigureAwait(false);
                return;
            case ["netdev"] when !post:
                await Json(source, (vm, w) => ListJson.WriteArray(w, LinuxListViews.NetDevices, vm.Linux.NetDevices())).ConfigureAwait(false);
                return;
            case ["dmesg"] when !post:
                await Json(source, (vm, w) => ListJson.WriteArray(w, LinuxListViews.KernelLog(false), vm.Linux.KernelLog())).ConfigureAwait(false);
                return;
            case ["proc", string p, "maps"] when !post:
                int pid = WebParameters.Pid(p);
                await Json(source, (vm, w) => ListJson.WriteArray(w, LinuxListViews.Maps, vm.Linux.Maps(pid))).ConfigureAwait(false);
                return;
            case ["proc", string p, "threads"] when !post:
                int tpid = WebParameters.Pid(p);
                await Json(source, (vm, w) => WriteThreads(w, tpid, ProcessCore.ThreadRegisters(vm.Linux.Kernel, tpid))).ConfigureAwait(false);
                return;
            case ["mem"] when !post:
                await ReadAsync(source, q).ConfigureAwait(false);
                return;
            case ["mem"] when post:
                await WriteAsync(source, q).ConfigureAwait(false);
                return;
            case ["translate"] when !post:
                ulong va = WebParameters.Address(q["addr"], "addr");
                int? xpid = q.ContainsKey("pid") ? WebParameters.Pid(q["pid"]) : null;
                int cpu = q.ContainsKey("cpu") ? WebParameters.SmallNumber(q["cpu"], "cpu", 4095) : 0;
                await Json(source, (vm, w) =>
                {
                    AddressSpace space = WebMemoryRead.SpaceOf(vm, xpid, cpu);
                    TranslateCommand.View(space, va).WriteJson(w);
                }).ConfigureAwait(false);
                return;
            case ["diff"] when !post:
                string a = q["a"].ToString();
                string b = q["b"].ToString();
                bool pages = !q.ContainsKey("pages") || Flag(q, "pages");
                await StoreJson(source, (s, w) => HistoryCommand.WriteDiff(w, s, s.Diff(Capture(s, a, "a"), Capture(s, b, "b"), processPages: pages))).ConfigureAwait(false);
                return;
            default:
                throw new WebRequestException(post ? 405 : 404, $"no API {WebParameters.Shown(context.Request.Path.Value)}{(post ? " for POST" : string.Empty)}");
        }
    }

    /// <summary>A capture of a store by number (or -1 for the latest), as <c>history diff</c> takes it.</summary>
    public static HistoryCapture Capture(HistoryStore store, string? text, string what)
    {
        if (text is "-1" or "latest")
        {
            return store.Captures.Count > 0 ? store.Captures[^1] : throw new WebRequestException(404, "the store has no captures");
        }

        int n = WebParameters.SmallNumber(text, what, int.MaxValue - 1);
        return store.Captures.FirstOrDefault(c => c.Number == n) ?? throw new WebRequestException(404, $"{what}: the store has no capture {n}");
    }

    /// <summary>A query flag: present as 1/true/on (or empty), absent or 0/false/off.</summary>
    public static bool Flag(IQueryCollection q, string name) => q.TryGetValue(name, out var v) && v.ToString() switch
    {
        "" or "1" or "true" or "on" => true,
        "0" or "false" or "off" => false,
        _ => throw new WebRequestException(400, $"{name} {WebParameters.Shown(v.ToString())}: expected 1 or 0"),
    };

    private static WebSource Live(WebSource source) =>
        source.IsLive ? source : throw new WebRequestException(409, "this source is not a running VM: it cannot be paused or resumed");

    private async Task InfoAsync(WebSource source)
    {
        var buffer = new MemoryStream();
        await source.UseAsync(async vm =>
        {
            MachineState m = vm.IsLive ? await vm.Live!.ToMachineStateAsync(Aborted).ConfigureAwait(false) : vm.Machine;
            InfoCommand.WriteJson(m, buffer);
            return true;
        }, Aborted).ConfigureAwait(false);
        await WebServer.WriteBytesAsync(context, buffer, "application/json; charset=utf-8").ConfigureAwait(false);
    }

    private async Task StateAsync(WebSource source)
    {
        string state = source.IsLive
            ? await source.UseAsync(async vm => vm.TryGet(out ILiveControl? c) ? Name(await c.GetRunStateAsync(Aborted).ConfigureAwait(false)) : "unknown", Aborted).ConfigureAwait(false)
            : "snapshot";
        await WebServer.WriteJsonAsync(context, w =>
        {
            w.WriteStartObject();
            w.WriteBoolean("live", source.IsLive);
            w.WriteString("state", state);
            w.WriteBoolean("pausedByServer", source.PausedByServer);
            w.WriteEndObject();
        }).ConfigureAwait(false);
    }

    /// <summary>QEMU's name of a run state (<c>query-status</c>'s <c>status</c>).</summary>
    public static string Name(QemuRunState state) => state switch
    {
        QemuRunState.Running => "running",
        QemuRunState.Paused => "paused",
        QemuRunState.Debug => "debug",
        QemuRunState.InMigrate => "inmigrate",
        QemuRunState.PostMigrate => "postmigrate",
        QemuRunState.Prelaunch => "prelaunch",
        QemuRunState.FinishMigrate => "finish-migrate",
        _ => state.ToString().ToLowerInvariant(),
    };

    private async Task ReadAsync(WebSource source, IQueryCollection q)
    {
        bool physical = WebParameters.IsPhysical(q["space"]);
        ulong addr = WebParameters.Address(q["addr"], "addr");
        int len = WebParameters.Length(q["len"], 256, WebParameters.MaxReadLength);
        WebParameters.CheckRange(addr, len);
        int? pid = q.ContainsKey("pid") ? WebParameters.Pid(q["pid"]) : null;
        int cpu = q.ContainsKey("cpu") ? WebParameters.SmallNumber(q["cpu"], "cpu", 4095) : 0;
        if (physical && pid is not null)
        {
            throw new WebRequestException(400, "pid goes with space=va (a process's virtual addresses)");
        }

        await Json(source, (vm, w) =>
        {
            WebMemoryRead r = WebMemoryRead.Read(vm, physical, pid, cpu, addr, len);
            w.WriteStartObject();
            w.WriteString("space", physical ? "pa" : "va");
            if (pid is int p)
            {
                w.WriteNumber("pid", p);
            }
            else if (!physical)
            {
                w.WriteNumber("cpu", cpu);
            }

            w.WriteString("address", Hex.Of(addr));
            w.WriteNumber("requested", len);
            w.WriteNumber("read", r.Data.Length);
            w.WriteString("data", Convert.ToHexStringLower(r.Data));
            if (r.Stopped is string s)
            {
                w.WriteString("stopped", s);
            }

            w.WriteEndObject();
        }).ConfigureAwait(false);
    }

    private async Task WriteAsync(WebSource source, IQueryCollection q)
    {
        if (!server.Options.AllowWrites)
        {
            throw new WebRequestException(403, "memory writes are off: start vmstate serve with --allow-writes");
        }

        bool physical = WebParameters.IsPhysical(q["space"]);
        ulong addr = WebParameters.Address(q["addr"], "addr");
        int? pid = q.ContainsKey("pid") ? WebParameters.Pid(q["pid"]) : null;
        int cpu = q.ContainsKey("cpu") ? WebParameters.SmallNumber(q["cpu"], "cpu", 4095) : 0;
        string body;
        using (var reader = new StreamReader(context.Request.Body))
        {
            char[] chars = new char[4 * WebParameters.MaxWriteLength + 1];
            int n = await reader.ReadBlockAsync(chars, Aborted).ConfigureAwait(false);
            if (n > 4 * WebParameters.MaxWriteLength)
            {
                throw new WebRequestException(413, $"data is longer than {WebParameters.MaxWriteLength} bytes");
            }

            body = new string(chars, 0, n);
        }

        byte[] data = WebParameters.HexBytes(body);
        await Json(source, (vm, w) =>
        {
            if (!vm.TryGet(out IWritableMemory? ram))
            {
                throw new WebRequestException(409, vm.IsLive ? "this VM's memory cannot be written (read through a read-only path)" : "a snapshot file is never written by the server: only running VMs are");
            }

            int written = physical ? ram.Write(addr, data) : WebMemoryRead.SpaceOf(vm, pid, cpu).Write(addr, data, ram);
            w.WriteStartObject();
            w.WriteString("space", physical ? "pa" : "va");
            w.WriteString("address", Hex.Of(addr));
            w.WriteNumber("written", written);
            w.WriteEndObject();
        }).ConfigureAwait(false);
    }

    private static void WriteThreads(Utf8JsonWriter w, int pid, IReadOnlyList<ThreadUserRegisters> threads)
    {
        w.WriteStartObject();
        w.WriteNumber("pid", pid);
        w.WriteStartArray("threads");
        foreach (ThreadUserRegisters t in threads)
        {
            w.WriteStartObject();
            w.WriteNumber("tid", t.Tid);
            w.WriteString("source", t.Source);
            w.WriteStartObject("registers");
            for (int i = 0; i < t.Registers.Count && i < X86Registers.UserRegs.Count; i++)
            {
                w.WriteString(X86Registers.UserRegs[i].Name, "0x" + t.Registers[i].ToString("x", CultureInfo.InvariantCulture));
            }

            w.WriteEndObject();
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    private async Task CapturesAsync(WebSource source) =>
        await StoreJson(source, HistoryCommand.WriteStore).ConfigureAwait(false);

    private async Task Json(WebSource source, Action<Vm, Utf8JsonWriter> write)
    {
        var buffer = new MemoryStream();
        await source.UseAsync(vm =>
        {
            CommonOptions.WriteJson(buffer, w => write(vm, w));
            return true;
        }, Aborted).ConfigureAwait(false);
        await WebServer.WriteBytesAsync(context, buffer, "application/json; charset=utf-8").ConfigureAwait(false);
    }

    private async Task Document(WebSource source, Action<Vm, Stream> write)
    {
        var buffer = new MemoryStream();
        await source.UseAsync(vm =>
        {
            write(vm, buffer);
            return true;
        }, Aborted).ConfigureAwait(false);
        await WebServer.WriteBytesAsync(context, buffer, "application/json; charset=utf-8").ConfigureAwait(false);
    }

    private async Task StoreJson(WebSource source, Action<HistoryStore, Utf8JsonWriter> write)
    {
        var buffer = new MemoryStream();
        await source.UseStoreAsync(s =>
        {
            CommonOptions.WriteJson(buffer, w => write(s, w));
            return true;
        }, Aborted).ConfigureAwait(false);
        await WebServer.WriteBytesAsync(context, buffer, "application/json; charset=utf-8").ConfigureAwait(false);
    }
}
