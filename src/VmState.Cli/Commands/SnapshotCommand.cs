using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using VmState.Live;

namespace VmState.Cli.Commands;

/// <summary>
/// <c>vmstate snapshot (--qmp SOCKET | --libvirt URI --domain NAME) (-o FILE | --savevm TAG)</c>: snapshot a running
/// QEMU through its QMP socket or libvirt's monitor passthrough,
/// as a migration stream file (the guest is paused for the save and resumed) or as an internal savevm snapshot in
/// its qcow2 disk. The guest is resumed on every path — errors and Ctrl-C included — if it was running.
/// </summary>
internal static class SnapshotCommand
{
    public static Command Create()
    {
        var output = new Option<string?>("--output", "-o") { Description = "write a migration stream to this file" };
        var savevm = new Option<string?>("--savevm") { Description = "take an internal snapshot with this tag in the VM's qcow2 disk" };
        var live = new Option<bool>("--live") { Description = "with -o: keep the guest running (QEMU background-snapshot: RAM copy-on-write through userfaultfd); the file holds the state at the start" };
        Option<bool> json = CommonOptions.Json();
        var command = new Command("snapshot", "Snapshot a running QEMU VM through QMP (stream file or savevm), resuming it afterwards");
        var target = new LiveOptions(command, new Option<string?>("--qmp") { Description = "QEMU's QMP unix socket (-qmp unix:PATH,server=on,wait=off)" });
        command.Options.Add(output);
        command.Options.Add(savevm);
        command.Options.Add(live);
        command.Options.Add(json);
        command.SetAction((r, ct) => RunAsync(r, target, r.GetValue(output), r.GetValue(savevm), r.GetValue(live), r.GetValue(json), ct));
        return command;
    }

    private static async Task<int> RunAsync(ParseResult r, LiveOptions target, string? output, string? tag, bool live, bool json, CancellationToken ct)
    {
        if ((output is null) == (tag is null))
        {
            Console.Error.WriteLine("vmstate: give exactly one of -o FILE or --savevm TAG");
            return 2;
        }

        if (live && output is null)
        {
            Console.Error.WriteLine("vmstate: --live applies to -o FILE (savevm always pauses the guest)");
            return 2;
        }

        LiveTarget vm;
        try
        {
            vm = target.Require(r, "snapshot");
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"vmstate: {e.Message}");
            return 2;
        }

        try
        {
            await using QmpClient client = await vm.ConnectAsync(TimeSpan.FromSeconds(10), ct);
            string before = await client.QueryStatusAsync(ct);
            var clock = Stopwatch.StartNew();
            long bytes = 0;
            double? downtimeMs = null;
            string mode = "savevm";
            if (output is not null)
            {
                SaveResult result = await client.SaveStateToFileAsync(output, live, ct);
                if (result.FallbackReason is not null)
                {
                    Console.Error.WriteLine($"vmstate: {result.FallbackReason}");
                }

                mode = result.Mode switch
                {
                    SaveMode.BackgroundSnapshot => "background-snapshot",
                    SaveMode.Pause => "pause",
                    _ => "paused",
                };
                bytes = result.Bytes;
                downtimeMs = result.DowntimeMilliseconds;
            }
            else
            {
                await SavevmSnapshot.TakeAsync(client, tag!, e => Console.Error.WriteLine($"vmstate: warning: {e.Message}"), ct);
            }

            TimeSpan paused = clock.Elapsed;
            string after = await client.QueryStatusAsync(CancellationToken.None);
            if (json)
            {
                CommonOptions.WriteJson(w =>
                {
                    w.WriteStartObject();
                    w.WriteString("qemu", $"{client.Version.Major}.{client.Version.Minor}.{client.Version.Micro}");
                    w.WriteString("output", output);
                    w.WriteString("savevm", tag);
                    w.WriteNumber("bytes", bytes);
                    w.WriteString("mode", mode);
                    w.WriteNumber(mode == "background-snapshot" ? "elapsedSeconds" : "pausedSeconds", Math.Round(paused.TotalSeconds, 4));
                    if (downtimeMs is double dt)
                    {
                        w.WriteNumber("qemuDowntimeMs", dt);
                    }

                    w.WriteString("statusBefore", before);
                    w.WriteString("statusAfter", after);
                    w.WriteEndObject();
                });
            }
            else
            {
                string what = output is not null ? $"{output} ({bytes:N0} bytes)" : $"internal snapshot \"{tag}\"";
                string pauseText = mode == "background-snapshot"
                    ? $"guest kept running (background snapshot; QEMU downtime {downtimeMs ?? 0:F0} ms)"
                    : $"guest paused {paused.TotalMilliseconds:F0} ms";
                Console.WriteLine($"saved {what}; {pauseText}; status {before} -> {after}");
            }

            return 0;
        }
        catch (QmpException e)
        {
            Console.Error.WriteLine($"vmstate: {e.Message}");
            return 1;
        }
        catch (Exception e) when (e is IOException or LiveVmGoneException or TimeoutException or VmStateNotFoundException)
        {
            Console.Error.WriteLine($"vmstate: {e.Message}");
            return 1;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("vmstate: cancelled; the guest was resumed");
            return 130;
        }
    }
}
