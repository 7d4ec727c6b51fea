using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using VmState.History;
using VmState.Views;
using VmState.IO;

namespace VmState.Cli.Commands;

/// <summary>
/// <c>vmstate history</c>: a store of many captures of a VM, deduplicated page by page (<see cref="HistoryStore"/>):
/// <c>import</c>, <c>list</c>, <c>verify</c>, <c>export</c>, <c>diff</c>, <c>find</c>, <c>rollback</c>. Every other command opens a
/// capture as <c>STORE@N</c>.
/// </summary>
internal static class HistoryCommand
{
    public static Command Create()
    {
        var command = new Command("history", "Keep many captures of a VM in one deduplicated store; any command opens one as STORE@N");
        command.Subcommands.Add(Import());
        command.Subcommands.Add(List());
        command.Subcommands.Add(Verify());
        command.Subcommands.Add(Export());
        command.Subcommands.Add(Diff());
        command.Subcommands.Add(Find());
        command.Subcommands.Add(Rollback());
        command.Subcommands.Add(Prune());
        return command;
    }

    /// <summary>The STORE argument: a history store directory.</summary>
    private static Argument<string> StoreArgument() => new("STORE") { Description = "the store directory" };

    /// <summary>The CAPTURE argument: STORE@N (see <see cref="CaptureReference"/>).</summary>
    private static Argument<string> CaptureArgument() => new("CAPTURE") { Description = "STORE@N: the capture (N, -1 for the latest, or a time)" };

    /// <summary>The store directory and capture selector of a CAPTURE argument.</summary>
    private static (string Dir, string Selector) CaptureReference(string reference) =>
        HistoryStore.TryParseReference(reference, out string dir, out string selector)
            ? (dir, selector)
            : throw new ArgumentException($"{reference} is not STORE@N (a history store directory, '@', a capture number, -1 or a time)");

    /// <summary>A subcommand on one STORE, with --json: <paramref name="run"/> gets the store opened and the --json value.</summary>
    private static Command StoreCommand(string name, string description, Func<HistoryStore, bool, int> run)
    {
        Argument<string> store = StoreArgument();
        Option<bool> json = CommonOptions.Json();
        var command = new Command(name, description);
        command.Arguments.Add(store);
        command.Options.Add(json);
        command.SetAction(r => CommonOptions.Run(() =>
        {
            using HistoryStore s = HistoryStore.Open(r.GetValue(store)!);
            return run(s, r.GetValue(json));
        }));
        return command;
    }

    private static Command Import()
    {
        var inputs = new Argument<string[]>("SNAPSHOT") { Description = "migration stream files, virsh save files or qcow2 images (their internal snapshot)", Arity = ArgumentArity.OneOrMore };
        var store = new Option<string>("--store") { Description = "the store directory (created when it does not exist)", Required = true };
        Option<string?> snapshot = CommonOptions.SnapshotName();
        Option<bool> json = CommonOptions.Json();
        var command = new Command("import", "Add snapshot files to a history store, one capture each, in the order given");
        command.Arguments.Add(inputs);
        command.Options.Add(store);
        command.Options.Add(snapshot);
        command.Options.Add(json);
        command.SetAction(r => CommonOptions.Run(() =>
        {
            using var cancel = new CancellationTokenSource();
            ConsoleCancelEventHandler onCancel = (_, e) =>
            {
                e.Cancel = true;
                cancel.Cancel();
            };
            Console.CancelKeyPress += onCancel;
            try
            {
                using HistoryStoreWriter writer = HistoryStoreWriter.Open(r.GetValue(store)!);
                var added = new List<HistoryCapture>();
                foreach (string path in r.GetValue(inputs)!)
                {
                    long total = File.Exists(path) ? new FileInfo(path).Length : 0;
                    var progress = new Reporter(done => Console.Error.Write(string.Create(CultureInfo.InvariantCulture, $"\rvmstate: importing {path}: {Hex.Size((ulong)done)} of {Hex.Size((ulong)total)}   ")));
                    var clock = Stopwatch.StartNew();
                    HistoryCapture c = writer.Import(path, r.GetValue(snapshot), Console.IsErrorRedirected ? null : progress, cancel.Token);
                    double seconds = clock.Elapsed.TotalSeconds;
                    Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{(Console.IsErrorRedirected ? "" : "\r")}vmstate: imported {path} as capture {c.Number}: {c.NewPages} new pages, {Hex.Size((ulong)c.BytesAdded)} added, {seconds:F2} s ({c.StreamBytes / Math.Max(seconds, 1e-6) / (1 << 20):F0} MiB/s)"));
                    added.Add(c);
                }

                if (r.GetValue(json))
                {
                    CommonOptions.WriteJson(w =>
                    {
                        w.WriteStartObject();
                        w.WriteString("store", writer.Directory);
                        w.WriteNumber("uniquePages", writer.UniquePages);
                        WriteCaptures(w, "imported", added);
                        w.WriteEndObject();
                    });
                }
                else
                {
                    Render(added);
                }

                return 0;
            }
            finally
            {
                Console.CancelKeyPress -= onCancel;
            }
        }));
        return command;
    }

