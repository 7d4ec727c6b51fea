using System.Globalization;
using System.Text;
using Microsoft.AspNetCore.Http;
using VmState.Arch.X86;
using VmState.Cli.Commands;
using VmState.History;
using VmState.Linux;
using VmState.Machine;

namespace VmState.Cli.Web;

/// <summary>
/// The HTML pages: Machines, Linux, a process, Memory, Time (docs/user-guide.md "serve"). Server-rendered; htmx swaps
/// the process table when it is sorted or filtered and the run state when a button is pressed; the live kernel log
/// arrives as server-sent events (<c>/assets/vmstate.js</c>, a dozen lines, no build step).
/// </summary>
internal sealed class WebPages(WebServer server, HttpContext context)
{
    /// <summary>The page script: the live kernel log tail (EventSource → lines appended to the log).</summary>
    public const string Script = """
        // vmstate serve: the live tail of the kernel log and the live event stream (server-sent events).
        document.addEventListener("DOMContentLoaded", () => {
          for (const table of document.querySelectorAll("table[data-trace]")) {
            const status = document.getElementById("trace-status");
            const columns = table.dataset.columns.split(",");
            const source = new EventSource(table.dataset.trace);
            const row = e => {
              const event = JSON.parse(e.data);
              const tr = document.createElement("tr");
              for (const c of columns) {
                const td = tr.insertCell();
                const v = event[c];
                td.textContent = v === null || v === undefined ? "?" : Array.isArray(v) ? v.join(" ") : String(v);
              }
              table.tBodies[0].appendChild(tr);
              table.dataset.events = String(Number(table.dataset.events || "0") + 1);
            };
            source.addEventListener("exec", row);
            source.addEventListener("hit", row);
            source.addEventListener("started", e => {
              const s = JSON.parse(e.data);
              status.textContent = "tracing: a breakpoint on " + s.breakpoint + " through the gdbstub at " + s.stub + (s.started_stub ? " (started for this page)" : "") + "; leaving the page ends the trace";
              status.className = "ok";
            });
            source.addEventListener("end", e => {
              status.textContent = "trace ended: " + JSON.parse(e.data).reason;
              status.className = "muted";
              source.close();
            });
            source.onerror = () => {
              if (source.readyState === EventSource.CLOSED && status.className !== "muted") {
                status.textContent = "the trace could not start (see the API's answer: " + table.dataset.trace + ")";
                status.className = "err";
              }
            };
          }

          for (const log of document.querySelectorAll("pre[data-events]")) {
            const source = new EventSource(log.dataset.events);
            source.addEventListener("line", e => {
              log.appendChild(document.createTextNode(e.data + "\n"));
              log.dataset.lines = String(Number(log.dataset.lines || "0") + 1);
              log.scrollTop = log.scrollHeight;
            });
          }
        });
        """;

    private const string Style = """
        body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
        header{background:#1d2b3a;color:#fff;padding:.5em 1em;display:flex;gap:1.5em;align-items:baseline}
        header a{color:#cfe3ff;text-decoration:none}header b{font-size:1.1em}
        main{padding:1em}section{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:.8em 1em;margin:0 0 1em}
        h1{font-size:1.3em;margin:.2em 0 .6em}h2{font-size:1.1em;margin:.2em 0 .5em}
        table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;text-align:left;border-bottom:1px solid #eef0f2;vertical-align:top}
        th a{color:inherit}td.n,th.n{text-align:right}.mono,td.mono,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}
        pre{background:#f3f4f6;padding:.6em;overflow:auto;margin:0}.hexdump pre{padding:0 .6em;content-visibility:auto;contain-intrinsic-size:auto 4300px}pre.log{max-height:28em}
        .err{color:#a40000}.muted{color:#6b7280}.ok{color:#0a7a28}
        .bar{height:12px;background:#7aa6d8;border-radius:2px;min-width:2px}.bar.x{background:#d88a7a}.bar.w{background:#8bc48a}.bar.s{background:#b9a3d9}
        .cols{display:flex;gap:1em;align-items:flex-start}.cols>*{flex:1;min-width:0}.cols>:first-child{flex:0 0 auto}
        input,select,button{font:inherit}button{cursor:pointer}form.inline{display:inline}
        """;

    private CancellationToken Aborted => context.RequestAborted;

    private IQueryCollection Query => context.Request.Query;

    /// <summary><c>/</c>: every source.</summary>
    public async Task MachinesAsync()
    {
        var h = new Html();
        foreach (WebSource s in server.Sources)
        {
            await SourceCardAsync(h, s).ConfigureAwait(false);
        }

        await PageAsync("Machines", null, h).ConfigureAwait(false);
    }

