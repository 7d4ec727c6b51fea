using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using VmState.Linux;
using VmState.Machine;

namespace VmState.Cli.Commands;

/// <summary><c>vmstate dmesg SNAPSHOT</c>: the guest kernel's log, read from the printk ring buffer.</summary>
internal static class DmesgCommand
{
    private static readonly string[] s_levels = ["emerg", "alert", "crit", "err", "warn", "notice", "info", "debug"];

    private static readonly string[] s_facilities =
        ["kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp", "res0", "res1", "res2", "res3",
         "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"];

    public static Command Create()
    {
        Option<bool> json = CommonOptions.Json();
        var level = new Option<int?>("--level", "-l") { Description = "only records at this level or more urgent (0 emerg .. 7 debug)" };
        var tail = new Option<int?>("--tail", "-n") { Description = "only the last N records" };
        var showLevel = new Option<bool>("--show-level") { Description = "prefix each line with its facility and level, as dmesg -x does" };
        var follow = new Option<bool>("--follow", "-w") { Description = "with --qmp: keep printing new records as the running guest logs them (dmesg -w), until Ctrl-C" };
        var interval = new Option<int>("--interval") { Description = "with --follow: milliseconds between polls of the ring", DefaultValueFactory = _ => 500 };
        var duration = new Option<double>("--duration") { Description = "with --follow: stop after this many seconds (0: until Ctrl-C)", DefaultValueFactory = _ => 0 };
        var command = new Command("dmesg", "Print the kernel log of a Linux guest (the printk ring buffer of Linux 5.10+)");
        var input = new KernelInput(command);
        command.Options.Add(json);
        command.Options.Add(level);
        command.Options.Add(tail);
        command.Options.Add(showLevel);
        command.Options.Add(follow);
        command.Options.Add(interval);
        command.Options.Add(duration);
        command.SetAction(r => KernelInput.Run(() =>
        {
            int? maxLevel = r.GetValue(level);
            int? last = r.GetValue(tail);
            if (maxLevel is < 0 or > 7 || last is < 0)
            {
                Console.Error.WriteLine("vmstate dmesg: --level takes 0..7 and --tail a count ≥ 0");
                return 1;
            }

            bool following = r.GetValue(follow);
            if (following && (!input.IsLive(r) || input.Pauses(r) || r.GetValue(json)))
            {
                Console.Error.WriteLine("vmstate dmesg: --follow needs --qmp (a running guest), and goes with neither --pause nor --json");
                return 1;
            }

            using Vm vm = input.Open(r);
            LinuxKernel kernel = vm.Linux.Kernel;
            if (following)
            {
                return Follow(kernel, maxLevel, last, r.GetValue(showLevel), Math.Max(50, r.GetValue(interval)), r.GetValue(duration));
            }

            IEnumerable<KernelLogRecord> records = vm.Linux.KernelLog();
            if (maxLevel is int ml)
            {
                records = records.Where(x => x.Level <= ml);
            }

            List<KernelLogRecord> list = [.. records];
            if (last is int n && n < list.Count)
            {
                list = list[^n..];
            }

            if (r.GetValue(json))
            {
                CommonOptions.WriteJson(w =>
                {
                    w.WriteStartArray();
                    foreach (KernelLogRecord rec in list)
                    {
                        w.WriteStartObject();
                        w.WriteNumber("seq", rec.Sequence);
                        w.WriteNumber("timestamp_ns", rec.TimestampNs);
                        w.WriteNumber("level", rec.Level);
                        w.WriteString("level_name", s_levels[rec.Level & 7]);
                        w.WriteNumber("facility", rec.Facility);
                        w.WriteString("facility_name", rec.Facility < s_facilities.Length ? s_facilities[rec.Facility] : null);
                        w.WriteString("caller", rec.Caller);
                        w.WriteString("text", rec.Text);
                        w.WriteEndObject();
                    }

                    w.WriteEndArray();
                });
            }
            else
            {
                var sb = new StringBuilder();
                bool prefix = r.GetValue(showLevel);
                foreach (KernelLogRecord rec in list)
                {
                    Append(sb, rec, prefix);
                }

                Console.Write(sb.ToString());
            }

            return 0;
        }));
        return command;
    }

    private static void Append(StringBuilder sb, KernelLogRecord rec, bool prefix)
    {
        if (prefix)
        {
            sb.Append(CultureInfo.InvariantCulture, $"{(rec.Facility < s_facilities.Length ? s_facilities[rec.Facility] : rec.Facility.ToString(CultureInfo.InvariantCulture)),-6} :{s_levels[rec.Level & 7],-6}: ");
        }

        sb.Append(rec.Format()).Append('\n');
    }

    /// <summary>
    /// dmesg -w on a running guest: the last <paramref name="last"/> records (all without it), then every record with
    /// a higher sequence number as it appears, polling the ring; records the ring overwrote between two polls are
    /// counted. The guest is never paused.
    /// </summary>
    private static int Follow(LinuxKernel kernel, int? maxLevel, int? last, bool prefix, int intervalMs, double seconds)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        ulong? seen = null;
        while (true)
        {
            IReadOnlyList<KernelLogRecord> records = KernelLog.Read(kernel);
            var fresh = records.Where(x => seen is not ulong s || x.Sequence > s).ToList();
            var sb = new StringBuilder();
            if (seen is ulong prev && fresh.Count > 0 && fresh[0].Sequence > prev + 1)
            {
                sb.Append(CultureInfo.InvariantCulture, $"vmstate: {fresh[0].Sequence - prev - 1} record(s) were overwritten before they could be read\n");
            }

            var shown = fresh.Where(x => maxLevel is not int ml || x.Level <= ml).ToList();
            if (seen is null && last is int n && n < shown.Count)
            {
                shown = shown[^n..];
            }

            foreach (KernelLogRecord rec in shown)
            {
                Append(sb, rec, prefix);
            }

            if (records.Count > 0)
            {
                seen = Math.Max(seen ?? 0, records[^1].Sequence);
            }

            Console.Write(sb.ToString());
            Console.Out.Flush();
            if (seconds > 0 && clock.Elapsed.TotalSeconds >= seconds)
            {
                return 0;
            }

            Thread.Sleep(intervalMs);
        }
    }
}
