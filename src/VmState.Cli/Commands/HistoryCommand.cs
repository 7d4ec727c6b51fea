using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using VmState.History;
using VmState.IO;

namespace VmState.Cli.Commands;

/// <summary>
/// <c>vmstate history</c>: a store of many captures of a VM, deduplicated page by page (<see cref="HistoryStore"/>):
/// <c>import</c>, <c>list</c>, <c>verify</c>, <c>export</c>. Every other command opens a capture as <c>STORE@N</c>.
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

    private static Command List()
    {
        var store = new Argument<string>("STORE") { Description = "the store directory" };
        Option<bool> json = CommonOptions.Json();
        var command = new Command("list", "List the captures of a history store: time, source, pages changed since the previous capture, unique pages and bytes it added");
        command.Arguments.Add(store);
        command.Options.Add(json);
        command.SetAction(r => CommonOptions.Run(() =>
        {
            using HistoryStore s = HistoryStore.Open(r.GetValue(store)!);
            if (r.GetValue(json))
            {
                CommonOptions.WriteJson(w =>
                {
                    w.WriteStartObject();
                    w.WriteString("store", s.Directory);
                    w.WriteNumber("pageSize", s.PageSize);
                    w.WriteNumber("uniquePages", s.UniquePages);
                    WriteCaptures(w, "captures", s.Captures);
                    w.WriteEndObject();
                });
            }
            else
            {
                Render(s.Captures);
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
        }));
        return command;
    }

    private static Command Verify()
    {
        var store = new Argument<string>("STORE") { Description = "the store directory" };
        Option<bool> json = CommonOptions.Json();
        var command = new Command("verify", "Check every page hash and every reference of a history store; exit 2 when anything is damaged");
        command.Arguments.Add(store);
        command.Options.Add(json);
        command.SetAction(r => CommonOptions.Run(() =>
        {
            using HistoryStore s = HistoryStore.Open(r.GetValue(store)!);
            HistoryVerifyResult v = s.Verify();
            if (r.GetValue(json))
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
        }));
        return command;
    }

    private static Command Export()
    {
        var capture = new Argument<string>("CAPTURE") { Description = "STORE@N: the capture (N, -1 for the latest, or a time)" };
        var output = new Option<string>("--output", "-o") { Description = "the migration stream to write (QEMU resumes it with -incoming)", Required = true };
        Option<bool> json = CommonOptions.Json();
        var command = new Command("export", "Write a capture of a history store as a migration stream QEMU resumes");
        command.Arguments.Add(capture);
        command.Options.Add(output);
        command.Options.Add(json);
        command.SetAction(r => CommonOptions.Run(() =>
        {
            string reference = r.GetValue(capture)!;
            if (!HistoryStore.TryParseReference(reference, out string dir, out string selector))
            {
                throw new ArgumentException($"{reference} is not STORE@N (a history store directory, '@', a capture number, -1 or a time)");
            }

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
                    w.WriteString("time", c.Time.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture));
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

    private static void Render(IReadOnlyList<HistoryCapture> captures)
    {
        var t = new Table().AddColumns("#", "time (UTC)", "source", "changed", "new", "added");
        foreach (HistoryCapture c in captures)
        {
            // The file name tells captures apart; --json has the whole source and every count.
            int cut = c.Source.IndexOf(" (", StringComparison.Ordinal);
            string source = Path.GetFileName(cut > 0 ? c.Source[..cut] : c.Source);
            source = source.Length > 18 ? "…" + source[^17..] : source;
            t.AddRow(c.Number.ToString(CultureInfo.InvariantCulture), c.Time.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture),
                TerminalText.Markup(source), c.ChangedPages.ToString(CultureInfo.InvariantCulture), c.NewPages.ToString(CultureInfo.InvariantCulture), Hex.Size((ulong)c.BytesAdded));
        }

        AnsiConsole.Write(t);
    }

    private static void WriteCaptures(Utf8JsonWriter w, string name, IReadOnlyList<HistoryCapture> captures)
    {
        w.WriteStartArray(name);
        foreach (HistoryCapture c in captures)
        {
            w.WriteStartObject();
            w.WriteNumber("number", c.Number);
            w.WriteString("time", c.Time.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture));
            w.WriteString("source", c.Source);
            w.WriteNumber("streamBytes", c.StreamBytes);
            w.WriteNumber("dataPages", c.DataPages);
            w.WriteNumber("fillPages", c.FillPages);
            w.WriteNumber("changedPages", c.ChangedPages);
            w.WriteNumber("newPages", c.NewPages);
            w.WriteNumber("bytesAdded", c.BytesAdded);
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