    /// <summary><c>/s/N/...</c>.</summary>
    public async Task SourceAsync(WebSource source, string[] rest, bool post)
    {
        switch (rest)
        {
            case [] when !post && source.Store is not null:
                await TimeAsync(source).ConfigureAwait(false);
                return;
            case ["diff"] when !post:
                await DiffAsync(source).ConfigureAwait(false);
                return;
            case [] when !post:
                var h = new Html();
                await SourceCardAsync(h, source).ConfigureAwait(false);
                await PageAsync($"Machine {source.Index}", source, h).ConfigureAwait(false);
                return;
            case ["state"] when !post:
                await WebServer.WriteHtmlAsync(context, await StateFragmentAsync(source).ConfigureAwait(false)).ConfigureAwait(false);
                return;
            case ["pause"] when post:
            case ["resume"] when post:
                if (!source.IsLive)
                {
                    throw new WebRequestException(409, "this source is not a running VM");
                }

                await (rest[0] == "pause" ? source.PauseAsync(Aborted) : source.ResumeAsync(Aborted)).ConfigureAwait(false);
                await WebServer.WriteHtmlAsync(context, await StateFragmentAsync(source).ConfigureAwait(false)).ConfigureAwait(false);
                return;
            case ["linux"] when !post:
                await LinuxAsync(source).ConfigureAwait(false);
                return;
            case ["linux", "ps"] when !post:
                string table = await source.UseAsync(vm => ProcessTable(source, vm.Linux.Processes()).ToString(), Aborted).ConfigureAwait(false);
                await WebServer.WriteHtmlAsync(context, table).ConfigureAwait(false);
                return;
            case ["linux", "log", "events"] when !post:
                await LogEventsAsync(source).ConfigureAwait(false);
                return;
            case ["proc", string p] when !post:
                await ProcessAsync(source, WebParameters.Pid(p)).ConfigureAwait(false);
                return;
            case ["proc", string p, "core"] when !post:
                await CoreAsync(source, WebParameters.Pid(p)).ConfigureAwait(false);
                return;
            case ["mem"] when !post:
                await MemoryAsync(source).ConfigureAwait(false);
                return;
            case ["events"] when !post:
                await EventsAsync(source).ConfigureAwait(false);
                return;
            default:
                throw new WebRequestException(post ? 405 : 404, $"no page {WebParameters.Shown(context.Request.Path.Value)}{(post ? " for POST" : string.Empty)}");
        }
    }

    private async Task SourceCardAsync(Html h, WebSource s)
    {
        h.Raw("<section id=\"source-").Number(s.Index).Raw("\"><h2>").Number(s.Index).Raw(": ").Text(s.Spec.Describe()).Raw("</h2>");
        if (s.Error is string error)
        {
            h.Raw("<p class=\"err\">could not open: ").Text(error).Raw("</p></section>");
            return;
        }

        if (s.Store is HistoryStore)
        {
            int count = await s.UseStoreAsync(st => st.Captures.Count, Aborted).ConfigureAwait(false);
            h.Raw("<p>history store, ").Number(count).Raw(" captures — ").Link($"/s/{s.Index}", "Time").Raw(" · ").Link($"/api/s/{s.Index}/captures", "JSON").Raw("</p></section>");
            return;
        }

        string state = await StateFragmentAsync(s).ConfigureAwait(false);
        await s.UseAsync(async vm =>
        {
            MachineState m = vm.IsLive ? await vm.Live!.ToMachineStateAsync(Aborted).ConfigureAwait(false) : vm.Machine;
            LinuxKernel? kernel = await Task.Run(() => s.TryKernel(vm, out _), Aborted).ConfigureAwait(false);
            // The mapped RAM blocks, largest first (main RAM, then video RAM and ROMs), as info lists them.
            string ram = string.Join(", ", m.RamBlocks.Where(b => b.Mappings.Count > 0).OrderByDescending(b => b.Length).Take(3).Select(b => $"{b.Name} {Hex.Size(b.Length)}"));
            h.Raw("<p>").Text(m.Origin.Description).Raw(", machine type <b>").Text(m.MachineType ?? "unknown").Raw("</b>, RAM ").Text(ram).Raw(", ").Number(m.Cpus.Count).Raw(" vCPU(s) ").Raw(state).Raw("</p>");
            h.Raw("<p>").Link($"/s/{s.Index}/linux", "Linux").Raw(" · ").Link($"/s/{s.Index}/mem?space=pa&addr=0x0", "Memory").Raw(" · ").Link($"/api/s/{s.Index}/info", "JSON").Raw("</p>");
            h.Raw("<table class=\"cpus\"><tr><th>cpu</th><th>mode</th><th>RIP</th><th>symbol</th><th>CR3</th><th>halted</th></tr>");
            foreach (X86CpuState c in m.Cpus)
            {
                h.Raw("<tr>").Cell(c.Index.ToString(CultureInfo.InvariantCulture)).Cell(X86OperatingMode.Describe(c))
                    .Raw("<td class=\"mono\">").Link($"/s/{s.Index}/mem?space=va&cpu={c.Index}&addr=0x{c.Rip:x}", Hex.Of(c.Rip)).Raw("</td>")
                    .Cell(WebMemoryRead.SymbolAt(kernel, c.Rip) ?? "", "mono").Cell(Hex.Of(c.Cr3), "mono").Cell(c.Halted switch { true => "yes", false => "no", null => "-" }).Raw("</tr>");
            }

            h.Raw("</table>");
            var decoded = m.Devices.Where(d => d.Decoded.Count > 0).ToList();
            h.Raw("<p class=\"muted\">").Number(m.Devices.Count).Raw(" device sections").Raw(decoded.Count > 0 ? ", decoded:" : "").Raw("</p>");
            if (decoded.Count > 0)
            {
                h.Raw("<table class=\"devices\"><tr><th>device</th><th>vmsd</th><th>decoded</th></tr>");
                foreach (DeviceState d in decoded)
                {
                    h.Raw("<tr>").Cell(d.Key, "mono").Cell($"{d.State?.VmsdName} v{d.State?.Version}").Cell(string.Join(", ", d.Decoded.Select(kv => $"{kv.Key}={kv.Value}")), "mono").Raw("</tr>");
                }

                h.Raw("</table>");
            }

            return true;
        }, Aborted).ConfigureAwait(false);
        h.Raw("</section>");
    }

