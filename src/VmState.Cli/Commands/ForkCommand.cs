using System.CommandLine;
using VmState.Fork;
using VmState.Snapshots;

namespace VmState.Cli.Commands;

/// <summary>
/// <c>vmstate fork SNAPSHOT --count N [--prefix NAME] [--dir DIR] -- QEMU ARGS...</c>, <c>vmstate fork --list</c>,
/// <c>vmstate fork --stop [--prefix NAME]</c>: clones of a VM from one snapshot (<see cref="VmFork"/>).
/// </summary>
internal static class ForkCommand
{
    public static Command Create()
    {
        Argument<string?> snapshot = CommonOptions.OptionalSnapshotArgument();
        snapshot.Description = "the snapshot to clone: a migration stream or a qcow2 image with internal snapshots (not with --list or --stop)";
        var count = new Option<int>("--count", "-n") { Description = "how many clones to start (1-256)", DefaultValueFactory = _ => 1 };
        var prefix = new Option<string?>("--prefix") { Description = "clone names are PREFIX-1, PREFIX-2, ... (default: clone); with --stop, only those" };
        var dir = new Option<string?>("--dir") { Description = "where clones keep their directories (default: $XDG_RUNTIME_DIR/vmstate-fork, else under the temporary directory)" };
        Option<string?> name = CommonOptions.SnapshotName();
        var list = new Option<bool>("--list") { Description = "list the clones and whether they run" };
        var stop = new Option<bool>("--stop") { Description = "stop clones (all, or those of --prefix) and remove their directories" };
        var qemu = new Argument<string[]>("QEMU") { Description = "after --: the QEMU command line the snapshot's VM ran with", Arity = ArgumentArity.ZeroOrMore };
        Option<bool> json = CommonOptions.Json();
        var command = new Command("fork", "Start N clones of a VM from one snapshot, each with its own disk overlays, QMP socket and MACs (device and guest kernel), running from the snapshot's moment");
        command.Arguments.Add(snapshot);
        command.Arguments.Add(qemu);
        foreach (Option o in new Option[] { count, prefix, dir, name, list, stop, json })
        {
            command.Options.Add(o);
        }

        command.TreatUnmatchedTokensAsErrors = false;
        command.SetAction((r, ct) => Task.FromResult(CommonOptions.Run(() =>
        {
            string state = r.GetValue(dir) ?? DefaultDirectory();
            if (r.GetValue(list))
            {
                Print(VmFork.List(state), r.GetValue(json), running: true);
                return 0;
            }

            if (r.GetValue(stop))
            {
                IReadOnlyList<ForkClone> stopped = VmFork.StopAsync(state, r.GetValue(prefix), ct).GetAwaiter().GetResult();
                Console.Error.WriteLine($"vmstate fork: stopped {stopped.Count} clone(s)");
                return 0;
            }

            string[] argv = [.. r.GetValue(qemu) ?? [], .. r.UnmatchedTokens];
            if (r.GetValue(snapshot) is not string input || argv.Length == 0)
            {
                Console.Error.WriteLine("vmstate fork: give SNAPSHOT --count N -- QEMU-COMMAND-LINE (the one the VM ran with), or --list / --stop");
                return 2;
            }

            var clock = System.Diagnostics.Stopwatch.StartNew();
            IReadOnlyList<ForkClone> clones = VmFork.StartAsync(input, argv, r.GetValue(count), r.GetValue(prefix) ?? "clone", state, new SnapshotOpenOptions { Snapshot = r.GetValue(name) }, ct).GetAwaiter().GetResult();
            Print(clones, r.GetValue(json), running: false);
            Console.Out.Flush();
            Console.Error.WriteLine(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"vmstate fork: {clones.Count} clone(s) running after {clock.Elapsed.TotalSeconds:F2} s; stop them with vmstate fork --stop{(r.GetValue(dir) is string d ? " --dir " + d : string.Empty)}"));
            return 0;
        })));
        return command;
    }

    private static string DefaultDirectory() =>
        Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR") is string run && run.Length > 0
            ? Path.Combine(run, "vmstate-fork")
            : Path.Combine(Path.GetTempPath(), $"vmstate-fork-{Environment.UserName}");

    private static void Print(IReadOnlyList<ForkClone> clones, bool json, bool running)
    {
        if (json)
        {
            CommonOptions.WriteJson(w =>
            {
                w.WriteStartArray();
                foreach (ForkClone c in clones)
                {
                    w.WriteStartObject();
                    w.WriteString("name", c.Name);
                    w.WriteNumber("pid", c.ProcessId);
                    w.WriteBoolean("running", c.IsRunning);
                    w.WriteString("qmp", c.QmpSocket);
                    w.WriteString("directory", c.Directory);
                    ForkMac.WriteArray(w, "macs", c.Macs);
                    w.WriteEndObject();
                }

                w.WriteEndArray();
            });
            return;
        }

        foreach (ForkClone c in clones)
        {
            string state = running ? (c.IsRunning ? " running" : " stopped") : string.Empty;
            Console.WriteLine($"{TerminalText.Escape(c.Name)} pid {c.ProcessId}{state} qmp {TerminalText.Escape(c.QmpSocket)} macs {string.Join(' ', c.Macs.Select(m => $"{TerminalText.Escape(m.Device)}={m.Mac}"))}");
        }
    }
}
