using System.CommandLine;
using System.Globalization;
using VmState.History;
using VmState.Live;

namespace VmState.Cli.Commands;

/// <summary>
/// <c>vmstate agent (--qmp SOCK | --libvirt URI --domain NAME) (-o DIR | --store DIR) [--live] [--count N] [--no-hotplug] [--json]</c>:
/// serves the guest's snapshot requests on the virtio-serial port <c>org.vmstate.trigger.0</c> (<see cref="TriggerAgent"/>),
/// hot-plugging the port when the VM has none.
/// </summary>
internal static class AgentCommand
{
    public static Command Create()
    {
        var output = new Option<string?>("--output", "-o") { Description = "write each snapshot as DIR/trigger-NNNN.mig with DIR/trigger-NNNN.json (label, nonce, times)" };
        var store = new Option<string?>("--store") { Description = "add each snapshot to this history store (created when missing); its source names the guest's label" };
        var live = new Option<bool>("--live") { Description = "keep the guest running during the save (background snapshot); default: stopped from the request to the answer" };
        var count = new Option<int?>("--count") { Description = "exit after this many snapshots" };
        var noHotplug = new Option<bool>("--no-hotplug") { Description = "use only a port the VM was started with; never hot-plug one" };
        var freeze = new Option<bool>("--freeze") { Description = "freeze the guest's filesystems (qemu-ga guest-fsfreeze-freeze, through the VM's org.qemu.guest_agent.0 port or libvirt) before stopping the VM, thaw them after" };
        Option<bool> json = CommonOptions.JsonLines("snapshot");
        var command = new Command("agent", "Serve snapshots the guest asks for: a guest process writes 'SNAP <nonce> <label>' to the virtio-serial port org.vmstate.trigger.0 (guest/vmstate-trigger) and is answered 'OK <nonce> <id>' once the snapshot holds the VM's state");
        var target = new LiveOptions(command);
        command.Options.Add(output);
        command.Options.Add(store);
        command.Options.Add(live);
        command.Options.Add(count);
        command.Options.Add(noHotplug);
        command.Options.Add(freeze);
        command.Options.Add(json);
        command.SetAction((r, ct) => RunAsync(r, target, r.GetValue(output), r.GetValue(store), new TriggerAgentOptions { Live = r.GetValue(live), Count = r.GetValue(count) }, !r.GetValue(noHotplug), r.GetValue(freeze), r.GetValue(json), ct));
        return command;
    }

    private static async Task<int> RunAsync(ParseResult r, LiveOptions target, string? output, string? store, TriggerAgentOptions options, bool hotplug, bool freeze, bool json, CancellationToken ct)
    {
        if ((output is null) == (store is null))
        {
            Console.Error.WriteLine("vmstate agent: give exactly one of -o DIR or --store DIR");
            return 2;
        }

        if (options.Count is <= 0)
        {
            Console.Error.WriteLine("vmstate agent: --count must be > 0");
            return 2;
        }

        LiveTarget vm;
        try
        {
            vm = target.Require(r, "agent");
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"vmstate: {e.Message}");
            return 2;
        }

        HistoryStoreWriter? writer = null;
        try
        {
            await using QmpClient qmp = await vm.ConnectAsync(TimeSpan.FromSeconds(10), ct);
            DirectoryTriggerSink? directory = output is not null ? new DirectoryTriggerSink(output) : null;
            writer = store is not null ? HistoryStoreWriter.Open(store) : null;
            ITriggerSink sink = directory is not null ? directory : new HistoryTriggerSink(writer!);
            await using GuestAgent? guestAgent = freeze ? await GuestAgent.ConnectAsync(qmp, ct) : null;
            options = options with { Freeze = guestAgent };
            await using TriggerChannel channel = await TriggerChannel.OpenAsync(qmp, hotplug, ct);
            string into = directory is not null ? Path.GetFullPath(output!) : writer!.Directory;
            string freezing = guestAgent is null ? string.Empty : $"; filesystems frozen around each through {guestAgent.Description}";
            Console.Error.WriteLine($"vmstate agent: serving {TriggerRequest.PortName} ({TerminalText.Escape(channel.Description)}) of {TerminalText.Escape(vm.Describe())}; snapshots into {TerminalText.Escape(into)}{TerminalText.Escape(freezing)}; Ctrl-C to stop");
            using Stream stdout = Console.OpenStandardOutput();
            using var lines = new StreamWriter(stdout) { AutoFlush = true };
            IReadOnlyList<TriggeredSnapshot> taken = await TriggerAgent.ServeAsync(qmp, channel, sink, options, s =>
            {
                directory?.WriteMetadata(s);
                if (json)
                {
                    CommonOptions.WriteJsonLine(lines, s.WriteJson);
                }
                else
                {
                    lines.WriteLine(Describe(s));
                }
            }, refusal => Console.Error.WriteLine($"vmstate agent: refused a request{(refusal.Nonce is null ? string.Empty : $" (nonce {refusal.Nonce})")}: {TerminalText.Escape(refusal.Reason)}"), ct);
            Console.Error.WriteLine($"vmstate agent: {taken.Count} snapshot(s){(channel.HotPlugged ? "; removing the hot-plugged port" : string.Empty)}");
            return 0;
        }
        catch (Exception e) when (e is QmpException or IOException or LiveVmGoneException or TimeoutException or VmStateException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"vmstate agent: {TerminalText.Escape(e.Message)}");
            return 1;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("vmstate agent: cancelled");
            return 130;
        }
        finally
        {
            writer?.Dispose();
        }
    }

    private static string Describe(TriggeredSnapshot s)
    {
        string stop = s.StopLatency is TimeSpan l
            ? string.Create(CultureInfo.InvariantCulture, $"VM stopped {l.TotalMilliseconds:F1} ms after the request")
            : "background snapshot";
        if (s.FrozenFilesystems is int frozen)
        {
            stop = string.Create(CultureInfo.InvariantCulture, $"{frozen} filesystem(s) frozen, {stop}");
        }

        return string.Create(CultureInfo.InvariantCulture,
            $"{s.Id} \"{TerminalText.Escape(s.Request.Label)}\" (nonce {s.Request.Nonce}): {stop}, answered after {(s.Answered - s.Received).TotalMilliseconds:F0} ms, {Hex.Size((ulong)s.Save.Bytes)} -> {TerminalText.Escape(s.Location)}");
    }
}