    /// <summary>The run state and the pause/resume button of a running VM (swapped by htmx), or nothing for a snapshot.</summary>
    private async Task<string> StateFragmentAsync(WebSource s)
    {
        if (!s.IsLive)
        {
            return string.Empty;
        }

        string state = await s.UseAsync(async vm => vm.TryGet(out ILiveControl? c) ? WebApi.Name(await c.GetRunStateAsync(Aborted).ConfigureAwait(false)) : "unknown", Aborted).ConfigureAwait(false);
        var h = new Html();
        bool running = state == "running";
        string action = running ? "pause" : "resume";
        h.Raw("<span class=\"state\" id=\"state-").Number(s.Index).Raw("\">— <b class=\"").Raw(running ? "ok" : "err").Raw("\">").Text(state).Raw("</b> ")
            .Raw("<button hx-post=\"/s/").Number(s.Index).Raw('/' + action + "\" hx-target=\"#state-").Number(s.Index).Raw("\" hx-swap=\"outerHTML\">").Raw(action).Raw("</button></span>");
        return h.ToString();
    }

    private async Task LinuxAsync(WebSource s)
    {
        var h = new Html();
        await s.UseAsync(vm =>
        {
            LinuxKernel? k = s.TryKernel(vm, out string? error);
            if (k is null)
            {
                h.Raw("<section><p class=\"err\">no Linux kernel found: ").Text(error).Raw("</p></section>");
                return true;
            }

            h.Raw("<section><h2>Kernel</h2><pre class=\"kernel-info\">").Text(KernelInfoText.Format(k, KernelSummary.Read(k))).Raw("</pre><p>").Link($"/api/s/{s.Index}/kernel-info", "JSON").Raw("</p></section>");
            IReadOnlyList<LinuxProcess> processes = vm.Linux.Processes();
            h.Raw("<section><h2>Processes (").Number(processes.Count).Raw(")</h2>")
                .Raw("<p><input type=\"search\" name=\"q\" placeholder=\"filter: name, pid, command line\" value=\"").Text(Query["q"].ToString()).Raw("\" hx-get=\"/s/").Number(s.Index)
                .Raw("/linux/ps\" hx-trigger=\"input changed delay:200ms, search\" hx-target=\"#ps\" hx-swap=\"outerHTML\" hx-include=\"this\"> ")
                .Link($"/api/s/{s.Index}/ps", "JSON").Raw("</p>");
            h.Raw(ProcessTable(s, processes).ToString());
            h.Raw("<details><summary>Tree</summary><ul class=\"tree\">");
            foreach (ProcessTreeNode root in vm.Linux.ProcessTree())
            {
                Tree(h, s, root, 0);
            }

            h.Raw("</ul></details></section>");
            Section(h, "Modules", $"/api/s/{s.Index}/modules", ["name", "size", "refs", "state", "base"],
                vm.Linux.Modules().Select(m => new[] { m.Name, m.Size.ToString(CultureInfo.InvariantCulture), m.References.ToString(CultureInfo.InvariantCulture), m.State, Hex.Of(m.Base) }));
            Section(h, "Network devices", $"/api/s/{s.Index}/netdev", ["idx", "name", "MAC", "state", "MTU", "flags"],
                vm.Linux.NetDevices().Select(d => new[] { d.IfIndex.ToString(CultureInfo.InvariantCulture), d.Name, d.Mac, d.Up ? "UP" : "DOWN", d.Mtu.ToString(CultureInfo.InvariantCulture), Hex.Of((ulong)d.Flags) }));
            IReadOnlyList<KernelLogRecord> log = vm.Linux.KernelLog();
            ulong last = log.Count > 0 ? log[^1].Sequence : 0;
            h.Raw("<section><h2>Kernel log (").Number(log.Count).Raw(" records").Raw(vm.IsLive ? ", live" : string.Empty).Raw(")</h2><p>").Link($"/api/s/{s.Index}/dmesg", "JSON").Raw("</p><pre class=\"log\" id=\"log\"");
            if (vm.IsLive)
            {
                h.Raw(" data-events=\"/s/").Number(s.Index).Raw("/linux/log/events?after=").Raw(last.ToString(CultureInfo.InvariantCulture)).Raw("\"");
            }

            h.Raw(">");
            foreach (KernelLogRecord r in log)
            {
                h.Text(r.Format()).Raw("\n");
            }

            h.Raw("</pre></section>");
            return true;
        }, Aborted).ConfigureAwait(false);
        await PageAsync($"Linux — source {s.Index}", s, h).ConfigureAwait(false);
    }

    private static void Tree(Html h, WebSource s, ProcessTreeNode node, int depth)
    {
        LinuxProcess p = node.Process;
        h.Raw("<li>").Link($"/s/{s.Index}/proc/{p.Pid}", $"{p.Name}({p.Pid})").Raw(p.Uid != 0 ? $" <span class=\"muted\">uid {p.Uid}</span>" : string.Empty);
        if (node.Children.Count > 0 && depth < ProcessTree.MaxDepth)
        {
            h.Raw("<ul>");
            foreach (ProcessTreeNode c in node.Children)
            {
                Tree(h, s, c, depth + 1);
            }

            h.Raw("</ul>");
        }

        h.Raw("</li>");
    }