    private static Command List() => StoreCommand("list", "List the captures of a history store: time, source, pages changed since the previous capture, unique pages and bytes it added", (s, json) =>
    {
        if (json)
        {
            CommonOptions.WriteJson(w => WriteStore(s, w));
        }
        else
        {
            Render(s.Captures, s.TryReadIndex);
            long added = 0;
            long streams = 0;
            foreach (HistoryCapture c in s.Captures)
            {
                added += c.BytesAdded;
                streams += c.StreamBytes;
            }

            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{s.Captures.Count} captures, {s.UniquePages} unique pages, {Hex.Size((ulong)added)} stored for {Hex.Size((ulong)streams)} of streams"));
        }

        return 0;
    });

    private static Command Verify() => StoreCommand("verify", "Check every page hash and every reference of a history store; exit 2 when anything is damaged", (s, json) =>
    {
        HistoryVerifyResult v = s.Verify();
        if (json)
        {
            CommonOptions.WriteJson(w =>
            {
                w.WriteStartObject();
                w.WriteString("store", s.Directory);
                w.WriteBoolean("sound", v.IsSound);
                w.WriteNumber("captures", v.Captures);
                w.WriteNumber("capturesChecked", v.CapturesChecked);
                w.WriteNumber("pages", v.Pages);
                w.WriteNumber("pagesChecked", v.PagesChecked);
                w.WriteStartArray("problems");
                foreach (string p in v.Problems)
                {
                    w.WriteStringValue(p);
                }

                w.WriteEndArray();
                w.WriteEndObject();
            });
        }
        else
        {
            Console.WriteLine(v.IsSound
                ? string.Create(CultureInfo.InvariantCulture, $"{v.CapturesChecked} of {v.Captures} captures and {v.PagesChecked} of {v.Pages} pages verified")
                : string.Create(CultureInfo.InvariantCulture, $"damaged: {v.Problems.Count} problems; {v.CapturesChecked} of {v.Captures} capture files and {v.PagesChecked} of {v.Pages} pages sound"));
        }

        foreach (string p in v.Problems)
        {
            Console.Error.WriteLine($"vmstate: damaged: {TerminalText.Escape(p)}");
        }

        return v.IsSound ? 0 : 2;
    });

