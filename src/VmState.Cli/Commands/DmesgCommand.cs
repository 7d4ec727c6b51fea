using System.CommandLine;
using System.Globalization;
using System.Text;
using VmState.Linux;
using VmState.Views;

namespace VmState.Cli.Commands;

/// <summary><c>vmstate dmesg SNAPSHOT</c>: the guest kernel's log, read from the printk ring buffer.</summary>
internal static class DmesgCommand
{
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
            ListView<KernelLogRecord> view = LinuxListViews.KernelLog(r.GetValue(showLevel));
            if (following)
            {
                return Follow(vm.Linux.FollowKernelLog(), view, maxLevel, last, Math.Max(50, r.GetValue(interval)), r.GetValue(duration));
            }

            ListOutput.Write(view, Select(vm.Linux.KernelLog(), maxLevel, last), r.GetValue(json));
            return 0;
        }));
        return command;
    }

    /// <summary>The records at <paramref name="maxLevel"/> or more urgent, then the last <paramref name="last"/> of them.</summary>
    private static List<KernelLogRecord> Select(IEnumerable<KernelLogRecord> records, int? maxLevel, int? last)
    {
        List<KernelLogRecord> list = [.. records.Where(x => maxLevel is not int ml || x.Level <= ml)];
        return last is int n && n < list.Count ? list[^n..] : list;
    }

    /// <summary>
    /// dmesg -w on a running guest: the last <paramref name="last"/> records (all without it), then every new record
    /// as the library's follower finds it, with a line for records the ring overwrote between two polls. The guest
    /// is never paused.
    /// </summary>
    private static int Follow(KernelLogFollower follower, ListView<KernelLogRecord> view, int? maxLevel, int? last, int intervalMs, double seconds)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        foreach (KernelLogUpdate update in follower.Follow(TimeSpan.FromMilliseconds(intervalMs)))
        {
            var sb = new StringBuilder();
            if (update.Missed > 0)
            {
                sb.Append(CultureInfo.InvariantCulture, $"vmstate: {update.Missed} record(s) were overwritten before they could be read\n");
            }

            ListOutput.AppendText(sb, view, Select(update.Records, maxLevel, update.IsFirst ? last : null), header: false);
            Console.Write(sb.ToString());
            Console.Out.Flush();
            if (seconds > 0 && clock.Elapsed.TotalSeconds >= seconds)
            {
                return 0;
            }
        }

        return 0;
    }
}