    private static void Section(Html h, string title, string json, string[] columns, IEnumerable<string[]> rows)
    {
        h.Raw("<section><h2>").Text(title).Raw("</h2><p>").Link(json, "JSON").Raw("</p><table><tr>");
        foreach (string c in columns)
        {
            h.Element("th", c);
        }

        h.Raw("</tr>");
        foreach (string[] row in rows)
        {
            h.Raw("<tr>");
            foreach (string cell in row)
            {
                h.Cell(cell, "mono");
            }

            h.Raw("</tr>");
        }

        h.Raw("</table></section>");
    }

    private static readonly string[] s_sortable = ["pid", "ppid", "uid", "state", "name", "threads", "start"];

    /// <summary>The process table, sorted (<c>?sort=</c>, <c>-</c> prefix for descending) and filtered (<c>?q=</c>).</summary>
    private Html ProcessTable(WebSource s, IReadOnlyList<LinuxProcess> processes)
    {
        string sort = Query["sort"].ToString();
        bool descending = sort.StartsWith('-');
        string key = descending ? sort[1..] : sort;
        if (key.Length > 0 && !s_sortable.Contains(key))
        {
            throw new WebRequestException(400, $"sort {WebParameters.Shown(sort)}: expected one of {string.Join(", ", s_sortable)} (with - for descending)");
        }

        string filter = Query["q"].ToString();
        if (filter.Length > 200)
        {
            throw new WebRequestException(400, "q is longer than 200 characters");
        }

        IEnumerable<LinuxProcess> rows = processes;
        if (filter.Length > 0)
        {
            rows = rows.Where(p => p.Name.Contains(filter, StringComparison.OrdinalIgnoreCase) || (p.Cmdline?.Contains(filter, StringComparison.OrdinalIgnoreCase) ?? false)
                || p.Pid.ToString(CultureInfo.InvariantCulture) == filter);
        }

        Func<LinuxProcess, IComparable> by = key switch
        {
            "ppid" => p => p.Ppid,
            "uid" => p => p.Uid,
            "state" => p => p.State,
            "name" => p => p.Name,
            "threads" => p => p.Threads,
            "start" => p => p.StartTimeNs,
            _ => p => p.Pid,
        };
        rows = descending ? rows.OrderByDescending(by).ThenBy(p => p.Pid) : rows.OrderBy(by).ThenBy(p => p.Pid);
        var h = new Html();
        h.Raw("<table id=\"ps\" class=\"ps\"><tr>");
        foreach ((string col, string title, bool num) in (ReadOnlySpan<(string, string, bool)>)[("pid", "PID", true), ("ppid", "PPID", true), ("uid", "UID", true), ("state", "S", false), ("start", "START", true), ("threads", "THR", true), ("name", "NAME", false)])
        {
            string next = key == col && !descending ? "-" + col : col;
            string url = $"/s/{s.Index}/linux/ps?sort={next}&q={Html.Url(filter)}";
            h.Raw(num ? "<th class=\"n\">" : "<th>").Raw("<a href=\"").Text($"/s/{s.Index}/linux?sort={next}&q={Html.Url(filter)}").Raw("\" hx-get=\"").Text(url).Raw("\" hx-target=\"#ps\" hx-swap=\"outerHTML\">").Text(title)
                .Raw(key == col || (key.Length == 0 && col == "pid") ? (descending ? " ▼" : " ▲") : string.Empty).Raw("</a></th>");
        }

        h.Raw("<th>COMMAND</th></tr>");
        foreach (LinuxProcess p in rows)
        {
            h.Raw("<tr><td class=\"n\">").Link($"/s/{s.Index}/proc/{p.Pid}", p.Pid.ToString(CultureInfo.InvariantCulture)).Raw("</td>")
                .Cell(p.Ppid.ToString(CultureInfo.InvariantCulture), "n").Cell(p.Uid.ToString(CultureInfo.InvariantCulture), "n").Cell(p.State.ToString())
                .Cell((p.StartTimeNs / 1e9).ToString("F2", CultureInfo.InvariantCulture), "n").Cell(p.Threads.ToString(CultureInfo.InvariantCulture), "n")
                .Raw("<td>").Link($"/s/{s.Index}/proc/{p.Pid}", p.Name).Raw("</td>").Cell(p.Cmdline ?? (p.IsKernelThread ? $"[{p.Name}]" : string.Empty), "mono").Raw("</tr>");
        }

        h.Raw("</table>");
        return h;
    }