    private static Command Export()
    {
        var capture = CaptureArgument();
        var output = new Option<string>("--output", "-o") { Description = "the migration stream to write (QEMU resumes it with -incoming)", Required = true };
        Option<bool> json = CommonOptions.Json();
        var command = new Command("export", "Write a capture of a history store as a migration stream QEMU resumes");
        command.Arguments.Add(capture);
        command.Options.Add(output);
        command.Options.Add(json);
        command.SetAction(r => CommonOptions.Run(() =>
        {
            (string dir, string selector) = CaptureReference(r.GetValue(capture)!);

            using HistoryStore s = HistoryStore.Open(dir);
            HistoryCapture c = s.Find(selector);
            string path = r.GetValue(output)!;
            var inputs = new List<string> { Path.Combine(s.Directory, "manifest") };
            inputs.AddRange(Directory.EnumerateFiles(s.Directory));
            long written = 0;
            OutputFile.Write(path, OutputRules.ForInputs(inputs), stream =>
            {
                using var buffered = new BufferedStream(stream, 1 << 20);
                s.Export(c, buffered);
                buffered.Flush();
                written = stream.Position;
            });
            if (r.GetValue(json))
            {
                CommonOptions.WriteJson(w =>
                {
                    w.WriteStartObject();
                    w.WriteString("output", Path.GetFullPath(path));
                    w.WriteNumber("capture", c.Number);
                    w.WriteString("time", Time(c));
                    w.WriteNumber("bytes", written);
                    w.WriteEndObject();
                });
            }
            else
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wrote capture {c.Number} ({c.Time:yyyy-MM-dd HH:mm:ss}Z) to {path}: {Hex.Size((ulong)written)}"));
            }

            return 0;
        }));
        return command;
    }

    /// <summary>Two captures of one store: <c>STORE A B</c> or <c>STORE@A STORE@B</c>.</summary>
    private static (string Dir, string A, string B) TwoCaptures(string[] args)
    {
        if (args.Length == 3)
        {
            return (args[0], args[1], args[2]);
        }

        if (args.Length == 2 && HistoryStore.TryParseReference(args[0], out string da, out string a) && HistoryStore.TryParseReference(args[1], out string db, out string b))
        {
            if (Path.GetFullPath(da) != Path.GetFullPath(db))
            {
                throw new ArgumentException($"{args[0]} and {args[1]} are captures of two stores; diff compares captures of one");
            }

            return (da, a, b);
        }

        throw new ArgumentException("give STORE A B (capture numbers, -1 for the latest, or times) or STORE@A STORE@B");
    }

    private static Command Diff()
    {
        var args = new Argument<string[]>("CAPTURES") { Description = "STORE A B, or STORE@A STORE@B (capture numbers, -1 for the latest, or times)", Arity = new ArgumentArity(2, 3) };
        var noPages = new Option<bool>("--no-process-pages") { Description = "skip the changed pages per process (which walks every process's page tables in B)" };
        var lines = new Option<int>("--lines") { Description = "new kernel log lines to print (text output; --json has them all)", DefaultValueFactory = _ => 20 };
        Option<bool> json = CommonOptions.Json();
        var command = new Command("diff", "What changed between two captures: processes started and exited, modules, network devices, new kernel log lines, changed pages per process and for the kernel");
        command.Arguments.Add(args);
        command.Options.Add(noPages);
        command.Options.Add(lines);
        command.Options.Add(json);
        command.SetAction(r => CommonOptions.Run(() =>
        {
            (string dir, string a, string b) = TwoCaptures(r.GetValue(args)!);
            using HistoryStore s = HistoryStore.Open(dir);
            HistoryDiff d = s.Diff(s.Find(a), s.Find(b), processPages: !r.GetValue(noPages));
            if (r.GetValue(json))
            {
                CommonOptions.WriteJson(w => WriteDiff(w, s, d));
            }
            else
            {
                RenderDiff(d, r.GetValue(lines));
            }

            return 0;
        }));
        return command;
    }

    private static void RenderDiff(HistoryDiff d, int maxLines)
    {
        var o = Console.Out;
        o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"capture {d.From.Number} ({d.From.Time:yyyy-MM-dd HH:mm:ss.fff}Z) -> capture {d.To.Number} ({d.To.Time:yyyy-MM-dd HH:mm:ss.fff}Z), {(d.To.Time - d.From.Time).TotalSeconds:F1} s"));
        if (d.KernelError is string ke)
        {
            o.WriteLine($"kernel lists not known: {TerminalText.Escape(ke)}");
        }

        Processes(o, "processes started", d.Started);
        Processes(o, "processes exited", d.Exited);
        Modules(o, "modules loaded", d.Loaded);
        Modules(o, "modules unloaded", d.Unloaded);
        foreach ((string what, IReadOnlyList<HistoryNetDevice> list) in (ReadOnlySpan<(string, IReadOnlyList<HistoryNetDevice>)>)[("network devices added", d.NetDevicesAdded), ("network devices removed", d.NetDevicesRemoved), ("network devices changed", d.NetDevicesChanged)])
        {
            if (list.Count > 0)
            {
                o.WriteLine($"{what} ({list.Count}):");
                foreach (HistoryNetDevice n in list)
                {
                    o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {TerminalText.Escape(n.Name)} ifindex {n.IfIndex} mac {n.Mac} mtu {n.Mtu} flags 0x{n.Flags:x}"));
                }
            }
        }

        o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"new kernel log lines: {d.NewLogLines.Count}{(d.LogComplete ? "" : " (some lines were lost between captures: the ring buffer wrapped)")}"));
        int skip = Math.Max(0, d.NewLogLines.Count - Math.Max(0, maxLines));
        if (skip > 0)
        {
            o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  ... {skip} earlier lines (--lines N, or --json)"));
        }

        foreach (HistoryLogLine l in d.NewLogLines.Skip(skip))
        {
            o.WriteLine($"  {TerminalText.Escape(l.Format())}");
        }

        o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"pages changed: {d.ChangedPages}{(d.ProcessPagesError is null ? $" (kernel and unmapped: {d.KernelChangedPages})" : "")}"));
        if (d.ProcessPagesError is null)
        {
            var t = new Table().AddColumns("pid", "process", "changed", "mapped");
            foreach (HistoryProcessPages p in d.ProcessPages.Where(p => p.ChangedPages > 0))
            {
                t.AddRow(p.Pid.ToString(CultureInfo.InvariantCulture), TerminalText.Markup(p.Name), p.ChangedPages.ToString(CultureInfo.InvariantCulture), p.MappedPages.ToString(CultureInfo.InvariantCulture));
            }

            if (t.Rows.Count > 0)
            {
                AnsiConsole.Write(t);
            }
        }
        else if (d.ProcessPagesError != "not asked for")
        {
            o.WriteLine($"pages per process not known: {TerminalText.Escape(d.ProcessPagesError)}");
        }
    }

    private static void Processes(TextWriter o, string what, IReadOnlyList<HistoryProcess> list)
    {
        o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{what} ({list.Count}){(list.Count > 0 ? ":" : "")}"));
        foreach (HistoryProcess p in list)
        {
            o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  pid {p.Pid} {TerminalText.Escape(p.Name)} (ppid {p.Ppid}, uid {p.Uid}, started {p.StartTimeNs / 1e9:F2} s after boot{(p.IsKernelThread ? ", kernel thread" : "")})"));
        }
    }

    private static void Modules(TextWriter o, string what, IReadOnlyList<HistoryModule> list)
    {
        if (list.Count > 0)
        {
            o.WriteLine($"{what} ({list.Count}):");
            foreach (HistoryModule m in list)
            {
                o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {TerminalText.Escape(m.Name)} at 0x{m.Base:x}, {m.Size} bytes"));
            }
        }
    }

    /// <summary>The history diff --json document (also the web server's).</summary>
    internal static void WriteDiff(Utf8JsonWriter w, HistoryStore s, HistoryDiff d)
    {
        w.WriteStartObject();
        w.WriteString("store", s.Directory);
        w.WriteNumber("from", d.From.Number);
        w.WriteNumber("to", d.To.Number);
        w.WriteString("fromTime", Time(d.From));
        w.WriteString("toTime", Time(d.To));
        if (d.KernelError is string ke)
        {
            w.WriteString("kernelError", ke);
        }

        WriteList(w, "started", HistoryProcess.View, d.Started);
        WriteList(w, "exited", HistoryProcess.View, d.Exited);
        WriteList(w, "loaded", HistoryModule.View, d.Loaded);
        WriteList(w, "unloaded", HistoryModule.View, d.Unloaded);
        WriteList(w, "netDevicesAdded", HistoryNetDevice.View, d.NetDevicesAdded);
        WriteList(w, "netDevicesRemoved", HistoryNetDevice.View, d.NetDevicesRemoved);
        WriteList(w, "netDevicesChanged", HistoryNetDevice.View, d.NetDevicesChanged);
        w.WriteBoolean("logComplete", d.LogComplete);
        w.WriteStartArray("newLogLines");
        foreach (HistoryLogLine l in d.NewLogLines)
        {
            w.WriteStartObject();
            w.WriteNumber("sequence", l.Sequence);
            w.WriteNumber("timestampNs", l.TimestampNs);
            w.WriteNumber("level", l.Level);
            w.WriteString("text", l.Text);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteNumber("changedPages", d.ChangedPages);
        if (d.ProcessPagesError is null)
        {
            w.WriteNumber("kernelChangedPages", d.KernelChangedPages);
            w.WriteStartArray("processPages");
            foreach (HistoryProcessPages p in d.ProcessPages)
            {
                w.WriteStartObject();
                w.WriteNumber("pid", p.Pid);
                w.WriteString("name", p.Name);
                w.WriteNumber("changedPages", p.ChangedPages);
                w.WriteNumber("mappedPages", p.MappedPages);
                w.WriteEndObject();
            }

            w.WriteEndArray();
        }
        else
        {
            w.WriteString("processPagesError", d.ProcessPagesError);
        }

        w.WriteEndObject();
    }

    /// <summary>A named array of <paramref name="rows"/>, each as the rows' <see cref="ListView{T}"/> says.</summary>
    private static void WriteList<T>(Utf8JsonWriter w, string name, ListView<T> view, IReadOnlyList<T> rows)
    {
        w.WritePropertyName(name);
        ListJson.WriteArray(w, view, rows);
    }

    private static Command Find()
    {
        var store = StoreArgument();
        var process = new Option<string?>("--process") { Description = "a process of this name (comm or /proc name) or pid exists (from the indexes)" };
        var absent = new Option<bool>("--absent") { Description = "with --process: the process does not exist" };
        var symbol = new Option<string?>("--symbol") { Description = "a kernel symbol (name or name+offset) whose value is tested: --changed or --equals" };
        var size = new Option<int>("--size") { Description = "with --symbol: the value's size in bytes, 1-8 (default 8), little-endian", DefaultValueFactory = _ => 8 };
        var changed = new Option<bool>("--changed") { Description = "with --symbol: the value differs from the previous capture's" };
        var equals = new Option<string?>("--equals") { Description = "with --symbol: the value equals this number (0x hex or decimal)" };
        var bytes = new Option<string?>("--bytes") { Description = $"guest physical memory contains these bytes (hex digits, 1-{HistoryQuery.MaxPatternBytes} bytes; each unique page is searched once)" };
        var log = new Option<string?>("--log") { Description = "the kernel log holds a line matching this regular expression (from the indexes)" };
        Option<bool> json = CommonOptions.Json();
        var command = new Command("find", "The captures of a history store where a predicate holds, and the first of them; exit 1 when none does");
        command.Arguments.Add(store);
        foreach (Option o in (Option[])[process, absent, symbol, size, changed, equals, bytes, log, json])
        {
            command.Options.Add(o);
        }

        command.SetAction(r => CommonOptions.Run(() =>
        {
            int given = (r.GetValue(process) is null ? 0 : 1) + (r.GetValue(symbol) is null ? 0 : 1) + (r.GetValue(bytes) is null ? 0 : 1) + (r.GetValue(log) is null ? 0 : 1);
            if (given != 1)
            {
                throw new ArgumentException("give one predicate: --process NAME|PID [--absent], --symbol SYM (--changed | --equals V), --bytes HEX or --log REGEX");
            }

            using HistoryStore s = HistoryStore.Open(r.GetValue(store)!);
            var clock = Stopwatch.StartNew();
            HistoryFindResult result;
            if (r.GetValue(process) is string p)
            {
                result = HistoryQuery.Process(s, p, r.GetValue(absent));
            }
            else if (r.GetValue(symbol) is string sym)
            {
                if (r.GetValue(changed) == r.GetValue(equals) is not null)
                {
                    throw new ArgumentException("with --symbol give --changed or --equals V");
                }

                ulong? want = r.GetValue(equals) is string e ? AddressParser.Parse(e, "--equals value") : null;
                result = HistoryQuery.Symbol(s, sym, r.GetValue(size), want);
            }
            else if (r.GetValue(bytes) is string hex)
            {
                result = HistoryQuery.Bytes(s, SearchCommand.ParseHex(hex));
            }
            else
            {
                result = HistoryQuery.LogLine(s, new System.Text.RegularExpressions.Regex(r.GetValue(log)!, System.Text.RegularExpressions.RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1)));
            }

            double ms = clock.Elapsed.TotalMilliseconds;
            if (r.GetValue(json))
            {
                CommonOptions.WriteJson(w =>
                {
                    w.WriteStartObject();
                    w.WriteString("store", s.Directory);
                    w.WriteString("predicate", result.Predicate);
                    w.WriteNumber("captures", result.Captures);
                    w.WriteNumber("pagesRead", result.PagesRead);
                    w.WriteNumber("milliseconds", Math.Round(ms, 1));
                    if (result.First is HistoryFindHit first)
                    {
                        w.WriteNumber("first", first.Capture.Number);
                    }
                    else
                    {
                        w.WriteNull("first");
                    }

                    WriteHits(w, "hits", result.Hits);
                    WriteHits(w, "unknown", result.Unknown);
                    w.WriteEndObject();
                });
            }
            else
            {
                foreach (HistoryFindHit h in result.Hits)
                {
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"capture {h.Capture.Number,-5} {h.Capture.Time:yyyy-MM-dd HH:mm:ss.fff}Z  {TerminalText.Escape(h.Detail)}"));
                }

                foreach (HistoryFindHit h in result.Unknown)
                {
                    Console.Error.WriteLine($"vmstate: capture {h.Capture.Number}: not known: {TerminalText.Escape(h.Detail)}");
                }

                Console.WriteLine(result.First is HistoryFindHit f
                    ? string.Create(CultureInfo.InvariantCulture, $"{TerminalText.Escape(result.Predicate)}: {result.Hits.Count} of {result.Captures} captures, first capture {f.Capture.Number} ({f.Capture.Time:yyyy-MM-dd HH:mm:ss.fff}Z); {ms:F0} ms")
                    : string.Create(CultureInfo.InvariantCulture, $"{TerminalText.Escape(result.Predicate)}: in none of {result.Captures} captures; {ms:F0} ms"));
            }

            return result.Hits.Count > 0 ? 0 : 1;
        }));
        return command;
    }

    private static Command Rollback()
    {
        var capture = CaptureArgument();
        Option<bool> json = CommonOptions.Json();
        var command = new Command("rollback", "Take a running VM back to a capture, in place (QEMU loads it as an internal snapshot of a temporary image; the VM's own disks are not reverted)");
        command.Arguments.Add(capture);
        var live = new LiveOptions(command);
        command.Options.Add(json);
        command.SetAction(r => CommonOptions.Run(() =>
        {
            (string dir, string selector) = CaptureReference(r.GetValue(capture)!);

            LiveTarget target = live.Require(r, "history rollback");
            using HistoryStore s = HistoryStore.Open(dir);
            HistoryCapture c = s.Find(selector);
            HistoryRollbackResult result = RollbackAsync(target, s, c).GetAwaiter().GetResult();
            if (r.GetValue(json))
            {
                CommonOptions.WriteJson(w =>
                {
                    w.WriteStartObject();
                    w.WriteNumber("capture", c.Number);
                    w.WriteString("time", Time(c));
                    w.WriteNumber("stateBytes", result.StateBytes);
                    w.WriteNumber("prepareSeconds", Math.Round(result.Prepare.TotalSeconds, 3));
                    w.WriteNumber("loadSeconds", Math.Round(result.Load.TotalSeconds, 3));
                    w.WriteBoolean("running", result.Running);
                    w.WriteEndObject();
                });
            }
            else
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"took the VM back to capture {c.Number} ({c.Time:yyyy-MM-dd HH:mm:ss.fff}Z): {Hex.Size((ulong)result.StateBytes)} of state, prepared in {result.Prepare.TotalSeconds:F2} s, loaded in {result.Load.TotalSeconds:F2} s (the guest was stopped that long); {(result.Running ? "running" : "not running")}"));
            }

            return 0;
        }));
        return command;
    }

    private static Command Prune()
    {
        var store = StoreArgument();
        var every = new Option<int?>("--keep-every") { Description = "keep captures 1, 1+N, 1+2N, ... (by position) and the latest; drop the others" };
        var before = new Option<string?>("--drop-before") { Description = "drop captures older than this: a time (2026-11-30T10:00:00, UTC) or an age (90s, 30m, 12h, 7d); the latest is always kept" };
        Option<bool> json = CommonOptions.Json();
        var command = new Command("prune", "Drop captures from a history store and reclaim the pages only they used (atomic: the store is rewritten beside itself and swapped in one step)");
        command.Arguments.Add(store);
        command.Options.Add(every);
        command.Options.Add(before);
        command.Options.Add(json);
        command.SetAction(r => CommonOptions.Run(() =>
        {
            int? n = r.GetValue(every);
            string? b = r.GetValue(before);
            if (n is null && b is null || n is <= 0)
            {
                throw new ArgumentException("give --keep-every N (N >= 1) and/or --drop-before TIME|AGE");
            }

            DateTimeOffset? cutoff = b is null ? null : Cutoff(b);
            string dir = r.GetValue(store)!;
            IReadOnlyList<HistoryCapture> all;
            using (HistoryStore s = HistoryStore.Open(dir))
            {
                all = s.Captures;
            }

            var keepSet = new HashSet<int>();
            for (int i = 0; i < all.Count; i++)
            {
                bool keepIt = i == all.Count - 1 || ((n is not int k || i % k == 0) && (cutoff is not DateTimeOffset t || all[i].Time >= t));
                if (keepIt)
                {
                    keepSet.Add(all[i].Number);
                }
            }

            HistoryPruneResult result = HistoryStoreWriter.Prune(dir, c => keepSet.Contains(c.Number));
            if (r.GetValue(json))
            {
                CommonOptions.WriteJson(w =>
                {
                    w.WriteStartObject();
                    w.WriteNumber("kept", result.Kept.Count);
                    w.WriteNumber("dropped", result.Dropped.Count);
                    w.WriteStartArray("droppedCaptures");
                    foreach (HistoryCapture c in result.Dropped)
                    {
                        w.WriteNumberValue(c.Number);
                    }

                    w.WriteEndArray();
                    w.WriteNumber("pagesBefore", result.PagesBefore);
                    w.WriteNumber("pagesAfter", result.PagesAfter);
                    w.WriteNumber("bytesBefore", result.BytesBefore);
                    w.WriteNumber("bytesAfter", result.BytesAfter);
                    w.WriteEndObject();
                });
            }
            else
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"dropped {result.Dropped.Count} of {result.Kept.Count + result.Dropped.Count} captures; {result.PagesBefore} -> {result.PagesAfter} unique pages, {Hex.Size((ulong)result.BytesBefore)} -> {Hex.Size((ulong)result.BytesAfter)}"));
            }

            return 0;
        }));
        return command;
    }

    /// <summary>A time (UTC unless it says otherwise) or an age before now: 90s, 30m, 12h, 7d.</summary>
    private static DateTimeOffset Cutoff(string text)
    {
        if (text.Length >= 2 && double.TryParse(text[..^1], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double v) && v >= 0)
        {
            TimeSpan? age = text[^1] switch
            {
                's' => TimeSpan.FromSeconds(v),
                'm' => TimeSpan.FromMinutes(v),
                'h' => TimeSpan.FromHours(v),
                'd' => TimeSpan.FromDays(v),
                _ => null,
            };
            if (age is TimeSpan a)
            {
                return DateTimeOffset.UtcNow - a;
            }
        }

        if (DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out DateTimeOffset t))
        {
            return t;
        }

        throw new ArgumentException($"--drop-before {text}: neither a time (2026-11-30T10:00:00) nor an age (90s, 30m, 12h, 7d)");
    }

    private static async Task<HistoryRollbackResult> RollbackAsync(LiveTarget target, HistoryStore store, HistoryCapture capture)
    {
        await using VmState.Live.QmpClient client = await target.ConnectAsync(TimeSpan.FromSeconds(10), CancellationToken.None);
        return await HistoryRollback.RollbackAsync(client, store, capture);
    }

    private static void WriteHits(Utf8JsonWriter w, string name, IReadOnlyList<HistoryFindHit> hits)
    {
        w.WriteStartArray(name);
        foreach (HistoryFindHit h in hits)
        {
            w.WriteStartObject();
            w.WriteNumber("capture", h.Capture.Number);
            w.WriteString("time", Time(h.Capture));
            w.WriteString("detail", h.Detail);
            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    private static string Time(HistoryCapture c) => c.Time.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture);

    private static void Render(IReadOnlyList<HistoryCapture> captures, Func<HistoryCapture, HistoryCaptureIndex?>? indexes = null)
    {
        var t = new Table().AddColumns("#", "time (UTC)", "source", "pause", "processes", "changed", "new", "added");
        foreach (HistoryCapture c in captures)
        {
            // The file name tells captures apart; --json has the whole source and every count.
            int cut = c.Source.IndexOf(" (", StringComparison.Ordinal);
            string source = Path.GetFileName(cut > 0 ? c.Source[..cut] : c.Source);
            source = source.Length > 18 ? "…" + source[^17..] : source;
            HistoryCaptureIndex? index = indexes?.Invoke(c);
            string pause = index?.GuestPause is TimeSpan p ? string.Create(CultureInfo.InvariantCulture, $"{p.TotalMilliseconds:F1} ms") : "-";
            string processes = index is null ? "-" : index.KernelError is null ? index.Processes.Count.ToString(CultureInfo.InvariantCulture) : "?";
            t.AddRow(c.Number.ToString(CultureInfo.InvariantCulture), c.Time.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture),
                TerminalText.Markup(source), pause, processes, c.ChangedPages.ToString(CultureInfo.InvariantCulture), c.NewPages.ToString(CultureInfo.InvariantCulture), Hex.Size((ulong)c.BytesAdded));
        }

        AnsiConsole.Write(t);
    }

    /// <summary>The history list --json document (also the web server's).</summary>
    internal static void WriteStore(HistoryStore s, Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteString("store", s.Directory);
        w.WriteNumber("pageSize", s.PageSize);
        w.WriteNumber("uniquePages", s.UniquePages);
        WriteCaptures(w, "captures", s.Captures, s.TryReadIndex);
        w.WriteEndObject();
    }

    /// <summary>The captures array of history list --json (also the web server's).</summary>
    internal static void WriteCaptures(Utf8JsonWriter w, string name, IReadOnlyList<HistoryCapture> captures, Func<HistoryCapture, HistoryCaptureIndex?>? indexes = null)
    {
        w.WriteStartArray(name);
        foreach (HistoryCapture c in captures)
        {
            w.WriteStartObject();
            w.WriteNumber("number", c.Number);
            w.WriteString("time", Time(c));
            w.WriteString("source", c.Source);
            w.WriteNumber("streamBytes", c.StreamBytes);
            w.WriteNumber("dataPages", c.DataPages);
            w.WriteNumber("fillPages", c.FillPages);
            w.WriteNumber("changedPages", c.ChangedPages);
            w.WriteNumber("newPages", c.NewPages);
            w.WriteNumber("bytesAdded", c.BytesAdded);
            if (indexes?.Invoke(c) is HistoryCaptureIndex index)
            {
                if (index.GuestPause is TimeSpan p)
                {
                    w.WriteNumber("guestPauseMs", Math.Round(p.TotalMilliseconds, 3));
                }

                if (index.Wall is TimeSpan wall)
                {
                    w.WriteNumber("wallSeconds", Math.Round(wall.TotalSeconds, 3));
                }

                if (index.KernelError is string e)
                {
                    w.WriteString("kernelError", e);
                }
                else
                {
                    w.WriteNumber("processes", index.Processes.Count);
                    w.WriteNumber("modules", index.Modules.Count);
                }
            }

            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    /// <summary>Reports on the calling thread (<see cref="Progress{T}"/> posts to the thread pool, out of order).</summary>
    private sealed class Reporter(Action<long> report) : IProgress<long>
    {
        public void Report(long value) => report(value);
    }
}
