using System.CommandLine;
using System.Globalization;
using VmState.History;
using VmState.Live;

namespace VmState.Cli.Commands;

/// <summary>
/// <c>vmstate record (--qmp SOCK | --libvirt URI --domain NAME) --store DIR [--every S] [--count N | --duration S] [--json]</c>: captures of a running
/// VM streamed into a history store (<see cref="HistoryRecorder"/>), each with its guest pause and wall time.
/// </summary>
internal static class RecordCommand
{
    /// <summary>The recorder's managed heap limit.</summary>
    private const long ManagedHeapLimit = 128L << 20;

    public static Command Create()
    {
        var store = new Option<string>("--store") { Description = "the history store directory (created when it does not exist)", Required = true };
        var every = new Option<double>("--every") { Description = "seconds from the start of one capture to the next (default 10)", DefaultValueFactory = _ => 10 };
        var count = new Option<int?>("--count") { Description = "stop after this many captures" };
        var duration = new Option<double?>("--duration") { Description = "stop starting captures after this many seconds" };
        Option<bool> json = CommonOptions.JsonLines("capture");
        var command = new Command("record", "Record a running VM into a history store: a consistent capture every --every seconds, streamed from QEMU, never a temporary file; Ctrl-C stops after the capture in progress");
        var live = new LiveOptions(command);
        command.Options.Add(store);
        command.Options.Add(every);
        command.Options.Add(count);
        command.Options.Add(duration);
        command.Options.Add(json);
        command.SetAction((r, ct) => Task.FromResult(CommonOptions.Run(() =>
        {
            LiveTarget target = live.Require(r, "record");

            if (r.GetValue(every) is double e && (e < 0 || double.IsNaN(e)) || r.GetValue(count) is <= 0 || r.GetValue(duration) is <= 0)
            {
                Console.Error.WriteLine("vmstate record: --every must be ≥ 0, --count and --duration > 0");
                return 1;
            }

            using Vm vm = CommonOptions.OpenVm(null, target, new VmOpenOptions(), pause: false);
            CapManagedHeap();
            using HistoryStoreWriter writer = HistoryStoreWriter.Open(r.GetValue(store)!);
            var options = new HistoryRecordOptions
            {
                Every = TimeSpan.FromSeconds(r.GetValue(every)),
                Count = r.GetValue(count),
                Duration = r.GetValue(duration) is double d ? TimeSpan.FromSeconds(d) : null,
                Source = target.Socket is string socket ? $"QMP {Path.GetFullPath(socket)}" : $"libvirt {target.LibvirtUri} domain {target.Domain}",
            };
            bool asJson = r.GetValue(json);
            using Stream stdout = Console.OpenStandardOutput();
            using var output = new StreamWriter(stdout) { AutoFlush = true };
            Console.Error.WriteLine($"vmstate record: into {TerminalText.Escape(writer.Directory)} (captures so far: {writer.Captures.Count}); Ctrl-C to stop");
            IReadOnlyList<RecordedCapture> taken = HistoryRecorder.RecordAsync(vm.Live!, writer, options, c =>
            {
                if (asJson)
                {
                    WriteJson(output, c);
                }
                else
                {
                    output.WriteLine(Describe(c));
                }
            }, ct).GetAwaiter().GetResult();
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"vmstate record: {taken.Count} capture(s); the store holds {writer.Captures.Count}, {writer.UniquePages} unique pages"));
            return 0;
        })));
        return command;
    }

    /// <summary>
    /// Bounds the recorder's managed heap to <see cref="ManagedHeapLimit"/>, whatever the guest size: what the writer
    /// keeps per capture is the page maps as runs (they follow what changed, not the guest size) and the table of the
    /// store's unique pages lives in native memory (<c>PageHashTable</c>, 24 bytes a slot). Each capture's index parses
    /// the kernel's lists and types anew, and without a limit the GC lets that garbage pile up (a 128 MiB guest: 440
    /// MiB resident after 30 captures without a limit, measured).
    /// </summary>
    private static void CapManagedHeap()
    {
        AppContext.SetData("GCHeapHardLimit", (ulong)ManagedHeapLimit);
        GC.RefreshMemoryLimit();
    }

    private static string Describe(RecordedCapture c) => string.Create(CultureInfo.InvariantCulture,
        $"capture {c.Capture.Number} at {c.Capture.Time:yyyy-MM-ddTHH:mm:ss.fffZ}: {Mode(c.Save.Mode)}, guest pause {Pause(c.Save)}, wall {c.Save.Elapsed.TotalSeconds:F2} s, {c.Capture.ChangedPages} changed pages, {c.Capture.NewPages} new, {Hex.Size((ulong)c.Capture.BytesAdded)} added");

    private static string Mode(SaveMode mode) => mode switch
    {
        SaveMode.BackgroundSnapshot => "background snapshot",
        SaveMode.Pause => "paused for the save",
        _ => "guest not running",
    };

    private static string Pause(SaveResult s) => s.GuestPause is TimeSpan p ? string.Create(CultureInfo.InvariantCulture, $"{p.TotalMilliseconds:F1} ms") : "unknown";

    private static void WriteJson(StreamWriter output, RecordedCapture c) => CommonOptions.WriteJsonLine(output, w =>
        {
            w.WriteStartObject();
            w.WriteNumber("capture", c.Capture.Number);
            w.WriteString("time", c.Capture.Time.UtcDateTime.ToString("o", CultureInfo.InvariantCulture));
            w.WriteString("mode", c.Save.Mode.ToString());
            if (c.Save.GuestPause is TimeSpan p)
            {
                w.WriteNumber("guestPauseMs", Math.Round(p.TotalMilliseconds, 3));
            }

            w.WriteNumber("wallSeconds", Math.Round(c.Save.Elapsed.TotalSeconds, 3));
            w.WriteNumber("streamBytes", c.Capture.StreamBytes);
            w.WriteNumber("changedPages", c.Capture.ChangedPages);
            w.WriteNumber("newPages", c.Capture.NewPages);
            w.WriteNumber("bytesAdded", c.Capture.BytesAdded);
            w.WriteEndObject();
        });

    /// <summary>
    /// <c>vmstate capture-guard --parent PID</c> (hidden): the process that keeps a background snapshot of a capture
    /// from being cut off when the vmstate reading it dies (<see cref="VmState.Live.CaptureGuard"/>); started by the library.
    /// </summary>
    public static Command Guard()
    {
        var parent = new Option<int>("--parent") { Required = true };
        var command = new Command("capture-guard", "internal: lets a background snapshot finish when the vmstate reading it dies") { Hidden = true };
        command.Options.Add(parent);
        command.SetAction(r =>
        {
            // Its own session, and deaf to the signals a terminal or a service manager sends the whole group: it
            // ends by itself once its parent is gone and every capture it holds has run to its end.
            VmState.IO.ProcessSession.Detach();
            using var sigint = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGINT, c => c.Cancel = true);
            using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => c.Cancel = true);
            using var sighup = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGHUP, c => c.Cancel = true);
            return VmState.Live.CaptureGuard.Run(r.GetValue(parent), Console.In, Console.Out);
        });
        return command;
    }
}