    private async Task ProcessAsync(WebSource s, int pid)
    {
        var h = new Html();
        await s.UseAsync(vm =>
        {
            LinuxProcess p = vm.Linux.Processes().FirstOrDefault(x => x.Pid == pid)
                ?? throw new WebRequestException(404, $"the guest has no process {pid}");
            h.Raw("<section><h1>").Text(p.Name).Raw(" (pid ").Number(p.Pid).Raw(")</h1><p>ppid ").Link($"/s/{s.Index}/proc/{p.Ppid}", p.Ppid.ToString(CultureInfo.InvariantCulture))
                .Raw(", uid ").Number(p.Uid).Raw(", gid ").Number(p.Gid).Raw(", state ").Text(p.State.ToString()).Raw(", ").Number(p.Threads).Raw(" thread(s), task_struct ").Hex(p.TaskAddress).Raw("</p>");
            if (p.Cmdline is string cmd)
            {
                h.Raw("<p>command line: <span class=\"mono cmdline\">").Text(cmd).Raw("</span></p>");
            }

            if (p.IsKernelThread)
            {
                h.Raw("<p class=\"muted\">a kernel thread: no user memory</p></section>");
                return true;
            }

            IReadOnlyList<LinuxVma> maps = vm.Linux.Maps(pid);
            h.Raw("<p>").Link($"/s/{s.Index}/proc/{pid}/core", "download core").Raw(" (an ELF core for gdb, as vmstate procdump writes it) · ")
                .Link($"/api/s/{s.Index}/proc/{pid}/maps", "maps JSON").Raw(" · ").Link($"/api/s/{s.Index}/proc/{pid}/threads", "threads JSON").Raw("</p></section>");
            ulong largest = maps.Count == 0 ? 1 : maps.Max(v => v.End - v.Start);
            h.Raw("<section><h2>Memory map (").Number(maps.Count).Raw(" VMAs; bar length to scale with the largest, ").Text(Hex.Size(largest)).Raw(")</h2><table class=\"maps\"><tr><th>start</th><th>end</th><th>perms</th><th class=\"n\">size</th><th style=\"width:30%\"></th><th>name</th></tr>");
            foreach (LinuxVma v in maps)
            {
                ulong size = v.End - v.Start;
                double pct = Math.Max(0.2, 100.0 * size / largest);
                string cls = v.Executable ? "bar x" : v.Shared ? "bar s" : v.Writable ? "bar w" : "bar";
                h.Raw("<tr><td class=\"mono\">").Link($"/s/{s.Index}/mem?space=va&pid={pid}&addr=0x{v.Start:x}", v.Start.ToString("x", CultureInfo.InvariantCulture)).Raw("</td>")
                    .Cell(v.End.ToString("x", CultureInfo.InvariantCulture), "mono").Cell(v.Permissions, "mono").Cell(Hex.Size(size), "n")
                    .Raw("<td><div class=\"").Raw(cls).Raw("\" style=\"width:").Raw(pct.ToString("F2", CultureInfo.InvariantCulture)).Raw("%\"></div></td>")
                    .Cell(v.Name, "mono").Raw("</tr>");
            }

            h.Raw("</table></section><section><h2>Threads</h2>");
            foreach (ThreadUserRegisters t in ProcessCore.ThreadRegisters(vm.Linux.Kernel, pid))
            {
                h.Raw("<h3>thread ").Number(t.Tid).Raw(" <span class=\"muted\">(registers from ").Text(t.Source).Raw(")</span></h3><table class=\"regs\"><tr>");
                for (int i = 0; i < t.Registers.Count && i < X86Registers.UserRegs.Count; i++)
                {
                    if (i > 0 && i % 4 == 0)
                    {
                        h.Raw("</tr><tr>");
                    }

                    h.Element("th", X86Registers.UserRegs[i].Name).Cell($"{t.Registers[i]:x16}", "mono");
                }

                h.Raw("</tr></table>");
            }

            h.Raw("</section>");
            return true;
        }, Aborted).ConfigureAwait(false);
        await PageAsync($"Process {pid} — source {s.Index}", s, h).ConfigureAwait(false);
    }

    /// <summary>
    /// <c>procdump</c> as a download: the core is written to a private temporary directory (the writer seeks; a
    /// response cannot), sent, and deleted.
    /// </summary>
    private async Task CoreAsync(WebSource s, int pid)
    {
        DirectoryInfo dir = Directory.CreateTempSubdirectory("vmstate-serve-core-");
        try
        {
            string path = Path.Combine(dir.FullName, "core");
            ProcessCoreSummary summary = await s.UseAsync(vm => ProcessCore.Write(vm.Linux.Kernel, pid, path, cancellationToken: Aborted), Aborted).ConfigureAwait(false);
            context.Response.ContentType = "application/octet-stream";
            string name = new string(summary.Comm.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_').ToArray());
            context.Response.Headers.ContentDisposition = $"attachment; filename=\"core.{pid}.{name}\"";
            await using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, useAsync: true);
            context.Response.ContentLength = file.Length;
            await file.CopyToAsync(context.Response.Body, Aborted).ConfigureAwait(false);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    private async Task MemoryAsync(WebSource s)
    {
        bool physical = WebParameters.IsPhysical(Query["space"]);
        ulong addr = WebParameters.Address(Query["addr"].Count == 0 ? "0" : Query["addr"].ToString(), "addr");
        int len = WebParameters.Length(Query["len"], 256, WebParameters.MaxPageLength);
        WebParameters.CheckRange(addr, len);
        int? pid = Query.ContainsKey("pid") && Query["pid"].ToString().Length > 0 ? WebParameters.Pid(Query["pid"]) : null;
        int cpu = Query.ContainsKey("cpu") && Query["cpu"].ToString().Length > 0 ? WebParameters.SmallNumber(Query["cpu"], "cpu", 4095) : 0;
        if (physical && pid is not null)
        {
            throw new WebRequestException(400, "pid goes with space=va (a process's virtual addresses)");
        }

        var h = new Html();
        await s.UseAsync(vm =>
        {
            LinuxKernel? kernel = physical ? null : s.TryKernel(vm, out _);
            WebMemoryRead r = WebMemoryRead.Read(vm, physical, pid, cpu, addr, len);
            string common = $"/s/{s.Index}/mem?space={(physical ? "pa" : "va")}{(pid is int pp ? $"&pid={pp}" : physical ? string.Empty : $"&cpu={cpu}")}&len={len}";
            h.Raw("<section><form method=\"get\" action=\"/s/").Number(s.Index).Raw("/mem\"><select name=\"space\"><option value=\"va\"").Raw(physical ? "" : " selected").Raw(">virtual</option><option value=\"pa\"")
                .Raw(physical ? " selected" : "").Raw(">physical</option></select> addr <input name=\"addr\" class=\"mono\" size=\"20\" value=\"").Hex(addr).Raw("\"> len <input name=\"len\" size=\"8\" value=\"").Number(len)
                .Raw("\"> pid <input name=\"pid\" size=\"7\" value=\"").Raw(pid?.ToString(CultureInfo.InvariantCulture) ?? string.Empty).Raw("\"> cpu <input name=\"cpu\" size=\"3\" value=\"").Number(cpu).Raw("\"> <button>read</button></form><p>");
            if (addr >= (ulong)len)
            {
                h.Link($"{common}&addr=0x{addr - (ulong)len:x}", "◀ previous").Raw(" · ");
            }

            if (addr <= ulong.MaxValue - (2 * (ulong)len) + 1)
            {
                h.Link($"{common}&addr=0x{addr + (ulong)len:x}", "next ▶").Raw(" · ");
            }

            h.Link($"/api/s/{s.Index}/mem?space={(physical ? "pa" : "va")}&addr=0x{addr:x}&len={len}{(pid is int jp ? $"&pid={jp}" : string.Empty)}", "JSON").Raw("</p>");
            h.Raw("<p>").Text(physical ? "guest-physical" : pid is int wp ? $"virtual, process {wp}'s page tables" : $"virtual, vCPU {cpu}'s page tables")
                .Raw(" — read ").Number(r.Data.Length).Raw(" of ").Number(len).Raw(" bytes").Raw(r.Stopped is null ? string.Empty : "; ").Text(r.Stopped).Raw("</p></section>");
            if (r.Space is AddressSpace space)
            {
                Translation t = space.Translate(addr);
                h.Raw("<section><h2>Translation of ").Hex(addr).Raw("</h2><p>").Text($"mode {space.Mode}, CR3 {Hex.Of(space.Cr3)}").Raw("</p><table class=\"translation\"><tr><th>level</th><th>entry at</th><th>value</th><th>flags</th></tr>");
                foreach (PagingEntry e in t.Entries)
                {
                    string flags = e.Present ? $"{(e.Writable ? "W" : "-")}{(e.User ? "U" : "-")}{(e.PageSize ? "PS" : "--")}{(e.NoExecute ? " NX" : string.Empty)}" : "not present";
                    h.Raw("<tr>").Cell(e.Level).Cell(Hex.Of(e.Address), "mono").Cell(Hex.Of(e.Value), "mono").Cell(flags).Raw("</tr>");
                }

                h.Raw("</table><p>").Text(t.PhysicalAddress is ulong pa ? $"→ physical {Hex.Of(pa)} ({Hex.Size(t.PageSize)} page)" : $"not mapped: {t.Failure}").Raw("</p></section>");
            }

            h.Raw("<div class=\"cols\"><section><h2>Hexdump</h2><div class=\"hexdump\">");
            HexDump(h, kernel, addr, r.Data);
            h.Raw("</div></section><section><h2>Disassembly").Raw(r.Data.Length > WebMemoryRead.MaxDisassembly ? " (first 4 KiB)" : string.Empty).Raw("</h2><pre class=\"asm\">");
            foreach (WebMemoryRead.Instruction i in r.Disassemble(kernel))
            {
                if (i.Label is string label)
                {
                    h.Raw("<b>").Text(label).Raw(":</b>\n");
                }

                h.Text($"{i.Address:x16}  {i.Bytes,-24} {i.Text}").Raw("\n");
            }

            h.Raw("</pre></section></div>");
            return true;
        }, Aborted).ConfigureAwait(false);
        await PageAsync($"Memory — source {s.Index}", s, h).ConfigureAwait(false);
    }

    /// <summary>
    /// The CLI's hexdump (<c>vmstate read</c>), a kernel symbol beside each line that starts one; in blocks of 4 KiB
    /// (<c>content-visibility: auto</c>, so a browser lays out only the blocks in view of a 64 KiB dump).
    /// </summary>
    private static void HexDump(Html h, LinuxKernel? kernel, ulong address, byte[] data)
    {
        var line = new StringBuilder(96);
        h.Raw("<pre>");
        for (int i = 0; i < data.Length; i += 16)
        {
            if (i > 0 && i % 4096 == 0)
            {
                h.Raw("</pre><pre>");
            }

            Hex.DumpLine(line, address, data, i);
            h.Text(line.ToString());
            if (kernel is not null && address + (ulong)i >= 0xffff_8000_0000_0000 && WebMemoryRead.SymbolAt(kernel, address + (ulong)i) is string sym && !sym.Contains('+', StringComparison.Ordinal))
            {
                h.Raw(" <b>").Text(sym).Raw("</b>");
            }

            h.Raw("\n");
        }

        h.Raw("</pre>");
    }

    /// <summary>The live kernel log: new records as server-sent events (<c>event: line</c>) until the client goes.</summary>
    private async Task LogEventsAsync(WebSource s)
    {
        if (!s.IsLive)
        {
            throw new WebRequestException(409, "a snapshot's kernel log does not change: only running VMs have a live tail");
        }

        ulong after = Query.ContainsKey("after") ? WebParameters.Address(Query["after"], "after") : 0;
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
        await context.Response.Body.FlushAsync(Aborted).ConfigureAwait(false);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(Aborted, server.Stopping);
        CancellationToken token = linked.Token;
        while (!token.IsCancellationRequested)
        {
            IReadOnlyList<KernelLogRecord> records = await s.UseAsync(vm => KernelLog.Read(vm.Linux.Kernel), token).ConfigureAwait(false);
            var sb = new StringBuilder();
            foreach (KernelLogRecord r in records)
            {
                if (r.Sequence > after)
                {
                    // One data line per event: the record's text has its control characters (a newline would end the
                    // field) escaped the way the CLI shows them.
                    sb.Append("event: line\ndata: ").Append(TerminalText.Escape(r.Format())).Append("\n\n");
                    after = r.Sequence;
                }
            }

            sb.Append(": ping\n\n");
            await context.Response.WriteAsync(sb.ToString(), token).ConfigureAwait(false);
            await context.Response.Body.FlushAsync(token).ConfigureAwait(false);
            await Task.Delay(server.Options.LogPollInterval, token).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// <c>/s/N/events?kind=exec</c> or <c>?kind=break&amp;symbol=NAME</c>: the live event stream of a running VM, its
    /// rows added by the page script from <c>/api/s/N/trace/KIND</c> (<see cref="WebTrace"/>) as the guest makes them.
    /// </summary>
    private async Task EventsAsync(WebSource s)
    {
        if (!s.IsLive)
        {
            throw new WebRequestException(409, s.Vm is null ? $"source {s.Index} is not a VM" : "a snapshot does not run: the live event stream is for running VMs");
        }

        string kind = Query["kind"].ToString();
        string? symbol = null;
        if (kind.Length > 0 && !WebTrace.IsKind(kind))
        {
            throw new WebRequestException(400, $"kind {WebParameters.Shown(kind)}: expected exec or break");
        }

        if (kind == "break")
        {
            symbol = WebParameters.Symbol(Query["symbol"]);
        }

        var h = new Html();
        h.Raw("<section><form method=\"get\" action=\"/s/").Number(s.Index).Raw("/events\"><label>events: <select name=\"kind\"><option value=\"exec\"")
            .Raw(kind == "break" ? string.Empty : " selected").Raw(">exec (programs started)</option><option value=\"break\"").Raw(kind == "break" ? " selected" : string.Empty)
            .Raw(">break (a kernel function's calls)</option></select></label> <label>symbol: <input name=\"symbol\" placeholder=\"do_sys_openat2\" value=\"").Text(symbol ?? string.Empty)
            .Raw("\"></label> <button>Trace</button></form>");
        if (!server.Options.AllowTrace)
        {
            h.Raw("<p class=\"err\">tracing inserts breakpoints into the guest: the server was started without --allow-trace</p></section>");
        }
        else if (kind.Length == 0)
        {
            h.Raw("<p class=\"muted\">a trace stops the guest for a moment at each event; it ends when this page is left</p></section>");
        }
        else
        {
            string api = kind == "exec" ? $"/api/s/{s.Index}/trace/exec" : $"/api/s/{s.Index}/trace/break?symbol={symbol}";
            string[] columns = kind == "exec" ? ["time", "pid", "ppid", "uid", "comm", "filename", "argv"] : ["time", "vcpu", "rip", "symbol", "pid", "comm"];
            h.Raw("<p id=\"trace-status\" class=\"muted\">starting the trace…</p><p>").Link(api, "event stream (API)").Raw("</p><table id=\"events\" class=\"events mono\" data-trace=\"").Text(api)
                .Raw("\" data-columns=\"").Text(string.Join(',', columns)).Raw("\"><thead><tr>");
            foreach (string c in columns)
            {
                h.Raw("<th>").Text(c).Raw("</th>");
            }

            h.Raw("</tr></thead><tbody></tbody></table></section>");
        }

        await PageAsync($"Events — source {s.Index}", s, h).ConfigureAwait(false);
    }

    private async Task TimeAsync(WebSource s)
    {
        var h = new Html();
        await s.UseStoreAsync(store =>
        {
            h.Raw("<section><h1>Timeline: ").Number(store.Captures.Count).Raw(" captures</h1><p>").Link($"/api/s/{s.Index}/captures", "JSON").Raw("</p>");
            h.Raw("<form method=\"get\" action=\"/s/").Number(s.Index).Raw("/diff\"><table class=\"captures\"><tr><th>from</th><th>to</th><th>#</th><th>time (UTC)</th><th>source</th><th class=\"n\">processes</th><th class=\"n\">changed</th><th class=\"n\">new</th><th class=\"n\">added</th></tr>");
            for (int i = 0; i < store.Captures.Count; i++)
            {
                HistoryCapture c = store.Captures[i];
                HistoryCaptureIndex? index = store.TryReadIndex(c);
                h.Raw("<tr><td><input type=\"radio\" name=\"a\" value=\"").Number(c.Number).Raw(i == Math.Max(0, store.Captures.Count - 2) ? "\" checked>" : "\">").Raw("</td><td><input type=\"radio\" name=\"b\" value=\"").Number(c.Number)
                    .Raw(i == store.Captures.Count - 1 ? "\" checked>" : "\">").Raw("</td>")
                    .Cell(c.Number.ToString(CultureInfo.InvariantCulture)).Cell(c.Time.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss.fff", CultureInfo.InvariantCulture)).Cell(Path.GetFileName(c.Source), "mono")
                    .Cell(index is null ? "-" : index.KernelError is null ? index.Processes.Count.ToString(CultureInfo.InvariantCulture) : "?", "n")
                    .Cell(c.ChangedPages.ToString(CultureInfo.InvariantCulture), "n").Cell(c.NewPages.ToString(CultureInfo.InvariantCulture), "n").Cell(Hex.Size((ulong)c.BytesAdded), "n").Raw("</tr>");
            }

            h.Raw("</table><p><button>diff</button></p></form></section>");
            return true;
        }, Aborted).ConfigureAwait(false);
        await PageAsync($"Time — source {s.Index}", s, h).ConfigureAwait(false);
    }

    private async Task DiffAsync(WebSource s)
    {
        var h = new Html();
        string a = Query["a"].ToString();
        string b = Query["b"].ToString();
        await s.UseStoreAsync(store =>
        {
            HistoryDiff d = store.Diff(WebApi.Capture(store, a, "a"), WebApi.Capture(store, b, "b"));
            h.Raw("<section><h1>Capture ").Number(d.From.Number).Raw(" → ").Number(d.To.Number).Raw("</h1><p>").Text(string.Create(CultureInfo.InvariantCulture, $"{(d.To.Time - d.From.Time).TotalSeconds:F1} s apart, {d.ChangedPages} pages changed"))
                .Raw(" · ").Link($"/api/s/{s.Index}/diff?a={d.From.Number}&b={d.To.Number}", "JSON").Raw("</p>");
            if (d.KernelError is string ke)
            {
                h.Raw("<p class=\"err\">").Text(ke).Raw("</p>");
            }

            foreach ((string what, IReadOnlyList<HistoryProcess> list) in (ReadOnlySpan<(string, IReadOnlyList<HistoryProcess>)>)[("Processes started", d.Started), ("Processes exited", d.Exited)])
            {
                h.Raw("<h2>").Text(what).Raw(" (").Number(list.Count).Raw(")</h2><ul>");
                foreach (HistoryProcess p in list)
                {
                    h.Raw("<li>").Text($"pid {p.Pid} {p.Name} (ppid {p.Ppid}, uid {p.Uid})").Raw("</li>");
                }

                h.Raw("</ul>");
            }

            foreach ((string what, IReadOnlyList<HistoryModule> list) in (ReadOnlySpan<(string, IReadOnlyList<HistoryModule>)>)[("Modules loaded", d.Loaded), ("Modules unloaded", d.Unloaded)])
            {
                h.Raw("<h2>").Text(what).Raw(" (").Number(list.Count).Raw(")</h2><ul>");
                foreach (HistoryModule m in list)
                {
                    h.Raw("<li>").Text($"{m.Name} at 0x{m.Base:x}, {m.Size} bytes").Raw("</li>");
                }

                h.Raw("</ul>");
            }

            h.Raw("<h2>New kernel log lines (").Number(d.NewLogLines.Count).Raw(")</h2><pre class=\"log\">");
            foreach (HistoryLogLine l in d.NewLogLines)
            {
                h.Text(l.Format()).Raw("\n");
            }

            h.Raw("</pre>");
            if (d.ProcessPagesError is null)
            {
                h.Raw("<h2>Changed pages per process</h2><table><tr><th>pid</th><th>process</th><th class=\"n\">changed</th><th class=\"n\">mapped</th></tr>");
                foreach (HistoryProcessPages p in d.ProcessPages.Where(p => p.ChangedPages > 0))
                {
                    h.Raw("<tr>").Cell(p.Pid.ToString(CultureInfo.InvariantCulture)).Cell(p.Name).Cell(p.ChangedPages.ToString(CultureInfo.InvariantCulture), "n").Cell(p.MappedPages.ToString(CultureInfo.InvariantCulture), "n").Raw("</tr>");
                }

                h.Raw("</table><p>kernel and unmapped: ").Number(d.KernelChangedPages).Raw(" pages</p>");
            }

            h.Raw("</section>");
            return true;
        }, Aborted).ConfigureAwait(false);
        await PageAsync($"Diff — source {s.Index}", s, h).ConfigureAwait(false);
    }

    private Task PageAsync(string title, WebSource? source, Html body)
    {
        var h = new Html();
        h.Raw("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\"><title>").Text(title).Raw(" — vmstate</title><style>").Raw(Style)
            .Raw("</style><script src=\"/assets/htmx.min.js\"></script><script src=\"/assets/vmstate.js\"></script></head><body><header><b>vmstate</b><a href=\"/\">Machines</a>");
        if (source is not null)
        {
            h.Raw("<span>source ").Number(source.Index).Raw(":</span>");
            if (source.Store is not null)
            {
                h.Link($"/s/{source.Index}", "Time");
            }
            else
            {
                h.Link($"/s/{source.Index}", "Machine").Raw(" ").Link($"/s/{source.Index}/linux", "Linux").Raw(" ").Link($"/s/{source.Index}/mem?space=pa&addr=0x0", "Memory");
                if (source.IsLive)
                {
                    h.Raw(" ").Link($"/s/{source.Index}/events", "Events");
                }
            }
        }

        h.Raw("</header><main><h1>").Text(title).Raw("</h1>").Raw(body.ToString()).Raw("</main></body></html>");
        return WebServer.WriteHtmlAsync(context, h.ToString());
    }
}
